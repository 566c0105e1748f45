#!/usr/bin/env bash
# Dump audio to one file per utterance: utils/dump_audio.sh [--nj 4] [--cmd utils/local.py] [--fs 16000] [--audio_format flac] [--resample false] [--channel -1] data/x dump/raw/x
# Implemented in speechllm/data/dump_audio.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.dump_audio "$@"
