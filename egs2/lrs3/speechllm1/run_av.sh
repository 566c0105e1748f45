#!/usr/bin/env bash
# LRS3 audio-visual, for a GPU machine: ASR, VSR and AVSR from one model (UASR-LLM's shape: lip features injected
# into frozen Whisper-medium's layers, Qwen2-0.5B with LoRA; conf/train_av_stage1.yaml, then conf/train_av.yaml),
# decoded per task on the test set clean and under babble. Set LRS3 in db.sh first; README.md ("Audio-visual") has
# the details. The steps are the template's av.sh (./run_av.sh --help); every speechllm.sh option works too, e.g.
#   ./run_av.sh --ngpu 1                      # all of it
#   ./run_av.sh --step 4 --tasks vsr          # decode and score the lip-reading task again
set -euo pipefail

./av.sh \
    --stage1_config conf/train_av_stage1.yaml \
    --train_config conf/train_av.yaml \
    --decode_config conf/decode.yaml \
    --test_sets "test_av_clean test_av_snr5 test_av_snr0 test_av_snr-5" \
    --train_set train_av \
    --valid_set valid_av \
    --local_data_opts "--lip_roi true" \
    "$@"
