#!/usr/bin/env bash
# Speed-perturbed copy of a data dir: utils/perturb_data_dir_speed.sh 0.9 data/x data/x_sp0.9, or --factors "0.9 1.0 1.1" data/x data/x_sp
# Implemented in speechllm/data/speed_perturb.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.speed_perturb "$@"
