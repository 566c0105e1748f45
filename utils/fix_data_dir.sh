#!/usr/bin/env bash
# Sort a data dir and drop what cannot be kept (report in data/x/.backup/removed.txt): utils/fix_data_dir.sh data/x
# Implemented in speechllm/data/fix.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.fix "$@"
