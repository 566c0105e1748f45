"""One run at a time per output dir: a second training or decoding into the same dir refuses instead of interleaving.

    lock = lock_exp_dir("exp/train", "training")      # raises ExpDirBusy (or exits, exit_on_busy=True)
    ...                                                # the dir is ours until lock.release() or the process ends

The lock is an OS file lock (``filelock``: fcntl.flock on Linux) on ``DIR/.speechllm.lock``: the kernel drops it when
the process ends, however it ends (kill -9 included), so a crashed run never leaves the dir locked. Beside it,
``DIR/.speechllm.lock.owner`` says who holds it (what, pid, host, start time, command), for the refusal message.
On a network file system (NFS) the lock is only as good as the file system's flock.
"""
from __future__ import annotations

import errno
import os
import socket
import sys
import time
from pathlib import Path

import filelock

LOCK_NAME = ".speechllm.lock"
NO_LOCKS_ERRNOS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)


class ExpDirBusy(RuntimeError):
    """Another run holds the output dir."""


class ExpDirLock:
    def __init__(self, path: str | os.PathLike, what: str):
        self.path = Path(path)
        self.what = what
        self.lock_file = self.path / LOCK_NAME
        self.owner_file = self.path / (LOCK_NAME + ".owner")
        self._lock = filelock.FileLock(str(self.lock_file), timeout=0)

    def acquire(self) -> "ExpDirLock":
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            owner = self._owner()
            raise ExpDirBusy(
                f"{self.path} is in use by another run ({owner}): a second {self.what} into the same dir would "
                f"interleave their files. Wait for it to finish or stop it, or give another output dir "
                f"(lock: {self.lock_file})"
            ) from None
        except (NotImplementedError, OSError) as error:
            if isinstance(error, OSError) and error.errno not in NO_LOCKS_ERRNOS:
                raise  # e.g. a read-only or full exp dir: the caller says so
            # A file system without locks (some NFS setups): run as before, unprotected.
            print(f"note: cannot lock {self.path} ({error}): running without protection against a second run",
                  file=sys.stderr)
            return self
        try:
            self.owner_file.write_text(
                f"{self.what}, pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                f": {' '.join(sys.argv)}\n", encoding="utf-8")
        except OSError:
            pass  # the note is for messages only
        return self

    def _owner(self) -> str:
        try:
            return self.owner_file.read_text(encoding="utf-8").strip() or "owner unknown"
        except OSError:
            return "owner unknown"

    def release(self) -> None:
        if self._lock.is_locked:
            try:
                self.owner_file.unlink()
            except OSError:
                pass
            self._lock.release()

    def __enter__(self) -> "ExpDirLock":
        return self if self._lock.is_locked else self.acquire()  # lock_exp_dir() hands it over acquired

    def __exit__(self, *exc) -> None:
        self.release()


def lock_exp_dir(path: str | os.PathLike, what: str, exit_on_busy: bool = False) -> ExpDirLock:
    """Create `path` if needed and lock it for `what` ("training", "decoding"); keep the returned object alive.

    A busy dir raises ExpDirBusy, or with exit_on_busy (command-line entry points) prints the message and exits 1.
    """
    try:
        return ExpDirLock(path, what).acquire()
    except ExpDirBusy as error:
        if not exit_on_busy:
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
