#!/usr/bin/env bash
# Drop utterances outside length limits: utils/filter_data_dir.sh [--min_duration 0.1] [--max_duration 30] [--max_text_words 500] [--fs 16000] data/in data/out
# Implemented in speechllm/data/length_filter.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.length_filter "$@"
