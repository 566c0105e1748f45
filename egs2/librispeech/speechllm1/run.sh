#!/usr/bin/env bash
# LibriSpeech 960 h (https://www.openslr.org/12): a HuBERT-large -> Qwen2-0.5B speech LLM, for a GPU machine.
# Set LIBRISPEECH in db.sh first; README.md has the details. ./run.sh --help lists every option, e.g.
#   ./run.sh --ngpu 1                                            # everything, LoRA on the LLM
#   ./run.sh --stage 7 --ngpu 1 --train_config conf/train_hubert_qwen2_frozen.yaml   # the frozen-LLM variant
set -euo pipefail

train_set=train_960
valid_set=dev
test_sets="test_clean test_other dev_clean dev_other"

train_config=conf/train_hubert_qwen2_lora.yaml
decode_config=conf/decode.yaml
# The train configs keep the models with the best validation accuracy (best_model_criterion).
inference_model=valid.acc.ave.pth
# LibriSpeech's segments are at most 35 s: keep them all (speechllm.sh drops > 20 s by default).
max_duration=35

./speechllm.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --decode_config "${decode_config}" \
    --inference_model "${inference_model}" \
    --ctc_bpe_vocab_size 5000 \
    --max_duration "${max_duration}" \
    "$@"
