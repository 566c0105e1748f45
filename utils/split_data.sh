#!/usr/bin/env bash
# Split a data dir into N parts: utils/split_data.sh [--per-utt] data/x N
# Implemented in speechllm/data/split.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.split "$@"
