#!/usr/bin/env bash
# Room impulse responses and additive noise in training (ESPnet's --rir_scp/--noise_scp options, run by
# speechllm/data/augment.py), on the demo corpus. After ./run.sh, this makes noisy copies of the test set with the
# held-out noise recording (utils/make_snr_sets.sh: test_snr10, test_snr5, test_snr0), trains the recipe's speech
# LLM again with the other noise recordings and the impulse responses of the mini_an4 archive applied on the fly
# (exp/train_augment), and decodes the clean and noisy test sets with both models, the LLM alone and jointly with
# CTC: one table, exp/augmentation.md.
#   local/augmentation.sh [--noise_apply_prob 0.5] [--noise_db_range 0_15] [--rir_apply_prob 0.3] [--snrs "10 5 0"]
set -euo pipefail

noise_apply_prob=0.5           # share of training utterances given noise
noise_db_range=0_15            # its SNR range (dB)
rir_apply_prob=0.3             # share of training utterances given a room impulse response
snrs="10 5 0"                  # the noisy test sets
archive=../../../../shared/corpora/mini_an4/downloads.tar.gz  # holds downloads/noise/*.wav, downloads/rirs/*.wav
# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh

log() { printf '%s (augmentation.sh) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$*"; }
[[ -f exp/train/config.yaml ]] || { echo "augmentation.sh: run ./run.sh first (the speech LLM, exp/train)" >&2; exit 1; }
[[ -f ${archive} ]] || { echo "augmentation.sh: no archive ${archive}: pass --archive" >&2; exit 1; }

log "Noise recordings and impulse responses of ${archive}: the last noise for testing, the others for training"
for kind in noise rirs; do
    mkdir -p "data/${kind}"
    tar -xzf "${archive}" -C "data/${kind}" --strip-components 2 --wildcards "downloads/${kind}/*.wav"
    for wav in "data/${kind}"/*.wav; do
        echo "$(basename "${wav}" .wav) ${wav}"
    done | LC_ALL=C sort > "data/${kind}/all.scp"
done
(( $(wc -l < data/noise/all.scp) >= 2 )) || { echo "augmentation.sh: ${archive} has fewer than 2 noise recordings" >&2; exit 1; }
tail -n 1 data/noise/all.scp > data/noise/test.scp
head -n -1 data/noise/all.scp > data/noise/train.scp

log "test with the held-out noise at ${snrs} dB -> data/test_snrN"
utils/make_snr_sets.sh --snrs "${snrs}" data/test data/noise/test.scp dump/snr
noisy=""
for snr in ${snrs}; do noisy+=" test_snr${snr}"; done
./run.sh --stage 3 --stop_stage 3 --test_sets "${noisy# }"

log "The speech LLM trained with noise (p ${noise_apply_prob}, ${noise_db_range} dB) and RIRs (p ${rir_apply_prob})"
./run.sh --model_tag train_augment --stage 7 --stop_stage 8 --train_args "--noise_scp data/noise/train.scp \
--noise_apply_prob ${noise_apply_prob} --noise_db_range ${noise_db_range} --rir_scp data/rirs/all.scp \
--rir_apply_prob ${rir_apply_prob}"
systems=()
for model in train train_augment; do
    for config in conf/decode_llm.yaml conf/decode.yaml; do
        log "exp/${model} (${config}) on test${noisy}"
        ./run.sh --model_tag "${model}" --stage 9 --stop_stage 10 --test_sets "test${noisy}" --decode_config "${config}"
        tag=$(basename "${config}" .yaml)
        name="exp/${model}, $([[ ${tag} == decode_llm ]] && echo "LLM alone" || echo "joint CTC/LLM")"
        systems+=(--system "${name}=exp/${model}/decode_${tag}_valid.acc.ave")
    done
done
# shellcheck disable=SC2086
python3 -m speechllm.bin.compare_systems --sets test ${noisy} --output exp/augmentation.md "${systems[@]}"
