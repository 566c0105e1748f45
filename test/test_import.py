"""`import speechllm` (and its entry points) reaches no network and prints nothing on stdout."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = ["speechllm", "speechllm.tasks.speech_llm", "speechllm.bin.speechllm_train",
           "speechllm.bin.speechllm_inference", "speechllm.data.dump_audio"]

# Every way out to the network fails and is recorded; then the modules are imported.
PROBE = """
import importlib, json, logging, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("the test forbids the network")
socket.getaddrinfo = refuse
socket.create_connection = refuse
socket.socket.connect = lambda self, *args: refuse(*args)
for name in sys.argv[1:]:
    importlib.import_module(name)
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(message)s")
try:
    from speechllm.compat import log_import_notices
except ImportError:  # a speechllm without import hooks
    log_import_notices = lambda: None
log_import_notices()
sys.stderr.write("RESULT " + json.dumps({"attempts": attempts, "nltk": "nltk" in sys.modules}) + "\\n")
"""


def test_import_downloads_nothing_and_prints_nothing():
    done = subprocess.run([sys.executable, "-c", PROBE, *MODULES], cwd=REPO, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stderr.split("RESULT ", 1)[1])
    assert result["attempts"] == [], f"importing speechllm tried the network: {result['attempts']}"
    assert not result["nltk"], "importing speechllm ran g2p_en (which downloads nltk data)"
    assert done.stdout == "", f"importing speechllm printed on stdout: {done.stdout!r}"
    # What ESPnet printed at import (no flash_attn here) is in the log instead.
    flash = [line for line in done.stderr.splitlines() if "Flash Attention" in line]
    assert all(line.startswith("LOG ") for line in flash), flash


def test_g2p_en_still_loads_when_used(tmp_path):
    """The deferred import only defers: reading the module's import attributes (as torch's op registration does
    through inspect.getmodule) leaves it unrun; using one of its own attributes runs it (speechllm never does)."""
    code = ("import speechllm, sys, inspect; import g2p_en; inspect.getmodule(inspect); hasattr(g2p_en, '__file__'); "
            "print(type(g2p_en).__name__, 'g2p_en.g2p' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["_DeferredModule", "False"], done.stderr[-2000:]
    # The same mechanism on a module that reaches no network: it runs once, on first use, and then is a module.
    (tmp_path / "deferred_probe.py").write_text("import sys\nsys.stderr.write('RAN\\n')\nVALUE = 42\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import speechllm.compat as c; "
            "c.LAZY_MODULES = c.LAZY_MODULES + ('deferred_probe',); import deferred_probe as m; "
            "sys.stderr.write('IMPORTED ' + str(m.__file__.endswith('deferred_probe.py')) + '\\n'); "
            "print(m.VALUE, m.VALUE, type(m).__name__)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["42", "42", "module"], done.stderr[-2000:]
    assert done.stderr.splitlines()[-2:] == ["IMPORTED True", "RAN"], done.stderr[-2000:]
