#!/usr/bin/env bash
# Check a Kaldi data dir: utils/validate_data_dir.sh [--no-text] [--no-spk-sort] [--allow-empty-text] data/x
# Implemented in speechllm/data/validate.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.validate "$@"
