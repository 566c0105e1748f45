#!/usr/bin/env bash
# Makes the synth_an4 demo corpus on the spot (no download): AN4-like English sentences spoken by eSpeak NG
# voices, written as Kaldi data dirs data/{train,dev,test} and WAV files under --audio_dir. Run it from the
# recipe dir (egs2/synth_an4/speechllm1). Rerunning with the same options reuses the audio already made.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0

# BEGIN OPTIONS
seed=0                          # Random seed: fixes the sentences, the speakers and the audio.
num_train=1500                  # Number of training utterances.
num_dev=100                     # Number of development utterances.
num_test=150                    # Number of test utterances.
fs=16000                        # Sampling rate of the written audio (Hz).
audio_dir=downloads/synth_an4   # Where the WAV files (and plan.tsv, their settings) go.
nj=$(nproc)                     # Number of parallel synthesis processes.
accents=us,gb,sco,rp,lan,wmd,car,nyc  # eSpeak NG accents the speakers are drawn from (fewer: an easier corpus).
hold_out_variants=true          # true: dev/test voice variants never occur in training; false: only speakers differ.
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Synthesises an AN4-like English corpus with eSpeak NG (PyPI espeakng-loader) into data/{train,dev,test}."

log "$0 $*"
# shellcheck disable=SC1091
. utils/parse_options.sh

if [ $# -ne 0 ]; then
    log "Error: $0 takes no positional arguments, got: $*"
    log "Run '$0 --help' for the options."
    exit 2
fi

if [ -f ./path.sh ]; then
    # shellcheck disable=SC1091
    . ./path.sh
fi

python3 local/synthesize.py --seed "${seed}" --num_train "${num_train}" --num_dev "${num_dev}" \
    --num_test "${num_test}" --fs "${fs}" --audio_dir "${audio_dir}" --data_dir data --nj "${nj}" \
    --accents "${accents}" --hold_out_variants "${hold_out_variants}"

for x in train dev test; do
    utils/validate_data_dir.sh "data/${x}"
done

log "Successfully finished. [elapsed=${SECONDS}s]"
