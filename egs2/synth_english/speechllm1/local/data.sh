#!/usr/bin/env bash
# Stage 1 of the synth_english recipe: makes data/{train,dev,test_synth} by synthesising multi-speaker English
# (local/synthesize.py: eSpeak NG, Flite, Festival and neural voices; local/README.md) and data/real_* from real,
# licence-clear recordings used only as test data (local/real_speech.py; local/README_real_speech.md).
# Run it from the recipe dir. Reruns reuse the audio already made.
set -euo pipefail

log() {
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
SECONDS=0

# BEGIN OPTIONS
seed=0                  # Random seed of the synthetic corpus: fixes sentences, speakers, augmentation and audio.
num_train=12000         # Synthetic training utterances.
num_dev=300             # Synthetic development utterances (held-out voices and sentences).
num_test=300            # Synthetic test utterances (test_synth; held out as dev).
nj=$(nproc)             # Parallel synthesis processes.
synth_opts=             # More options of local/synthesize.py, e.g. "--engines espeak:1,flite:1".
real_opts=              # Options of local/real_speech.py, e.g. "--sets an4,pocketsphinx".
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Makes data/{train,dev,test_synth} (synthetic) and data/real_* (real recordings, test only)."

log "$0 $*"
# shellcheck source=/dev/null
. utils/parse_options.sh
if [ $# -ne 0 ]; then
    log "Error: $0 takes no positional arguments, got: $*; run '$0 --help' for the options."
    exit 2
fi
# shellcheck source=/dev/null
. ./path.sh

read -r -a synth_args <<< "${synth_opts}"
read -r -a real_args <<< "${real_opts}"
python3 local/synthesize.py --seed "${seed}" --num_train "${num_train}" --num_dev "${num_dev}" \
    --num_test "${num_test}" --nj "${nj}" --data_dir data "${synth_args[@]}"
python3 local/real_speech.py --download_dir downloads --data_dir data "${real_args[@]}"

for x in data/train data/dev data/test_synth data/real_*; do
    utils/validate_data_dir.sh "${x}"
done
log "Successfully finished. [elapsed=${SECONDS}s]"
