#!/usr/bin/env bash
# Noisy copies of a data dir at chosen SNRs: utils/make_snr_sets.sh [--snrs "clean 10 5 0 -5"] [--seed 0] [--snr_over whole|active] [--babble_talkers 5] [--fs 16000] [--data_out DIR] data/test (noise.scp|babble) dump/snr
# Writes data/test_snr10 ... (data/test_clean for clean) with the wavs under dump/snr/<set>/wav/.
# Implemented in speechllm/data/snr_mix.py; run with --help for the options.
set -euo pipefail
root=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
exec python3 -m speechllm.data.snr_mix "$@"
