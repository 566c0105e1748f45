#!/usr/bin/env bash
# utt2spk (files or stdin) to spk2utt on stdout: utils/utt2spk_to_spk2utt.sh data/x/utt2spk > data/x/spk2utt
# Implemented in speechllm/data/speakers.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.speakers utt2spk_to_spk2utt "$@"
