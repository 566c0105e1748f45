#!/usr/bin/env bash
# LRS3 (TED talks, 25 fps video with 16 kHz audio; https://mmai.io/datasets/lip_reading/), for a GPU machine.
# Set LRS3 in db.sh first; README.md has the details. ./run.sh --help lists every option, e.g.
#   ./run.sh --ngpu 1                                            # audio-only: HuBERT-large -> Qwen2-0.5B (LoRA)
#   ./run.sh --stage 1 --stop_stage 1 --local_data_opts "--lip_roi true"   # data dirs and their lip ROIs
set -euo pipefail

train_set=train
valid_set=valid
test_sets="test"

# The audio-only model is LibriSpeech's (conf/ links to it); run_av.sh trains the audio-visual one.
train_config=conf/train_hubert_qwen2_lora.yaml
decode_config=conf/decode.yaml
inference_model=valid.acc.ave.pth

./speechllm.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --decode_config "${decode_config}" \
    --inference_model "${inference_model}" \
    --ctc_bpe_vocab_size 1000 \
    "$@"
