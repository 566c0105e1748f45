#!/usr/bin/env python3
"""Train a speech LLM (or collect its statistics with --collect_stats true): ESPnet's AbsTask.main.

Run ``python -m speechllm.bin.speechllm_train --help`` for every option, ``--print_config`` for a full config.
The output dir is locked while the run lasts (speechllm.exp_lock): a second run into it refuses with a message.
"""
import argparse
import contextlib
import os

from speechllm.exp_lock import lock_exp_dir
from speechllm.tasks.speech_llm import SpeechLLMTask


def get_parser():
    return SpeechLLMTask.get_parser()


def first_process(args: argparse.Namespace) -> bool:
    """Whether this process is the one that owns the output dir: rank 0 of a multi-process launch (torchrun, srun
    with --dist_launcher slurm, mpirun), or the only process. ESPnet's own spawned workers never come back here."""
    if getattr(args, "dist_rank", None) not in (None, 0):
        return False
    launcher = getattr(args, "dist_launcher", None)
    variables = ["RANK"] + {"slurm": ["SLURM_PROCID"], "mpi": ["OMPI_COMM_WORLD_RANK", "PMI_RANK"]}.get(launcher, [])
    return all(os.environ.get(name, "0") == "0" for name in variables)


def run_task(task, cmd=None) -> None:
    """``task.main`` (an ESPnet AbsTask) with the output dir locked by the process that owns it."""
    args = task.get_parser().parse_args(cmd)
    owns_dir = args.output_dir is not None and not args.print_config and first_process(args)
    what = "statistics collection" if args.collect_stats else "training"
    with lock_exp_dir(args.output_dir, what, exit_on_busy=True) if owns_dir else contextlib.nullcontext():
        task.main(args=args)


def main(cmd=None):
    run_task(SpeechLLMTask, cmd)


if __name__ == "__main__":
    main()
