#!/usr/bin/env bash
# An example run.sh: a corpus sets its data sets and configs here and passes the rest through to speechllm.sh.
# ./run.sh --help lists every option; e.g. ./run.sh --stage 8 --ngpu 1 --train_args "--max_epoch 5"
set -euo pipefail

train_set=train
valid_set=dev
test_sets="dev test"

train_config=conf/train.yaml
decode_config=conf/decode.yaml

./speechllm.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --decode_config "${decode_config}" \
    "$@"
