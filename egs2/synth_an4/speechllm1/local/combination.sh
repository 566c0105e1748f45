#!/usr/bin/env bash
# Integration and combination side by side on the demo corpus (Schmitt et al.'s comparison, at toy size): after
# ./run.sh (the speech LLM, exp/train), this trains a conventional AED + CTC acoustic model through ESPnet's ASRTask
# (exp/train_am) and decodes it alone, with N-best rescoring by the toy LLM, and with delayed fusion of the toy LLM
# (another vocabulary than the AM's BPE) at the weight and length bonus best on dev; then prints one table
# (exp/combination.md). Stages: 1 AM training and decoding, 2 rescoring, 3 fusion grid on dev, 4 test, 5 table.
#   local/combination.sh [--stage N] [--lm_weights "0.1 0.3 0.5"] [--length_bonuses "0 0.5 1.0"]
set -euo pipefail

stage=1
lm_weights="0.1 0.3 0.5"       # delayed fusion: LLM weights tried on dev
length_bonuses="0 0.5 1.0"     # delayed fusion: rewards per AM label tried on dev
lm=exp/llm_init                # the LLM of the speech LLM (stage 5 of ./run.sh)
# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh  # the toolkit's Python (compare_systems)

am=(--task asr --am_bpe_vocab_size 64 --train_config conf/train_am.yaml)
log() { printf '%s (combination.sh) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "$*"; }

[[ -f exp/train/config.yaml ]] || { echo "combination.sh: run ./run.sh first (the speech LLM, exp/train)" >&2; exit 1; }

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
    log "AM + ${lm} by delayed fusion: lm_weight in {${lm_weights}} x length_bonus in {${length_bonuses}} on dev"
    mkdir -p exp/combination_conf
    for weight in ${lm_weights}; do
        for bonus in ${length_bonuses}; do
            sed "s|^lm_weight: .*|lm_weight: ${weight}|; s|^lm: .*|lm: ${lm}|; \$a length_bonus: ${bonus}" \
                conf/decode_am_delayed.yaml > "exp/combination_conf/decode_am_delayed_lm${weight}_bonus${bonus}.yaml"
            ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --test_sets dev \
                --decode_config "exp/combination_conf/decode_am_delayed_lm${weight}_bonus${bonus}.yaml"
        done
    done
fi
best=$(for weight in ${lm_weights}; do
    for bonus in ${length_bonuses}; do
        result=exp/train_am/decode_decode_am_delayed_lm${weight}_bonus${bonus}_valid.acc.ave/dev/score_wer/result.txt
        printf '%s %s %s\n' "$(grep -m1 Sum/Avg "${result}" | awk -F'|' '{ split($4, f, " "); print f[5] }')" \
            "${weight}" "${bonus}"
    done
done | sort -g -k1,1 -k2,2 -k3,3 | head -1)
read -r best_wer best_weight best_bonus <<< "${best}"
best_config=exp/combination_conf/decode_am_delayed_lm${best_weight}_bonus${best_bonus}.yaml
if (( stage <= 4 )); then
    log "delayed fusion: lm_weight ${best_weight}, length_bonus ${best_bonus} have the lowest dev WER (${best_wer}); test"
    ./run.sh "${am[@]}" --stage 9 --stop_stage 10 --test_sets test --decode_config "${best_config}"
fi
if (( stage <= 5 )); then
    python3 -m speechllm.bin.compare_systems --sets dev test --output exp/combination.md \
        --system "speech LLM alone=exp/train/decode_decode_llm_valid.acc.ave" \
        --system "speech LLM + CTC=exp/train/decode_decode_valid.acc.ave" \
        --system "AM (AED + CTC) alone=exp/train_am/decode_decode_am_valid.acc.ave" \
        --system "AM + LLM N-best rescoring=exp/train_am/decode_decode_am_nbest_valid.acc.ave_rescore_${lm##*/}" \
        --system "AM + LLM delayed fusion (lm_weight ${best_weight}, length_bonus ${best_bonus}, best on dev)=exp/train_am/decode_$(basename "${best_config}" .yaml)_valid.acc.ave"
fi
