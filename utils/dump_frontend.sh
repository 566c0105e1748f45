#!/usr/bin/env bash
# Run a frozen frontend once over a data dir and dump its outputs: utils/dump_frontend.sh [--nj 4] [--cmd utils/local.py] [--batch_size 8] --config conf/train.yaml dump/x dump/frontend/x
# Implemented in speechllm/data/dump_frontend.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.dump_frontend "$@"
