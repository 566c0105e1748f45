#!/usr/bin/env bash
# The audio-visual demo: a synthetic talking-face corpus made on the spot (local/data.sh), Whisper tiny.en's frozen
# encoder with lip features injected into its layers, the toy LLM; stage 1 trains the injection alone (corrupted
# audio + lips -> the clean audio's encoder output), stage 2 recognition with modality dropout; then every test set
# (clean and babble at 10, 5, 0, -5 dB) is decoded as ASR, VSR and AVSR and local/results.py prints one table.
# Steps: 1 data, dumps, toy LLM and statistics (speechllm.sh stages 1-7); 2 injection pretraining; 3 recognition
# training; 4 decoding and scoring per task; 5 the table. ./run.sh --step 3 starts at step 3.
set -euo pipefail

step=1
stop_step=5
tasks="asr vsr avsr"
. utils/parse_options.sh
# shellcheck disable=SC1091
. ./path.sh

train_set=train
valid_set=dev
test_sets="test_clean test_snr10 test_snr5 test_snr0 test_snr-5"   # local/data.sh makes them (make_snr_sets.sh)
stage1_model=exp/train_stage1/valid.loss.best.pth
common=(--train_set "${train_set}" --valid_set "${valid_set}" --test_sets "${test_sets}"
        --toy_llm_config conf/toy_llm.yaml --stats_dir exp/stats --nj 1 --inference_nj 1 --train_threads 1
        --inference_batch_size 8 --decode_config conf/decode.yaml --inference_model valid.acc.ave.pth)

if (( step <= 1 && stop_step >= 1 )); then
    ./speechllm.sh "${common[@]}" --train_config conf/train.yaml --stop_stage 7
fi
if (( step <= 2 && stop_step >= 2 )); then
    ./speechllm.sh "${common[@]}" --train_config conf/train_stage1.yaml --stage 8 --stop_stage 8
fi
if (( step <= 3 && stop_step >= 3 )); then  # the visual parts start from stage 1's (ESPnet's --init_param)
    ./speechllm.sh "${common[@]}" --train_config conf/train.yaml --stage 8 --stop_stage 8 --train_args \
        "--init_param ${stage1_model}:visual_frontend:visual_frontend ${stage1_model}:visual_injection:visual_injection"
fi
if (( step <= 4 && stop_step >= 4 )); then
    for task in ${tasks}; do
        ./speechllm.sh "${common[@]}" --train_config conf/train.yaml --stage 9 --stop_stage 10 \
            --inference_args "--task ${task}"
    done
fi
if (( step <= 5 && stop_step >= 5 )); then
    python3 local/results.py --model_dir exp/train --tasks "${tasks}" --test_sets "${test_sets}" |
        tee exp/train/RESULTS_by_task.md
fi
