"""Repository-wide promises: shell scripts pass shellcheck, CI runs README's test command, one dependency lock."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_shellcheck

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
    shellcheck = require_shellcheck()
    scripts = shell_scripts()
    assert len(scripts) >= 10, scripts
    result = subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]


def test_no_test_installs_packages():
    """README's test command runs without root: tests skip when a program is absent, they never install it."""
    installers = re.compile(r"""\[\s*["'](apt-get|apt|dpkg|yum|dnf|pip|pip3)["']""")
    offenders = [p.name for p in sorted((REPO / "test").glob("*.py"))
                 if p.name != "test_repo.py" and installers.search(p.read_text())]
    assert offenders == [], f"these tests run a package installer: {offenders}"


PEER_TESTS = [
    "test/test_repo.py::test_shell_scripts_pass_shellcheck",
    "test/test_datadir.py::test_wrappers_pass_shellcheck",
    "test/test_recipe_template.py::test_shell_files_pass_shellcheck",
    "test/test_librispeech_recipe.py::test_shell_scripts_pass_shellcheck",
    "test/test_synth_an4.py::test_data_sh_passes_shellcheck",
    "test/test_sclite_parity.py::test_score_text_gives_the_same_result_with_either_scorer",
    "test/test_slurm.py::test_job_array_reports_failed_task_and_reruns_only_it",
]


def test_tests_needing_absent_programs_skip_with_the_reason():
    """Where shellcheck, sclite or Slurm is missing, their tests skip saying so (here simulated: the conftest's
    SPEECHLLM_TEST_WITHOUT hides installed programs from the tests)."""
    env = {**os.environ, "SPEECHLLM_TEST_WITHOUT": "shellcheck,sclite,slurmctld"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *PEER_TESTS],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    assert f"{len(PEER_TESTS)} skipped" in done.stdout, done.stdout[-3000:]
    for program, hint in (("shellcheck", "tools/install.sh --extras test"), ("sclite", "tools/install.sh --sctk"),
                          ("slurmctld", "tools/install.sh --slurm")):
        assert f"{program} is not installed; install it with {hint}" in done.stdout, done.stdout[-3000:]


def test_install_without_root_notes_sctk_and_slurm_instead_of_failing(tmp_path):
    """README's test command (tools/install.sh --extras test --sctk --slurm && pytest) runs for a user without root:
    install.sh notes that sclite and Slurm were not installed, and their tests skip. pip and `id` are stubs here."""
    tools = tmp_path / "tools"
    (tools / "venv" / "bin").mkdir(parents=True)
    (tools / "install.sh").write_text((REPO / "tools" / "install.sh").read_text())
    (tools / "install.sh").chmod(0o755)
    (tools / "venv" / "bin" / "python").write_text("#!/bin/sh\nexit 0\n")  # pip install / pip check succeed
    (tools / "venv" / "bin" / "python").chmod(0o755)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "id").write_text("#!/bin/sh\necho 1000\n")  # not root
    (stubs / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", str(tools / "install.sh"), "--extras", "test", "--sctk", "--slurm"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "note: sctk not installed; the tests that need it will be skipped" in done.stderr
    assert "note: slurm-wlm munge not installed" in done.stderr


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
