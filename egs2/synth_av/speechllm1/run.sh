#!/usr/bin/env bash
# The audio-visual demo: a synthetic talking-face corpus made on the spot (local/data.sh), Whisper tiny.en's frozen
# encoder with lip features injected into its layers, the toy LLM; stage 1 trains the injection alone (corrupted
# audio + lips -> the clean audio's encoder output), stage 2 recognition with modality dropout; then every test set
# (clean and babble at 10, 5, 0, -5 dB) is decoded as ASR, VSR and AVSR into one table. The steps are the template's
# av.sh (./run.sh --help): 1 data, dumps, toy LLM and statistics (speechllm.sh stages 1-7); 2 injection pretraining;
# 3 recognition training; 4 decoding and scoring per task; 5 the table. ./run.sh --step 3 starts at step 3.
set -euo pipefail

./av.sh \
    --stage1_config conf/train_stage1.yaml \
    --train_config conf/train.yaml \
    --decode_config conf/decode.yaml \
    --test_sets "test_clean test_snr10 test_snr5 test_snr0 test_snr-5" \
    --train_set train \
    --valid_set dev \
    --toy_llm_config conf/toy_llm.yaml \
    --stats_dir exp/stats \
    --nj 1 \
    --inference_nj 1 \
    --train_threads 1 \
    --inference_batch_size 8 \
    "$@"
