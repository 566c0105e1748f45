"""A watchdog that stops a launcher's tasks when the launcher dies without stopping them itself.

The launchers stop their tasks on SIGINT, SIGTERM and SIGHUP. SIGKILL (kill -9, the OOM killer) cannot be caught,
and each task runs in a session of its own (so that Ctrl-C reaches the launcher only): without this guard such
tasks lived on as orphans, still writing into the exp dir. The launcher starts one guard process (in a session of
its own, so that killing the launcher's process group leaves it alive) and tells it, through a pipe, each task's
process group as it starts and ends, and the Slurm job it submitted:

    group PGID LOG     a task runs in process group PGID, logging to LOG
    release PGID       that task ended
    job ID             a Slurm job to cancel if the launcher dies
    done               the launcher is ending normally: exit without touching anything

When the pipe closes without "done" (the launcher died), the guard sends SIGTERM to every group it still knows,
SIGKILL after KILL_GRACE_SECONDS to what is left, appends a footer to each such task's log (exit code 128+signal,
so a rerun redoes the task), and runs `scancel` on the jobs. It runs as a plain script (standard library only).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

KILL_GRACE_SECONDS = 10.0


# ---------------------------------------------------------------------------------------------- launcher side


class Guard:
    """The launcher's end of the pipe. Every method is best effort: a guard that cannot start only warns."""

    def __init__(self, prog: str):
        self.proc: subprocess.Popen | None = None
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, close_fds=True, text=True,
            )
        except OSError as error:
            print(f"{prog}: note: no guard process ({error}): if this launcher is killed with SIGKILL, its tasks "
                  "keep running", file=sys.stderr)

    def _send(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self.proc = None

    def watch_group(self, pgid: int, log: str) -> None:
        self._send(f"group {pgid} {log}")

    def release_group(self, pgid: int) -> None:
        self._send(f"release {pgid}")

    def watch_job(self, job_id: str) -> None:
        self._send(f"job {job_id}")

    def close(self) -> None:
        """The launcher ends normally: the guard exits and touches nothing."""
        if self.proc is None:
            return
        self._send("done")
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.proc = None


# ---------------------------------------------------------------------------------------------- guard side


def group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs (zombies, waiting for a parent to reap them, do not count)."""
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def stop_orphans(groups: dict[int, str], jobs: list[str], launcher_pid: str) -> None:
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while any(group_alive(pgid) for pgid in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = {pgid for pgid in groups if group_alive(pgid)}
    for pgid in killed:
        _signal_group(pgid, signal.SIGKILL)
    for pgid, log in groups.items():
        code = 128 + (signal.SIGKILL if pgid in killed else signal.SIGTERM)
        try:
            with open(log, "a", encoding="utf-8") as f:
                f.write(f"# Stopped by speechllm/launch/guard.py: the launcher (pid {launcher_pid}) died without "
                        "stopping this task\n"
                        f"# Ended (code {code}) at {time.strftime('%a %b %d %H:%M:%S %Z %Y')}\n")
        except OSError:
            pass
    for job in jobs:
        try:
            subprocess.run(["scancel", job], capture_output=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass


def main(argv: list[str]) -> int:
    launcher_pid = argv[0] if argv else "?"
    groups: dict[int, str] = {}
    jobs: list[str] = []
    for line in sys.stdin:
        word, _, rest = line.rstrip("\n").partition(" ")
        if word == "done":
            return 0
        if word == "group":
            pgid, _, log = rest.partition(" ")
            groups[int(pgid)] = log
        elif word == "release":
            groups.pop(int(rest), None)
        elif word == "job":
            jobs.append(rest)
    stop_orphans(groups, jobs, launcher_pid)  # the pipe closed without "done": the launcher died
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
