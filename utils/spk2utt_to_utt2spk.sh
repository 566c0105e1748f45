#!/usr/bin/env bash
# spk2utt (files or stdin) to utt2spk on stdout: utils/spk2utt_to_utt2spk.sh data/x/spk2utt > data/x/utt2spk
# Implemented in speechllm/data/speakers.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.speakers spk2utt_to_utt2spk "$@"
