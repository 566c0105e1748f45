"""Task logs as shared, fallible files: a lock per running task's log, and clear words for a read-only or full disk.

* Before any task starts, every log's folder is created and a small file is written there and removed: a read-only
  or full file system (or a folder without write permission) stops the launcher with one message naming the folder
  and the cause, and no log is touched, so a previous run's log (the trainer's own error) stays as it was.
* A running task's log is locked (fcntl.flock) by the launcher that runs it; a second launcher given the same log
  (the same stage started twice) refuses instead of truncating the log and interleaving a second run with the first.
  The kernel drops the lock when the launcher ends, however it ends. On a file system without locks (some NFS
  setups) the tasks run unprotected, as before.
* After failures, a note says when the file system holding a log is full or read-only.

Standard library only, as the rest of speechllm.launch.
"""
from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from pathlib import Path
from typing import Iterable

FULL_BELOW_BYTES = 64 * 1024 * 1024  # less free space than this on a failed task's log file system: say so
PROBE_BYTES = 4096


class LogError(Exception):
    """A log cannot be written or is in use; the message says which, where and what to do."""


def describe_os_error(error: OSError, path: str | Path) -> str:
    """'exp/train is on a read-only file system', 'the file system of exp/train is full (12 kB free)', ..."""
    code = error.errno
    if code == errno.EROFS:
        return f"{path} is on a read-only file system: give an exp dir on a writable one (or remount it read-write)"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return (f"the file system of {path} is full ({free_text(path)} free; {os.strerror(code)}): free some space "
                "or give an exp dir on another file system")
    if code in (errno.EACCES, errno.EPERM):
        return f"{path} is not writable ({os.strerror(code)}): fix its permissions or give another exp dir"
    return f"{path}: {error.strerror or error}"


def free_bytes(path: str | Path) -> int | None:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def free_text(path: str | Path) -> str:
    free = free_bytes(path)
    if free is None:
        return "unknown"
    for unit in ("bytes", "kB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return f"{free:.1f} TB"


def read_only(path: str | Path) -> bool:
    folder = Path(path)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_writable(logs: Iterable[str]) -> None:
    """Create each log's folder and write (then remove) a small file in it; LogError on the first folder that fails.

    Existing logs are not opened for writing: a refusal leaves them as they were.
    """
    seen = set()
    for log in logs:
        folder = Path(log).parent
        if folder in seen:
            continue
        seen.add(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=folder, prefix=".write-test.", suffix=".tmp")
            try:
                os.write(handle, b"#" * PROBE_BYTES)
                os.fsync(handle)
            finally:
                os.close(handle)
                os.unlink(probe)
        except OSError as error:
            raise LogError(
                f"cannot write the log {log}: {describe_os_error(error, folder)}. No task was started; "
                "existing logs were left as they were"
            ) from None


def check_not_in_use(logs: Iterable[str]) -> None:
    """LogError when another launcher holds one of the logs (its task is running now)."""
    for log in logs:
        try:
            fd = os.open(log, os.O_RDONLY)
        except OSError:
            continue  # no log yet: nobody runs it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LogError(in_use_message(log)) from None
        except OSError:
            pass  # a file system without locks (some NFS setups): no protection, as before
        finally:
            os.close(fd)  # closing drops the probe's lock


def in_use_message(log: str) -> str:
    first = ""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [f.readline().strip() for _ in range(3)]
        started = [line[len("# Started at "):] for line in lines if line.startswith("# Started at ")]
        first = f" (started at {started[0]})" if started else ""
    except OSError:
        pass
    return (f"the log {log} is in use: another launcher is running this task right now{first}. Two runs into one "
            "exp dir would interleave; wait for that run to finish or stop it, then run this command again. "
            "No task was started")


def open_locked(log: str) -> int:
    """A write descriptor on `log` (created if needed, not truncated) holding its lock; LogError if it is held."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LogError(in_use_message(log)) from None
    except OSError:
        pass  # a file system without locks (some NFS setups, ENOLCK): the task runs unprotected, as before
    return fd


def disk_notes(logs: Iterable[str]) -> list[str]:
    """Notes on full or read-only file systems holding these logs (one per folder)."""
    notes, seen = [], set()
    for log in logs:
        folder = Path(log).parent
        if folder in seen:
            continue
        seen.add(folder)
        if read_only(folder):
            notes.append(f"{folder} is on a read-only file system: the tasks could not write there")
            continue
        free = free_bytes(folder)
        if free is not None and free < FULL_BELOW_BYTES:
            notes.append(f"the file system of {folder} is full or nearly ({free_text(folder)} free): tasks that "
                         "write there fail (see their logs); free some space and run the same command again")
    return notes
