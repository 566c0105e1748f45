"""Run one task of a job submitted by utils/slurm.py, inside Slurm: python -m speechllm.launch.run_one SPEC INDEX.

SPEC is the JSON file slurm.py wrote (tasks by index, extra environment, threads). The task's log gets the same
header and footer as with utils/local.py; SIGTERM from scancel or a time limit is passed on to the command's
process group, so that the footer still records how the task ended.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from speechllm.launch.common import (
    Task,
    TaskProcess,
    catch_signals,
    pause,
    received_signal,
    stop_processes,
)

POLL_SECONDS = 0.1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m speechllm.launch.run_one SPEC.json INDEX", file=sys.stderr)
        return 2
    spec_path, index = argv
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    if index not in spec["tasks"]:
        print(f"run_one: {spec_path} has no task {index} (it has {', '.join(spec['tasks'])})", file=sys.stderr)
        return 2
    catch_signals()
    process = TaskProcess(Task.from_json(spec["tasks"][index]), spec["env"], spec["threads"])
    process.start()
    while process.poll() is None and received_signal() is None:
        pause(POLL_SECONDS)
    if received_signal() is not None:
        stop_processes([process], received_signal())
    return process.finish()


if __name__ == "__main__":
    sys.exit(main())
