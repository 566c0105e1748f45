"""Local backend of `$cmd` (Kaldi's run.pl): runs the tasks on this machine, at most --max_jobs_run at once.

--num_threads N sets OMP_NUM_THREADS and MKL_NUM_THREADS for each task. --gpu N hands each running task N
devices of its own through CUDA_VISIBLE_DEVICES (from the launcher's CUDA_VISIBLE_DEVICES, else from
nvidia-smi), so no more tasks run at once than the devices allow; without any visible GPU it is ignored with a
note. --mem, --time and --name are accepted for compatibility with the Slurm backend and have no effect here.
"""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys

from speechllm.launch.common import (
    LaunchError,
    Outcome,
    Task,
    TaskProcess,
    bool_option,
    catch_signals,
    check_generic_options,
    check_logs,
    check_known_options,
    expand_tasks,
    int_option,
    parse_command_line,
    pause,
    received_signal,
    report,
    run_main,
    signal_name,
    stop_processes,
    tasks_to_run,
    thread_environment,
)
from speechllm.launch.guard import Guard

PROG = "local.py"
OPTIONS = ("num_threads", "mem", "gpu", "max_jobs_run", "time", "name", "num_nodes", "rerun_all")
POLL_SECONDS = 0.02


def main(argv: list[str] | None = None) -> int:
    return run_main(PROG, launch, argv)


def launch(argv: list[str]) -> int:
    request = parse_command_line(argv, PROG)
    check_known_options(
        request.options, OPTIONS, PROG, "; site-specific scheduler options belong in utils/slurm.py's config file"
    )
    check_generic_options(request.options)
    if int_option(request.options, "num_nodes", 1, 1) > 1:
        raise LaunchError("--num_nodes above 1 needs a cluster: use utils/slurm.py")
    tasks = tasks_to_run(expand_tasks(request), bool_option(request.options, "rerun_all", False), PROG)
    if not tasks:
        return 0
    gpus_per_task, gpu_pool = gpu_plan(int_option(request.options, "gpu", 0, 0))
    check_logs(tasks)
    catch_signals()
    guard = Guard(PROG)
    outcomes = run_tasks(
        tasks,
        max_jobs=int_option(request.options, "max_jobs_run", len(tasks), 1),
        gpus_per_task=gpus_per_task,
        gpu_pool=gpu_pool,
        extra_env=thread_environment(request.options),
        threads=int_option(request.options, "num_threads", 1, 1),
        guard=guard,
    )
    guard.close()  # every task has ended (or was stopped): nothing left for the guard to do
    signum = received_signal()
    if signum is not None:
        return report_interrupted(outcomes, len(tasks), signum)
    return report(outcomes, PROG)


def visible_gpus() -> list[str]:
    declared = os.environ.get("CUDA_VISIBLE_DEVICES")
    if declared is not None:
        return [device.strip() for device in declared.split(",") if device.strip() and device.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    listing = subprocess.run(
        ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True, check=False
    )
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()] if listing.returncode == 0 else []


def gpu_plan(gpus_per_task: int) -> tuple[int, list[str]]:
    if gpus_per_task == 0:
        return 0, []
    pool = visible_gpus()
    if not pool:
        print(f"{PROG}: note: --gpu {gpus_per_task} ignored: no GPU is visible on this machine", file=sys.stderr)
        return 0, []
    if gpus_per_task > len(pool):
        raise LaunchError(
            f"--gpu {gpus_per_task} asks for more GPUs per task than this machine shows ({len(pool)}: "
            f"{','.join(pool)}); lower --gpu or set CUDA_VISIBLE_DEVICES"
        )
    return gpus_per_task, pool


def run_tasks(
    tasks: list[Task], max_jobs: int, gpus_per_task: int, gpu_pool: list[str], extra_env: dict[str, str], threads: int,
    guard: Guard | None = None,
) -> list[Outcome]:
    """Start tasks while slots and GPUs are free; stop everything when a signal arrives."""
    pending = collections.deque(tasks)
    free_gpus = list(gpu_pool)
    running: dict[TaskProcess, list[str]] = {}
    outcomes: list[Outcome] = []
    while (pending or running) and received_signal() is None:
        while pending and len(running) < max_jobs and len(free_gpus) >= gpus_per_task:
            devices, free_gpus = free_gpus[:gpus_per_task], free_gpus[gpus_per_task:]
            env = {**extra_env, "CUDA_VISIBLE_DEVICES": ",".join(devices)} if devices else extra_env
            process = TaskProcess(pending.popleft(), env, threads, guard)
            running[process] = devices
            process.start()
        for process in [p for p in running if p.poll() is not None]:
            code = process.finish()
            outcomes.append(Outcome(process.task, code, process.note))
            free_gpus += running.pop(process)
        pause(POLL_SECONDS)
    if running:
        signum = received_signal()
        stop_processes(list(running), signum)
        outcomes += [Outcome(p.task, p.finish(), f"stopped by {signal_name(signum)}") for p in running]
    return sorted(outcomes, key=lambda outcome: outcome.task.index)


def report_interrupted(outcomes: list[Outcome], total: int, signum: int) -> int:
    stopped = [o for o in outcomes if o.detail.startswith("stopped by")]
    print(
        f"{PROG}: {signal_name(signum)}: stopped {len(stopped)} running task(s), "
        f"{total - len(outcomes)} not started, {sum(o.code == 0 for o in outcomes)} had succeeded",
        file=sys.stderr,
    )
    for outcome in stopped:
        print(f"  {outcome.task.name}: log: {outcome.task.log}", file=sys.stderr)
    return 128 + signum
