#!/usr/bin/env bash
# Merge data dirs: utils/combine_data.sh data/dest data/src1 data/src2 ...
# Implemented in speechllm/data/combine.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.combine "$@"
