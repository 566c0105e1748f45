#!/usr/bin/env bash
# The Open ASR leaderboard's 8 English test sets into data dirs data/esb_<set>:
#   utils/prepare_esb.sh --corpus_dir /corpora/esb-datasets-test-only-sorted [--sets ami,tedlium] [--data_dir data]
# Implemented in speechllm/data/esb.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.esb "$@"
