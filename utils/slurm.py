#!/usr/bin/env python3
"""Run a command, or a range of tasks of it, as a Slurm job array: Kaldi's slurm.pl as utils/slurm.py.

    utils/slurm.py --config conf/slurm.conf [--mem 4G] [--gpu 1] JOB=1:4 exp/log/x.JOB.log cmd --part JOB

See speechllm/launch/README.md.
"""
import sys
from pathlib import Path

# Recipes reach this file through their utils/ symlink: resolve it to find the speechllm package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from speechllm.launch.slurm import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
