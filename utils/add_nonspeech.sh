#!/usr/bin/env bash
# Mix non-speech utterances (empty transcripts) into a data dir: utils/add_nonspeech.sh [--share 0.1] noise.scp data/src data/dest
# Implemented in speechllm/data/nonspeech.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.nonspeech "$@"
