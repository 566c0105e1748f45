#!/usr/bin/env bash
# The demo recipe: an AN4-like corpus synthesised on the spot (local/data.sh), a small speech LLM on a random-init
# toy LLM, trained and scored on 2 CPU cores in minutes. ./run.sh --help lists every option.
set -euo pipefail

train_set=train
valid_set=dev
test_sets="dev test"

train_config=conf/train.yaml
decode_config=conf/decode.yaml
toy_llm_config=conf/toy_llm.yaml
# conf/train.yaml keeps the models with the best validation accuracy (best_model_criterion).
inference_model=valid.acc.ave.pth

./speechllm.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --decode_config "${decode_config}" \
    --toy_llm_config "${toy_llm_config}" \
    --inference_model "${inference_model}" \
    --nj 2 \
    --inference_nj 2 \
    --inference_batch_size 8 \
    "$@"
