#!/usr/bin/env bash
# Makes the synth_av demo corpus on the spot (no download): synth_an4's sentences spoken by eSpeak NG voices, with
# the speaker's mouth drawn at 25 fps from eSpeak NG's phoneme events (96x96 lip-ROI arrays, roi.scp), written as
# Kaldi data dirs data/{train,dev,test} (and data/test_video: a few test utterances as mp4 videos of the whole face,
# video.scp). Run it from the recipe dir (egs2/synth_av/speechllm1). A rerun with the same options reuses the files.
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0

# BEGIN OPTIONS
seed=0                          # Random seed: fixes the sentences, the speakers, their faces, the audio and frames.
num_train=1500                  # Number of training utterances.
num_dev=100                     # Number of development utterances.
num_test=150                    # Number of test utterances.
fs=16000                        # Sampling rate of the written audio (Hz).
audio_dir=downloads/synth_av    # Where the wav, lip-ROI, phone and video files (and plan.tsv) go.
nj=$(nproc)                     # Number of parallel synthesis processes.
num_video=4                     # Test speakers whose first utterance is also an mp4 of the face (data/test_video).
accents=us,gb,sco,rp,lan,wmd,car,nyc  # eSpeak NG accents the speakers are drawn from (fewer: an easier corpus).
hold_out_variants=true          # true: dev/test voice variants never occur in training; false: only speakers differ.
snrs="clean 10 5 0 -5"          # Noisy copies of data/test with babble at these SNRs (dB): data/test_clean, test_snr10...
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Synthesises an audio-visual AN4-like English corpus (eSpeak NG voices, drawn mouths) into data/{train,dev,test}."

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

python3 local/synthesize_av.py --seed "${seed}" --num_train "${num_train}" --num_dev "${num_dev}" \
    --num_test "${num_test}" --fs "${fs}" --audio_dir "${audio_dir}" --data_dir data --nj "${nj}" \
    --num_video "${num_video}" --accents "${accents}" --hold_out_variants "${hold_out_variants}"

sets="train dev test"
if [ "${num_video}" -gt 0 ]; then
    sets="${sets} test_video"
fi
for x in ${sets}; do
    utils/validate_data_dir.sh --fs "${fs}" "data/${x}"
done

# The test set under babble (speechllm/data/snr_mix.py): the lip ROIs are carried over unchanged.
utils/make_snr_sets.sh --snrs "${snrs}" --seed "${seed}" --fs "${fs}" data/test babble "${audio_dir}/snr"
for snr in ${snrs}; do
    x=test_snr${snr}
    [ "${snr}" != clean ] || x=test_clean
    utils/validate_data_dir.sh --fs "${fs}" "data/${x}"
done

log "Successfully finished. [elapsed=${SECONDS}s]"
