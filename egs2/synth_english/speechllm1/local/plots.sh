#!/usr/bin/env bash
# Pictures of the trained speech LLMs, as PNG files: the training curves of the models (speechllm.bin.plot_training)
# and, for one utterance, the LLM's attention from the transcript over the prompt and the speech embeddings
# (speechllm.bin.plot_attention; Figure 1 of Schmitt et al.).
#   local/plots.sh [--models "train_whisper_smollm2_frozen train_whisper_smollm2_lora"] [--test_set real_an4] [--utt ID]
set -euo pipefail

# BEGIN OPTIONS
models="train_whisper_smollm2_frozen train_whisper_smollm2_lora"  # Model dirs under expdir.
inference_model=valid.acc.ave.pth  # The weights whose attention is drawn.
test_set=real_an4            # The data dir (under dumpdir/frontend) of the utterance.
utt=                         # The utterance (empty: the test set's first).
layers=all                   # LLM layers averaged: all, first, middle, last (thirds) or indices "0,14,29".
expdir=exp                   # Where the models are; the pictures go to expdir/plots/.
dumpdir=dump                 # Where stage 6 dumped the test set's frontend outputs.
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]: writes expdir/plots/training_curves.png and expdir/plots/attention_*.png."

# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh

read -r -a model_list <<< "${models}"
dirs=()
for model in "${model_list[@]}"; do
    [[ -f ${expdir}/${model}/train.log ]] && dirs+=("${expdir}/${model}")
done
(( ${#dirs[@]} > 0 )) || { echo "$0: none of ${models} has a train.log under ${expdir}: run stage 8 first" >&2; exit 1; }
python3 -m speechllm.bin.plot_training "${dirs[@]}" --out "${expdir}/plots/training_curves.png"

scp=${dumpdir}/frontend/${test_set}/feats.scp
[[ -f ${scp} ]] || { echo "$0: ${scp} is missing: run stage 6 (--dump_frontend true) first" >&2; exit 1; }
[[ -n ${utt} ]] || utt=$(head -n 1 "${scp}" | cut -d' ' -f1)
for dir in "${dirs[@]}"; do
    [[ -f ${dir}/${inference_model} ]] || continue
    python3 -m speechllm.bin.plot_attention --train_config "${dir}/config.yaml" \
        --model_file "${dir}/${inference_model}" --data_path_and_name_and_type "${scp},speech,kaldi_ark" \
        --text "${dumpdir}/${test_set}/text" --utt "${utt}" --layers "${layers}" \
        --out "${expdir}/plots/attention_$(basename "${dir}")_${utt}.png"
done
