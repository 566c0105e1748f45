"""What the job launchers share: Kaldi's `$cmd` command line, task logs, reruns, failure reports.

    PROG [--option value ...] [VAR=START:END] LOG COMMAND [ARG ...]

Every occurrence of VAR in LOG and in the arguments is replaced by the task index, as Kaldi's run.pl does.
COMMAND is executed as an argv list, never through a shell. Each task's log starts with a header (the command
line, quoted so that it can be pasted into bash; host; start time) and ends with a footer
(`# Accounting: time=N threads=T`, `# Ended (code C) at DATE, elapsed time S seconds`). A task whose log shows
the same command line and ends with code 0 is skipped on a rerun unless `--rerun_all true` is given.

Standard library only: the launchers run before (and without) the heavy Python stack.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

from speechllm.launch.logs import LogError, check_not_in_use, check_writable, describe_os_error, disk_notes, open_locked

RANGE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(\d+)(?::(\d+))?$")
LOOKS_LIKE_RANGE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
ENDED_RE = re.compile(r"^# Ended \(code (-?\d+)\)")
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")
# How long a task may take to exit after SIGTERM before it gets SIGKILL.
KILL_GRACE_SECONDS = 10.0


class LaunchError(Exception):
    """A problem the user must fix (bad command line, bad config, the scheduler refusing the job)."""


@dataclasses.dataclass
class Request:
    """A parsed launcher command line."""

    options: dict[str, str]  # option name with dashes turned into underscores -> value; the last one given wins
    var: str | None  # the range variable ("JOB"), None for the form without a range
    indices: range
    log: str  # log path, still containing `var`
    command: list[str]  # still containing `var`


@dataclasses.dataclass(frozen=True)
class Task:
    """One task: the range variable substituted everywhere."""

    name: str  # "JOB=3", or "the task" for the form without a range
    index: int
    log: str
    argv: tuple[str, ...]

    def to_json(self) -> dict:
        return {"name": self.name, "index": self.index, "log": self.log, "argv": list(self.argv)}

    @classmethod
    def from_json(cls, data: dict) -> "Task":
        return cls(name=data["name"], index=data["index"], log=data["log"], argv=tuple(data["argv"]))


@dataclasses.dataclass
class Outcome:
    """How a task ended: its exit code, or None when its log has no footer (killed from outside)."""

    task: Task
    code: int | None
    detail: str = ""


# ---------------------------------------------------------------------------------------------- command line


def usage(prog: str) -> str:
    return (
        f"usage: {prog} [--num_threads N] [--mem 4G] [--gpu N] [--max_jobs_run K] [--time HH:MM:SS] "
        f"[--rerun_all true|false] [JOB=1:N] LOG COMMAND [ARG ...]\n"
        f"  e.g. {prog} JOB=1:4 exp/log/decode.JOB.log python -m x --part JOB"
    )


def parse_command_line(argv: list[str], prog: str) -> Request:
    options, rest = _split_options(argv, prog)
    var, indices = None, range(1, 2)
    if rest and LOOKS_LIKE_RANGE_RE.match(rest[0]):
        var, indices = parse_range(rest[0])
        rest = rest[1:]
    if len(rest) < 2:
        raise LaunchError(f"expected a log file and a command after the options\n{usage(prog)}")
    log, command = rest[0], rest[1:]
    if var is not None and len(indices) > 1 and var not in log:
        raise LaunchError(
            f"{len(indices)} tasks ({var}={indices.start}:{indices.stop - 1}) would share the log file {log}: "
            f"put {var} in the log path, e.g. {_example_log_with_var(log, var)}"
        )
    return Request(options=options, var=var, indices=indices, log=log, command=command)


def _split_options(argv: list[str], prog: str) -> tuple[dict[str, str], list[str]]:
    """Kaldi style: leading `--name value` (or `--name=value`) pairs; dashes in names equal underscores."""
    options: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        flag = argv[i]
        name, has_value, value = flag[2:].partition("=")
        if not name:
            raise LaunchError(f"empty option name in {flag!r}\n{usage(prog)}")
        if not has_value:
            if i + 1 >= len(argv):
                raise LaunchError(f"option {flag} needs a value, e.g. {flag} 4\n{usage(prog)}")
            i += 1
            value = argv[i]
        options[name.replace("-", "_")] = value
        i += 1
    return options, argv[i:]


def parse_range(text: str) -> tuple[str, range]:
    match = RANGE_RE.match(text)
    if not match:
        raise LaunchError(f"bad task range {text!r}: write VAR=START:END with 1 <= START <= END, e.g. JOB=1:4")
    var, start, end = match.group(1), int(match.group(2)), int(match.group(3) or match.group(2))
    if start < 1 or end < start:
        raise LaunchError(f"bad task range {text!r}: need 1 <= START <= END, e.g. {var}=1:4")
    return var, range(start, end + 1)


def _example_log_with_var(log: str, var: str) -> str:
    stem, dot, suffix = log.rpartition(".")
    return f"{stem}.{var}.{suffix}" if dot and "/" not in suffix else f"{log}.{var}"


def check_known_options(options: dict[str, str], known: Iterable[str], prog: str, hint: str = "") -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        listed = ", ".join(f"--{name}" for name in sorted(known))
        raise LaunchError(f"unknown option(s) {', '.join('--' + n for n in unknown)} for {prog} (it knows {listed}){hint}")


def int_option(options: dict[str, str], name: str, default: int, minimum: int) -> int:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise LaunchError(f"--{name} must be an integer >= {minimum}, got {text!r}")
    return value


def float_option(options: dict[str, str], name: str, default: float) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise LaunchError(f"--{name} must be a number of seconds > 0, got {text!r}")
    return value


def bool_option(options: dict[str, str], name: str, default: bool) -> bool:
    text = options.get(name)
    if text is None:
        return default
    if text.lower() in TRUE_WORDS:
        return True
    if text.lower() in FALSE_WORDS:
        return False
    raise LaunchError(f"--{name} takes true or false, got {text!r}")


def check_generic_options(options: dict[str, str]) -> None:
    """Validate the numeric generic options once, for every backend."""
    int_option(options, "num_threads", 1, 1)
    int_option(options, "gpu", 0, 0)
    int_option(options, "max_jobs_run", 1, 1)
    int_option(options, "num_nodes", 1, 1)
    bool_option(options, "rerun_all", False)


def expand_tasks(request: Request) -> list[Task]:
    if request.var is None:
        return [Task(name="the task", index=1, log=request.log, argv=tuple(request.command))]
    return [
        Task(
            name=f"{request.var}={index}",
            index=index,
            log=request.log.replace(request.var, str(index)),
            argv=tuple(arg.replace(request.var, str(index)) for arg in request.command),
        )
        for index in request.indices
    ]


def compress_indices(indices: Iterable[int]) -> str:
    """[1, 2, 3, 5, 7, 8] -> "1-3,5,7-8" (the syntax of sbatch --array)."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def thread_environment(options: dict[str, str]) -> dict[str, str]:
    """--num_threads N caps the math libraries' thread pools of the task."""
    if "num_threads" not in options:
        return {}
    threads = str(int_option(options, "num_threads", 1, 1))
    return {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}


# ---------------------------------------------------------------------------------------------- task logs


def quote_command_line(argv: Iterable[str]) -> str:
    """One line that bash turns back into `argv`; control characters use bash's $'...' quoting."""
    return " ".join(_quote_word(word) for word in argv)


def _quote_word(word: str) -> str:
    if not any(_is_control(ch) for ch in word):
        return shlex.quote(word)
    return "$'" + "".join(_ansi_c_char(ch) for ch in word) + "'"


def _is_control(ch: str) -> bool:
    return ord(ch) < 32 or ord(ch) == 127


def _ansi_c_char(ch: str) -> str:
    if ch in "\\'":
        return "\\" + ch
    return f"\\x{ord(ch):02x}" if _is_control(ch) else ch


def _now_text() -> str:
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def header_lines(task: Task) -> str:
    return f"# {quote_command_line(task.argv)}\n# Running on {socket.gethostname()}\n# Started at {_now_text()}\n#\n"


def footer_lines(code: int, elapsed: float, threads: int) -> str:
    return (
        f"# Accounting: time={round(elapsed)} threads={threads}\n"
        f"# Ended (code {code}) at {_now_text()}, elapsed time {elapsed:.2f} seconds\n"
    )


def logged_exit_code(log: str | Path) -> int | None:
    """The code of the log's `# Ended (code C)` footer, None without a footer."""
    try:
        with open(log, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace").rstrip("\n").rsplit("\n", 1)[-1]
    except FileNotFoundError:
        return None
    match = ENDED_RE.match(tail)
    return int(match.group(1)) if match else None


def logged_command_line(log: str | Path) -> str | None:
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            first = f.readline().rstrip("\n")
    except FileNotFoundError:
        return None
    return first[2:] if first.startswith("# ") else None


def already_succeeded(task: Task) -> bool:
    return logged_command_line(task.log) == quote_command_line(task.argv) and logged_exit_code(task.log) == 0


def tasks_to_run(tasks: list[Task], rerun_all: bool, prog: str) -> list[Task]:
    """Skip the tasks that already succeeded with the same command, and say so."""
    if rerun_all:
        return tasks
    done = [task for task in tasks if already_succeeded(task)]
    if done:
        which = "the task" if len(tasks) == 1 else f"{len(done)} of {len(tasks)} tasks ({_names(done)})"
        print(
            f"{prog}: skipping {which}: the log ends with exit code 0 for the same command "
            f"(e.g. {done[0].log}); pass --rerun_all true to run again",
            file=sys.stderr,
        )
    return [task for task in tasks if task not in done]


def _names(tasks: list[Task]) -> str:
    var = tasks[0].name.split("=")[0]
    return f"{var}={compress_indices(task.index for task in tasks)}"


class TaskProcess:
    """One task running with stdout and stderr appended to its log, between the header and the footer.

    The log stays locked (speechllm.launch.logs) while the task runs, so a second launcher refuses to take it over;
    with a guard (speechllm.launch.guard) the task is stopped even if the launcher is killed with SIGKILL.
    """

    def __init__(self, task: Task, extra_env: dict[str, str], threads: int, guard=None):
        self.task = task
        self.extra_env = extra_env
        self.threads = threads
        self.guard = guard
        self.proc: subprocess.Popen | None = None
        self.start_code: int | None = None  # set when the command could not even start
        self.started = 0.0
        self.lock_fd: int | None = None
        self.note = ""  # what went wrong with the log itself, for the report

    def start(self) -> None:
        log = Path(self.task.log)
        self.started = time.monotonic()
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            self.lock_fd = open_locked(str(log))
            os.ftruncate(self.lock_fd, 0)
            os.write(self.lock_fd, header_lines(self.task).encode("utf-8"))
            out = open(log, "ab")  # O_APPEND: the output and our footer land after the header
        except LogError as error:
            self.start_code, self.note = 1, str(error)
            return
        except OSError as error:
            self.start_code, self.note = 1, f"cannot write its log: {describe_os_error(error, log.parent)}"
            return
        with out:
            try:
                # Own session: Ctrl-C in the terminal reaches the launcher only, which stops the whole group.
                self.proc = subprocess.Popen(
                    self.task.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    env={**os.environ, **self.extra_env}, start_new_session=True,
                )
            except OSError as error:
                out.write(f"cannot run {self.task.argv[0]!r}: {error}\n".encode())
                self.start_code = 127
        if self.proc is not None and self.guard is not None:
            self.guard.watch_group(self.proc.pid, self.task.log)

    def poll(self) -> int | None:
        if self.proc is None:
            return self.start_code
        return _shell_style_code(self.proc.poll())

    def wait(self) -> int:
        if self.proc is None:
            return self.start_code or 0
        return _shell_style_code(self.proc.wait())

    def send(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signum)
            except ProcessLookupError:
                pass

    def finish(self) -> int:
        code = self.wait()
        if self.proc is not None and self.guard is not None:
            self.guard.release_group(self.proc.pid)
        if self.lock_fd is None:  # the log could not be written at all
            return code
        try:
            with open(self.task.log, "a", encoding="utf-8") as f:
                f.write(footer_lines(code, time.monotonic() - self.started, self.threads))
        except OSError as error:  # a full disk: the task's own output (its error) stays as it is
            self.note = f"no footer written: {describe_os_error(error, Path(self.task.log).parent)}"
        finally:
            os.close(self.lock_fd)
            self.lock_fd = None
        return code


def _shell_style_code(returncode: int | None) -> int | None:
    """Killed by signal S -> 128 + S, as bash reports it."""
    if returncode is None or returncode >= 0:
        return returncode
    return 128 - returncode


def stop_processes(processes: list[TaskProcess], signum: int) -> None:
    """Forward the signal to each running task's process group; SIGKILL what is left after a grace period."""
    for process in processes:
        process.send(signum)
    deadline = time.monotonic() + KILL_GRACE_SECONDS
    while any(p.poll() is None for p in processes) and time.monotonic() < deadline:
        time.sleep(0.05)
    for process in processes:
        process.send(signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- reporting


_received_signal: int | None = None


def catch_signals() -> None:
    """Record SIGINT/SIGTERM/SIGHUP instead of dying, so that the backend stops its tasks first.

    The handler only records: signals are never blocked around Popen, whose children would inherit the mask.
    """

    def record(signum, frame):
        global _received_signal
        _received_signal = signum

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, record)


def received_signal() -> int | None:
    return _received_signal


def pause(seconds: float) -> None:
    """Sleep, but wake up within 0.1 s of a caught signal."""
    deadline = time.monotonic() + seconds
    while _received_signal is None and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


# What a bare exit code of a killed task most often means, and what to do (the log ends without a Python error).
EXIT_CODE_CAUSES = {
    137: "killed by SIGKILL, most often by the kernel's out-of-memory killer (check `dmesg | grep -i oom` or "
         "`journalctl -k`; on Slurm, `sacct -j JOBID -o JobID,State,MaxRSS`): give each task more memory (--mem), "
         "or make it need less: smaller batches (--inference_batch_size, batch_bins) or fewer tasks at once "
         "(--inference_nj, --nj, --max_jobs_run)",
    139: "killed by SIGSEGV (a crash in native code): the log's last lines name the library; rerun the command "
         "alone to reproduce it",
    143: "stopped by SIGTERM (a time limit, a scheduler's preemption or a user's kill): run it again; tasks that "
         "succeeded are skipped",
}


def report(outcomes: list[Outcome], prog: str) -> int:
    """Print which tasks failed and where their logs are; the launcher's exit status."""
    failed = [o for o in outcomes if o.code != 0]
    if not failed:
        return 0
    print(f"{prog}: {len(failed)} of {len(outcomes)} task(s) failed:", file=sys.stderr)
    for outcome in failed:
        how = f"exit code {outcome.code}" if outcome.code is not None else "no '# Ended' line in its log"
        detail = f" ({outcome.detail})" if outcome.detail else ""
        print(f"  {outcome.task.name}: {how}{detail}, log: {outcome.task.log}", file=sys.stderr)
    print(_log_tail(failed[0].task.log), end="", file=sys.stderr)
    for code in sorted({o.code for o in failed if o.code in EXIT_CODE_CAUSES}):
        print(f"{prog}: exit code {code}: {EXIT_CODE_CAUSES[code]}", file=sys.stderr)
    for note in disk_notes(outcome.task.log for outcome in failed):
        print(f"{prog}: note: {note}", file=sys.stderr)
    print(f"{prog}: fix the cause and run the same command again: tasks that succeeded are skipped", file=sys.stderr)
    return 1


def check_logs(tasks: list[Task]) -> None:
    """Before starting anything: every log's folder writable with room to spare, no log in use by another launcher
    (see speechllm.launch.logs); LaunchError otherwise, with the logs left as they were."""
    try:
        check_not_in_use(task.log for task in tasks)
        check_writable(task.log for task in tasks)
    except LogError as error:
        raise LaunchError(str(error)) from None


def _log_tail(log: str, lines: int = 10) -> str:
    try:
        text = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    # Between the 4 header lines and the footer: what the command itself printed.
    body = [line for line in text[4:] if not (line.startswith("# Accounting:") or ENDED_RE.match(line))]
    return "".join(f"  | {line}\n" for line in body[-lines:])


def run_main(prog: str, body: Callable[[list[str]], int], argv: list[str] | None) -> int:
    """Entry-point wrapper: LaunchError -> one clear message and exit status 1."""
    try:
        return body(sys.argv[1:] if argv is None else argv)
    except LaunchError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
