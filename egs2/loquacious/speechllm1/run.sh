#!/usr/bin/env bash
# The Loquacious Set (speechbrain/LoquaciousSet): a HuBERT-large -> Qwen2-0.5B speech LLM, for a GPU machine.
# Set LOQUACIOUS in db.sh to a local copy of its parquet shards first; README.md has the details. ./run.sh --help
# lists every option, e.g.
#   ./run.sh --ngpu 1                                                     # small (250 h), LoRA on the LLM
#   ./run.sh --ngpu 4 --train_set train_medium --local_data_opts "--subsets medium"      # 2,500 h
#   ./run.sh --ngpu 1 --task asr --train_config conf/train_am_conformer.yaml --decode_config conf/decode_am.yaml \
#       --inference_model valid.acc.ave.pth                               # the AED + CTC acoustic model
set -euo pipefail

train_set=train_small
valid_set=dev_short          # a fixed random 3,000 utterances of dev, for validation during training (as RWTH)
# dev and test in total and per source corpus (local/data.sh): WER per source and overall in RESULTS.md.
test_sets="dev test dev_voxpopuli dev_commonvoice dev_librispeech dev_yodas"
test_sets+=" test_voxpopuli test_commonvoice test_librispeech test_yodas"

train_config=conf/train_hubert_qwen2_lora.yaml
decode_config=conf/decode.yaml
inference_model=valid.acc.ave.pth
# Training and validation keep utterances up to 30 s (speechllm.sh's default is 20 s); stage 4 lists what it removes.
# Decoding keeps every utterance (longer recordings are cut at pauses, see --max_segment_seconds).
max_duration=30

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
