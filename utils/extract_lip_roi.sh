#!/usr/bin/env bash
# Lip ROIs (96x96 grayscale, 25 fps) of a data dir's video.scp: utils/extract_lip_roi.sh [--nj 4] [--cmd utils/local.py] [--resample_video false] [--smooth_window 12] data/x dump/roi/x
# Implemented in speechllm/data/lip_roi.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.lip_roi "$@"
