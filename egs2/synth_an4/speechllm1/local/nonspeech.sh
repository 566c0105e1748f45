#!/usr/bin/env bash
# Insertions on audio without speech (Pham et al., arXiv 2406.17272), on the demo corpus. After ./run.sh, this
# makes test_ns: the 150 test utterances plus --share of non-speech (segments of a noise recording and
# near-silence, empty transcripts; utils/add_nonspeech.sh), and decodes it with the speech LLM of ./run.sh, alone
# and jointly with CTC. With --train true it also trains the same speech LLM on train + --train_share of non-speech
# cut from the other noise recordings (exp/train_nonspeech) and decodes test_ns with it. Stage 10 writes the
# insertions on the non-speech utterances into each decode's score_wer/nonspeech.yaml and RESULTS.md.
#   local/nonspeech.sh [--train true] [--share 0.25] [--train_share 0.1] [--noise_archive PATH]
set -euo pipefail

share=0.25                     # share of test_ns that is non-speech
train=false                    # also train a speech LLM with non-speech in its training set
train_share=0.1                # share of its training set that is non-speech
noise_archive=../../../../shared/corpora/mini_an4/downloads.tar.gz  # holds downloads/noise/*.wav
# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh

log() { printf '%s (nonspeech.sh) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$*"; }
[[ -f dump/test/utt2num_samples ]] || { echo "nonspeech.sh: run ./run.sh first (dump/test)" >&2; exit 1; }
[[ -f ${noise_archive} ]] || { echo "nonspeech.sh: no noise archive ${noise_archive}: pass --noise_archive" >&2; exit 1; }

log "Noise recordings of ${noise_archive}: the last for testing, the others for training"
mkdir -p data/noise
tar -xzf "${noise_archive}" -C data/noise --strip-components 2 --wildcards 'downloads/noise/*.wav'
for wav in data/noise/*.wav; do
    echo "$(basename "${wav}" .wav) ${wav}"
done | LC_ALL=C sort > data/noise/all.scp
(( $(wc -l < data/noise/all.scp) >= 2 )) || { echo "nonspeech.sh: ${noise_archive} has fewer than 2 noise recordings" >&2; exit 1; }
tail -n 1 data/noise/all.scp > data/noise/test.scp
head -n -1 data/noise/all.scp > data/noise/train.scp

log "test + non-speech (share ${share}) -> dump/test_ns"
utils/add_nonspeech.sh --share "${share}" data/noise/test.scp dump/test dump/test_ns
models=(conf/train.yaml:train)
if ${train}; then
    log "train + non-speech (share ${train_share}) -> dump/train_ns; the speech LLM trained on it: exp/train_nonspeech"
    utils/add_nonspeech.sh --share "${train_share}" --seed 1 data/noise/train.scp dump/train dump/train_ns
    ./run.sh --train_set train_ns --model_tag train_nonspeech --stage 7 --stop_stage 8
    models+=(conf/train.yaml:train_nonspeech)
fi
for model in "${models[@]}"; do
    for config in conf/decode_llm.yaml conf/decode.yaml; do
        log "Speech LLM exp/${model#*:} (${config}) on test_ns"
        ./run.sh --train_config "${model%%:*}" --model_tag "${model#*:}" --stage 9 --stop_stage 10 \
            --test_sets test_ns --decode_config "${config}"
    done
done
