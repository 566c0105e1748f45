"""Slurm backend of `$cmd` (Kaldi's slurm.pl): one sbatch job array, then wait for it.

The generic options (--mem, --gpu, --num_threads, --time, --name, --num_nodes, and any option a site adds) become
sbatch flags through a Kaldi-style config file (--config, else conf/slurm.conf when it exists, else the
recipe template's egs2/TEMPLATE/speechllm1/conf/slurm.conf):

    command sbatch --export=ALL      # the submit command and the flags every job gets
    option mem=* --mem $0            # --mem 4G  ->  --mem 4G   ($0 is the value)
    option mem=0                     # --mem 0   ->  nothing
    default gpu=0                    # the value used when the command line does not give the option
    option gpu=* -p gpu --gres=gpu:$0

--max_jobs_run K becomes the array's `%K`; --rerun_all, --config, --poll_interval (seconds between checks, default
5) and --controller_timeout (seconds that squeue may keep failing before giving up, default 300) are the
launcher's own. Each array task runs `python -m speechllm.launch.run_one SPEC INDEX`, which writes the task's log
exactly as the local backend does; the files Slurm itself writes (scripts, SPEC, sbatch output) go to a `q/`
folder beside the logs. The launcher polls the logs' footers and `squeue` until the job has left the queue.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import speechllm
from speechllm.launch.common import (
    LaunchError,
    Outcome,
    Request,
    Task,
    bool_option,
    catch_signals,
    check_generic_options,
    check_logs,
    compress_indices,
    expand_tasks,
    float_option,
    int_option,
    logged_exit_code,
    parse_command_line,
    pause,
    quote_command_line,
    received_signal,
    report,
    run_main,
    signal_name,
    tasks_to_run,
    thread_environment,
)
from speechllm.launch.guard import Guard

PROG = "slurm.py"
DEFAULT_CONFIG_FILE = "conf/slurm.conf"
# Without --config and without conf/slurm.conf in the working folder: the recipe template's file.
TEMPLATE_CONFIG = Path(speechllm.__file__).resolve().parents[1] / "egs2/TEMPLATE/speechllm1/conf/slurm.conf"
# Options the launcher handles itself instead of mapping them through the config file.
OWN_OPTIONS = ("config", "max_jobs_run", "rerun_all", "poll_interval", "controller_timeout")
FIRST_POLL_SECONDS = 0.5


@dataclasses.dataclass
class SlurmConfig:
    source: str  # the file, for messages
    command: list[str]
    defaults: dict[str, str]
    exact: dict[tuple[str, str], list[str]]  # (option, value) -> flags
    wildcard: dict[str, list[str]]  # option -> flags containing $0


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, launch, argv)


def launch(argv: list[str]) -> int:
    request = parse_command_line(argv, PROG)
    check_generic_options(request.options)
    config = load_config(request.options.get("config"))
    flags = sbatch_flags(config, request.options)
    poll_interval = float_option(request.options, "poll_interval", 5.0)
    controller_timeout = float_option(request.options, "controller_timeout", 300.0)
    tasks = tasks_to_run(expand_tasks(request), bool_option(request.options, "rerun_all", False), PROG)
    if not tasks:
        return 0
    check_logs(tasks)
    catch_signals()
    guard = Guard(PROG)  # scancels the job if this launcher is killed with SIGKILL
    job = submit(config, flags, request, tasks)
    guard.watch_job(job.job_id)
    print(f"{PROG}: submitted {len(tasks)} task(s) as job {job.job_id}; waiting", file=sys.stderr)
    try:
        wait_for_job(job, poll_interval, controller_timeout)
    except LaunchError:
        guard.close()  # the job is left to the user on purpose (the message says how to check it)
        raise
    signum = received_signal()
    if signum is not None:
        code = cancel(job, signum)
        guard.close()
        return code
    guard.close()
    return report([outcome_of(job, task) for task in tasks], PROG)


# ---------------------------------------------------------------------------------------------- config


def load_config(path: str | None) -> SlurmConfig:
    if path is None:
        path = DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else str(TEMPLATE_CONFIG)
        if path != DEFAULT_CONFIG_FILE:
            print(f"{PROG}: note: no --config and no {DEFAULT_CONFIG_FILE} here: using {path}", file=sys.stderr)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise LaunchError(
            f"--config {path}: cannot read it ({error.strerror}); "
            f"start from egs2/TEMPLATE/speechllm1/conf/slurm.conf of the speechllm sources"
        ) from None
    return parse_config(text, path)


def parse_config(text: str, source: str) -> SlurmConfig:
    config = SlurmConfig(source=source, command=[], defaults={}, exact={}, wildcard={})
    for number, raw in enumerate(text.splitlines(), 1):
        words = raw.split("#", 1)[0].split(None, 2)
        if not words:
            continue
        where = f"{source}:{number}"
        if words[0] == "command":
            config.command = _split_flags(raw.split("#", 1)[0], where)[1:]
        elif words[0] in ("option", "default") and len(words) >= 2 and _is_assignment(words[1]):
            _add_rule(config, words, where)
        else:
            raise LaunchError(
                f"{where}: cannot read {raw.strip()!r}: lines are 'command sbatch FLAGS', "
                f"'option NAME=VALUE [FLAGS]', 'option NAME=* FLAGS-WITH-$0' or 'default NAME=VALUE'"
            )
    if not config.command:
        raise LaunchError(f"{source}: no 'command' line: add one such as 'command sbatch --export=ALL'")
    return config


def _is_assignment(word: str) -> bool:
    name, equals, value = word.partition("=")
    return bool(name and equals and value)


def _add_rule(config: SlurmConfig, words: list[str], where: str) -> None:
    name, _, value = words[1].partition("=")
    flags = _split_flags(words[2], where) if len(words) > 2 else []
    if words[0] == "default":
        if flags or value == "*":
            raise LaunchError(f"{where}: write a default as 'default {name}=VALUE' with nothing after it")
        config.defaults[name] = value
    elif value == "*":
        config.wildcard[name] = flags
    else:
        config.exact[(name, value)] = flags


def _split_flags(text: str, where: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as error:
        raise LaunchError(f"{where}: {error} in {text.strip()!r}: close the quote") from None


def sbatch_flags(config: SlurmConfig, options: dict[str, str]) -> list[str]:
    """Map each option (command line over config defaults) to sbatch flags: exact rule first, then NAME=*."""
    wanted = {**config.defaults, **{k: v for k, v in options.items() if k not in OWN_OPTIONS}}
    flags: list[str] = []
    for name, value in wanted.items():
        if (name, value) in config.exact:
            flags += config.exact[(name, value)]
        elif name in config.wildcard:
            flags += [word.replace("$0", value) for word in config.wildcard[name]]
        else:
            raise LaunchError(
                f"--{name} {value}: {config.source} has no rule for it: add a line "
                f"'option {name}=* SBATCH-FLAGS-WITH-$0' (or 'option {name}={value} SBATCH-FLAGS')"
            )
    return flags


# ---------------------------------------------------------------------------------------------- submission


@dataclasses.dataclass
class SubmittedJob:
    job_id: str
    tasks: list[Task]
    output_pattern: str  # sbatch's own stdout/stderr, %a = array index


def queue_dir(request: Request) -> Path:
    """`q/` beside the logs: the deepest folder of the log path that does not depend on the task index."""
    folder = Path(request.log).parent
    while request.var is not None and request.var in str(folder):
        folder = folder.parent
    return folder / "q"


def submit(config: SlurmConfig, flags: list[str], request: Request, tasks: list[Task]) -> SubmittedJob:
    qdir = queue_dir(request)
    qdir.mkdir(parents=True, exist_ok=True)
    stem = Path(request.log).name.removesuffix(".log")
    spec = qdir / f"{stem}.json"
    spec.write_text(json.dumps(job_spec(request, tasks), indent=1), encoding="utf-8")
    script = qdir / f"{stem}.sh"
    script.write_text(batch_script(spec, request, tasks), encoding="utf-8")
    if request.var is None:
        output, array = qdir / f"{stem}.out", []
    else:
        output = qdir / f"{stem.replace(request.var, '%a') if request.var in stem else stem + '.%a'}.out"
        array = [f"--array={compress_indices(t.index for t in tasks)}{max_jobs_suffix(request.options)}"]
    for task in tasks:
        mark_queued(task)
    command = config.command + flags + array + [f"--output={output}", "--parsable", str(script)]
    return SubmittedJob(job_id=run_sbatch(command, config), tasks=tasks, output_pattern=str(output))


def job_spec(request: Request, tasks: list[Task]) -> dict:
    return {
        "env": thread_environment(request.options),
        "threads": int_option(request.options, "num_threads", 1, 1),
        "tasks": {str(task.index): task.to_json() for task in tasks},
    }


def batch_script(spec: Path, request: Request, tasks: list[Task]) -> str:
    index = '"${SLURM_ARRAY_TASK_ID}"' if request.var is not None else str(tasks[0].index)
    root = Path(speechllm.__file__).resolve().parents[1]
    return (
        "#!/usr/bin/env bash\n"
        f"# Written by {PROG} for {shlex.quote(request.log)}: runs one task, logging like utils/local.py.\n"
        f"cd {shlex.quote(os.getcwd())}\n"
        f"export PYTHONPATH={shlex.quote(str(root))}${{PYTHONPATH:+:${{PYTHONPATH}}}}\n"
        f"exec {shlex.quote(sys.executable)} -m speechllm.launch.run_one {shlex.quote(str(spec.resolve()))} {index}\n"
    )


def max_jobs_suffix(options: dict[str, str]) -> str:
    return f"%{int_option(options, 'max_jobs_run', 1, 1)}" if "max_jobs_run" in options else ""


def mark_queued(task: Task) -> None:
    """Replace an old log (a failed run's footer would read as this run's result) with a 'queued' note."""
    log = Path(task.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"# {quote_command_line(task.argv)}\n# Queued by {PROG} at {time.ctime()}\n", encoding="utf-8")


def run_sbatch(command: list[str], config: SlurmConfig) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise LaunchError(
            f"{command[0]!r} (from {config.source}) is not on PATH: run on a Slurm login node, or use utils/local.py"
        ) from None
    if result.returncode != 0:
        raise LaunchError(
            f"sbatch refused the job (exit code {result.returncode}): {result.stderr.strip()}\n"
            f"  command: {quote_command_line(command)}\n  check the flags that {config.source} maps the options to"
        )
    return result.stdout.strip().split(";")[0]


# ---------------------------------------------------------------------------------------------- waiting


def wait_for_job(job: SubmittedJob, poll_interval: float, controller_timeout: float) -> None:
    """Return once every task's log has its footer or the job has left the queue, or on a caught signal."""
    interval = min(FIRST_POLL_SECONDS, poll_interval)
    last_contact = time.monotonic()
    while received_signal() is None:
        if all(logged_exit_code(task.log) is not None for task in job.tasks):
            return
        queued, error = job_in_queue(job.job_id)
        if queued is False:
            pause(1.0)  # a footer written just before the job ended may still be on its way (NFS)
            return
        if queued is None and time.monotonic() - last_contact > controller_timeout:
            raise LaunchError(
                f"squeue has failed for {controller_timeout:.0f} s ({error}): the Slurm controller seems down. "
                f"Job {job.job_id} may still be queued or running: once the controller is back, check it with "
                f"'squeue -j {job.job_id}' (or scancel it), then run this command again: tasks whose log ends with "
                f"exit code 0 are skipped"
            )
        if queued:
            last_contact = time.monotonic()
        pause(interval)
        interval = min(interval * 2, poll_interval)


def job_in_queue(job_id: str) -> tuple[bool | None, str]:
    """True while the job is pending, running or completing; False once it has left; None if squeue failed."""
    try:
        result = subprocess.run(
            ["squeue", "--noheader", "--jobs", job_id, "--format=%i"],
            capture_output=True, text=True, timeout=120, check=False,
        )
    except subprocess.TimeoutExpired:
        return None, "squeue did not answer within 120 s"
    except FileNotFoundError:
        return None, "squeue is not on PATH"
    if result.returncode == 0:
        return bool(result.stdout.strip()), ""
    if "Invalid job id" in result.stderr:  # the controller has already forgotten the finished job
        return False, ""
    return None, result.stderr.strip() or f"exit code {result.returncode}"


def outcome_of(job: SubmittedJob, task: Task) -> Outcome:
    code = logged_exit_code(task.log)
    if code is not None:
        return Outcome(task, code)
    output = job.output_pattern.replace("%a", str(task.index))
    return Outcome(
        task, None, f"killed by Slurm (time or memory limit, scancel, node failure?): see also {output}"
    )


def cancel(job: SubmittedJob, signum: int) -> int:
    try:
        result = subprocess.run(["scancel", job.job_id], capture_output=True, text=True, check=False)
        how = "cancelled" if result.returncode == 0 else f"could not scancel it ({result.stderr.strip()})"
    except FileNotFoundError:
        how = "could not scancel it (scancel is not on PATH)"
    print(f"{PROG}: {signal_name(signum)}: job {job.job_id} {how}; logs: {job.tasks[0].log} ...", file=sys.stderr)
    return 128 + signum
