#!/usr/bin/env bash
# Copy part of a data dir: utils/subset_data_dir.sh (--utt-list F | --spk-list F | --first N | --last N | --random N [--seed S]) data/src data/dest
# Implemented in speechllm/data/subset.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.subset "$@"
