#!/usr/bin/env python3
"""Run a command, or a range of tasks of it, on this machine: Kaldi's run.pl as utils/local.py.

    utils/local.py [--max_jobs_run K] [--num_threads N] [--gpu N] JOB=1:4 exp/log/x.JOB.log cmd --part JOB

See speechllm/launch/README.md.
"""
import sys
from pathlib import Path

# Recipes reach this file through their utils/ symlink: resolve it to find the speechllm package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechllm.launch.local import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
