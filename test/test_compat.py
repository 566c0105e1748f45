"""speechllm.compat: s3prl imports on a torchaudio >= 2.9, and only because of the shim.

The pinned stack has torchaudio 2.8, so each check runs in a fresh interpreter that first turns it into what 2.9
and later look like to s3prl: no ``torchaudio.set_audio_backend`` and no ``torchaudio.sox_effects`` module (its
import raises ModuleNotFoundError, as for any removed module). Nothing else is changed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run before anything else in the child interpreter: each removes one thing torchaudio 2.9 removed (and does
# nothing where it is already gone, so the tests also hold on a real torchaudio >= 2.9).
REMOVALS = {
    "set_audio_backend": """
import torchaudio
if hasattr(torchaudio, "set_audio_backend"):
    del torchaudio.set_audio_backend
""",
    "sox_effects": """
import importlib.abc
import sys
import torchaudio

class RemovedModule(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchaudio.sox_effects" or name.startswith("torchaudio.sox_effects."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

for name in [m for m in sys.modules if m == "torchaudio.sox_effects" or m.startswith("torchaudio.sox_effects.")]:
    del sys.modules[name]
if hasattr(torchaudio, "sox_effects"):
    del torchaudio.sox_effects
sys.meta_path.insert(0, RemovedModule())
""",
}


def run_python(body: str, removed=tuple(REMOVALS)) -> subprocess.CompletedProcess:
    """``body`` in a fresh interpreter whose torchaudio lacks ``removed`` (by default: torchaudio 2.9)."""
    code = "".join(REMOVALS[name] for name in removed) + textwrap.dedent(body)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module", autouse=True)
def s3prl_installed():
    pytest.importorskip("s3prl", reason="s3prl is not installed (tools/install.sh installs it)")


def test_the_simulation_removes_what_torchaudio_2_9_removed():
    run = run_python("""
        import torchaudio
        assert not hasattr(torchaudio, "set_audio_backend")
        try:
            import torchaudio.sox_effects
        except ModuleNotFoundError:
            print("sox_effects: removed")
    """)
    assert run.returncode == 0, run.stderr
    assert "sox_effects: removed" in run.stdout


@pytest.mark.parametrize("removed,error", [
    ("set_audio_backend", "AttributeError: module 'torchaudio' has no attribute 'set_audio_backend'"),
    ("sox_effects", "ModuleNotFoundError: No module named 'torchaudio.sox_effects'"),
])
def test_each_removal_alone_breaks_s3prl_without_the_shim(removed, error):
    run = run_python("import s3prl.nn\n", removed=(removed,))
    assert run.returncode != 0 and error in run.stderr, run.stderr[-2000:]


def test_s3prl_imports_with_the_shim_and_its_sox_stub_explains_itself():
    run = run_python("""
        import sys
        import torchaudio
        from speechllm.compat import ensure_s3prl_importable
        ensure_s3prl_importable()
        patched = (torchaudio.set_audio_backend, sys.modules["torchaudio.sox_effects"])
        ensure_s3prl_importable()  # a second call changes nothing
        assert (torchaudio.set_audio_backend, sys.modules["torchaudio.sox_effects"]) == patched
        from s3prl.nn import Featurizer, S3PRLUpstream
        assert "hf_hubert_custom" in S3PRLUpstream.available_names()
        import torchaudio.sox_effects
        try:
            torchaudio.sox_effects.apply_effects_tensor(None, 16000, [])
        except RuntimeError as error:
            print("stub:", error)
    """)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "stub: torchaudio.sox_effects was removed in torchaudio 2.9" in run.stdout


def test_the_shim_leaves_an_older_torchaudio_alone():
    import torchaudio
    from packaging.version import Version

    from speechllm.compat import ensure_s3prl_importable

    if Version(torchaudio.__version__).release >= (2, 9):
        pytest.skip(f"torchaudio {torchaudio.__version__} is not older than 2.9")

    set_audio_backend, sox_effects = torchaudio.set_audio_backend, torchaudio.sox_effects
    ensure_s3prl_importable()
    assert torchaudio.set_audio_backend is set_audio_backend and torchaudio.sox_effects is sox_effects
    assert sys.modules["torchaudio.sox_effects"] is sox_effects
