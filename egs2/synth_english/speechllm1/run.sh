#!/usr/bin/env bash
# A speech LLM from real pretrained parts, trained on 2 CPU cores: Whisper tiny.en's encoder (frozen, run once over
# the data) -> adapter -> SmolLM2-135M-Instruct (frozen, or LoRA), trained on multi-speaker English synthesised on
# the spot by five synthesisers, tested on held-out synthetic voices and on real recordings (local/data.sh).
# README.md has the measured table and the command of each row. ./run.sh --help lists every option, e.g.
#   ./run.sh                                                                  # everything, the frozen-LLM model
#   ./run.sh --stage 7 --train_config conf/train_whisper_smollm2_lora.yaml     # the LoRA variant
#   ./run.sh --stage 9 --stop_stage 10 --decode_config conf/decode_ctc.yaml   # joint CTC/LLM decoding
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test_synth real_an4 real_pocketsphinx real_alsa real_klettres real_ktuberling real_all"

train_config=conf/train_whisper_smollm2_frozen.yaml
# SmolLM2 as shipped in ../shared (a GGUF file): stage 5 dequantises it once into exp/llm/ for every later job.
llm=../../../../shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
decode_config=conf/decode.yaml
# The train configs keep the models with the best validation accuracy (best_model_criterion).
inference_model=valid.acc.ave.pth

./speechllm.sh \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --train_config "${train_config}" \
    --decode_config "${decode_config}" \
    --inference_model "${inference_model}" \
    --llm "${llm}" \
    --dump_frontend true \
    --speed_perturb_factors "0.9 1.0 1.1" \
    --score_normalize whisper_en \
    --nj 2 \
    --inference_nj 2 \
    --inference_batch_size 8 \
    "$@"
