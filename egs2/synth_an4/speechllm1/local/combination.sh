#!/usr/bin/env bash
# Integration and combination side by side on the demo corpus (Schmitt et al.'s comparison, at toy size): after
# ./run.sh (the speech LLM, exp/train), this trains a conventional AED + CTC acoustic model through ESPnet's ASRTask
# (exp/train_am) and decodes it alone, with N-best rescoring by the toy LLM, with delayed fusion of the toy LLM
# (another vocabulary than the AM's BPE), and label by label with the toy LLM fine-tuned on the AM's own BPE
# (./run.sh --task lm, exp/train_lm); each fusion at the LM weight and length bonus best on dev; then prints one
# table (exp/combination.md). Stages: 1 AM training and decoding, 2 rescoring, 3 LM fine-tuning on the AM's BPE,
# 4 fusion grids on dev, 5 test with the best of each, 6 table.
#   local/combination.sh [--stage N] [--lm_weights "0.1 0.3 0.5"] [--length_bonuses "0 0.5 1.0"]
set -euo pipefail

stage=1
lm_weights="0.1 0.3 0.5"       # fusion: LM weights tried on dev
length_bonuses="0 0.5 1.0"     # fusion: rewards per AM label tried on dev
lm=exp/llm_init                # the LLM of the speech LLM (stage 5 of ./run.sh)
# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh  # the toolkit's Python (compare_systems)

am=(--task asr --am_bpe_vocab_size 64 --train_config conf/train_am.yaml)
lm_task=(--task lm --llm_token_type bpe --am_bpe_vocab_size 64 --train_config conf/train_lm.yaml)
fused_lm=exp/train_lm/exported  # the LLM fine-tuned on the AM's BPE (stage 3)
log() { printf '%s (combination.sh) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$*"; }

[[ -f exp/train/config.yaml ]] || { echo "combination.sh: run ./run.sh first (the speech LLM, exp/train)" >&2; exit 1; }

# grid_config BASE WEIGHT BONUS: the decode config of one grid point (written by fusion_grid).
grid_config() {
    echo "exp/combination_conf/$(basename "$1" .yaml)_lm$2_bonus$3.yaml"
}

# fusion_grid BASE LM: the AM fused with LM as BASE (a decode config) says, decoded on dev at every LM weight and
# length bonus of the grid.
fusion_grid() {
    local base=$1 lm_path=$2 weight bonus config
    mkdir -p exp/combination_conf
    for weight in ${lm_weights}; do
        for bonus in ${length_bonuses}; do
            config=$(grid_config "${base}" "${weight}" "${bonus}")
            # Rewritten only when it changes: an unchanged config keeps its decode (stage 9 reruns nothing).
            sed "s|^lm_weight: .*|lm_weight: ${weight}|; s|^lm: .*|lm: ${lm_path}|; \$a length_bonus: ${bonus}" \
                "${base}" > "${config}.new"
            if cmp -s "${config}.new" "${config}"; then rm "${config}.new"; else mv "${config}.new" "${config}"; fi
            ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --test_sets dev --decode_config "${config}"
        done
    done
}

# best_on_dev BASE: "WER WEIGHT BONUS CONFIG" of the grid point with the lowest dev WER (ties: smaller weight).
best_on_dev() {
    local base=$1 weight bonus config result
    for weight in ${lm_weights}; do
        for bonus in ${length_bonuses}; do
            config=$(grid_config "${base}" "${weight}" "${bonus}")
            result=exp/train_am/decode_$(basename "${config}" .yaml)_valid.acc.ave/dev/score_wer/result.txt
            printf '%s %s %s %s\n' "$(grep -m1 Sum/Avg "${result}" | awk -F'|' '{ split($4, f, " "); print f[5] }')" \
                "${weight}" "${bonus}" "${config}"
        done
    done | sort -g -k1,1 -k2,2 -k3,3 | head -1
}

if (( stage <= 1 )); then
    log "Speech LLM alone (conf/decode_llm.yaml; ./run.sh decoded it with CTC): decoding, scoring"
    ./run.sh --stage 9 --stop_stage 10 --decode_config conf/decode_llm.yaml
    log "AM: BPE, statistics, training (ESPnet ASRTask), decoding alone, scoring"
    ./run.sh "${am[@]}" --stage 5 --stop_stage 10 --decode_config conf/decode_am.yaml
fi
if (( stage <= 2 )); then
    log "AM: 4-best lists, rescored by ${lm} (weights tuned on dev)"
    ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --decode_config conf/decode_am_nbest.yaml --rescore_lm "${lm}"
fi
if (( stage <= 3 )); then
    log "LM: ${lm} fine-tuned on the transcripts over the AM's BPE (speechllm.bin.lm_train), exported to ${fused_lm}"
    ./run.sh "${lm_task[@]}" --stage 7 --stop_stage 8
    ./run.sh "${lm_task[@]}" --stage 11 --stop_stage 11
fi
if (( stage <= 4 )); then
    log "AM + LM on dev: lm_weight in {${lm_weights}} x length_bonus in {${length_bonuses}}, delayed and label-wise"
    fusion_grid conf/decode_am_delayed.yaml "${lm}"
    fusion_grid conf/decode_am_label.yaml "${fused_lm}"
fi
read -r delayed_wer delayed_weight delayed_bonus delayed_config <<< "$(best_on_dev conf/decode_am_delayed.yaml)"
read -r label_wer label_weight label_bonus label_config <<< "$(best_on_dev conf/decode_am_label.yaml)"
if (( stage <= 5 )); then
    log "delayed fusion: lm_weight ${delayed_weight}, length_bonus ${delayed_bonus} best on dev (${delayed_wer}); test"
    ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --test_sets test --decode_config "${delayed_config}"
    log "label-wise fusion: lm_weight ${label_weight}, length_bonus ${label_bonus} best on dev (${label_wer}); test"
    ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --test_sets test --decode_config "${label_config}"
fi
if (( stage <= 6 )); then
    python3 -m speechllm.bin.compare_systems --sets dev test --output exp/combination.md \
        --system "speech LLM alone=exp/train/decode_decode_llm_valid.acc.ave" \
        --system "speech LLM + CTC=exp/train/decode_decode_valid.acc.ave" \
        --system "AM (AED + CTC) alone=exp/train_am/decode_decode_am_valid.acc.ave" \
        --system "AM + LLM N-best rescoring=exp/train_am/decode_decode_am_nbest_valid.acc.ave_rescore_${lm##*/}" \
        --system "AM + LLM fine-tuned on the AM's BPE, label-wise fusion (lm_weight ${label_weight}, length_bonus ${label_bonus}, best on dev)=exp/train_am/decode_$(basename "${label_config}" .yaml)_valid.acc.ave" \
        --system "AM + LLM delayed fusion (lm_weight ${delayed_weight}, length_bonus ${delayed_bonus}, best on dev)=exp/train_am/decode_$(basename "${delayed_config}" .yaml)_valid.acc.ave"
fi
