#!/usr/bin/env bash
# Audio-visual recognition in UASR-LLM's two training stages, on top of speechllm.sh; an audio-visual recipe's run.sh
# calls it with its sets and configs (egs2/synth_av, egs2/lrs3). Steps:
#   1 data, dumps, LLM and statistics (speechllm.sh stages 1-7; the data dirs carry roi.scp, the lip ROIs);
#   2 injection pretraining: stage 8 with --stage1_config into exp/<its name> (only the visual parts train);
#   3 recognition training: stage 8 with --train_config, the visual parts initialised from step 2's model
#     (ESPnet's --init_param);
#   4 decoding and scoring of every test set once per task of --tasks (stages 9-10; the decode dir is named by the
#     task: <model_dir>/decode_<decode config>_task<task>_<model>/<set>);
#   5 one table of WER by task (rows) and test set (columns): <model_dir>/RESULTS_by_task.md.
# Its own options are below; every other option goes to each speechllm.sh call (sets, jobs, GPUs...), e.g.
#   ./av.sh --stage1_config conf/train_stage1.yaml --train_config conf/train.yaml --test_sets "test_clean test_snr0" \
#       --train_set train --valid_set dev --ngpu 1 --step 4 --tasks vsr
set -euo pipefail

step=1                          # First step (1-5, above).
stop_step=5                     # Last step.
tasks="asr vsr avsr"            # Decoding tasks of step 4 (and rows of the table): audio, lips, both.
stage1_config=                  # Injection-pretraining config (model_conf.injection_pretraining: true).
train_config=                   # Recognition config; its model parts must be the stage-1 config's.
stage1_model=valid.loss.best.pth  # The stage-1 checkpoint that initialises step 3's visual parts.
inference_model=valid.acc.ave.pth  # The recognition checkpoint that step 4 decodes.
decode_config=conf/decode.yaml  # Decoding config of step 4 (the task is added by --inference_args).
test_sets=                      # Test sets (stages 1-4 prepare them, steps 4-5 decode and tabulate them).

common=()
while (( $# )); do
    case $1 in
        --step|--stop_step|--tasks|--stage1_config|--train_config|--stage1_model|--inference_model|--decode_config|\
--test_sets)
            (( $# >= 2 )) || { echo "$0: $1 needs a value" >&2; exit 1; }
            printf -v "${1#--}" '%s' "$2"
            shift 2 ;;
        --help|-h)
            sed -n '2,/^set -euo pipefail/p' "$0" | sed '$d; s/^# \{0,1\}//'
            grep -E '^[a-z_0-9]+=.*# ' "$0"
            exit 0 ;;
        *) common+=("$1"); shift ;;
    esac
done
[[ -n ${stage1_config} && -n ${train_config} && -n ${test_sets} ]] ||
    { echo "$0: --stage1_config, --train_config and --test_sets are required (--help)" >&2; exit 1; }
common+=(--test_sets "${test_sets}")
# shellcheck source=/dev/null
. ./path.sh
tag_of() { basename "$1" .yaml; }
stage1_dir=exp/$(tag_of "${stage1_config}")
model_dir=exp/$(tag_of "${train_config}")
# The visual parts that step 2 trains: the lip encoder, its CTC head (when the configs have one) and the injection.
parts="visual_frontend visual_injection"
visual_ctc_weight=$(python3 -c 'import sys, yaml
print(float((yaml.safe_load(open(sys.argv[1])).get("model_conf") or {}).get("visual_ctc_weight", 0)))' \
    "${train_config}")
[[ ${visual_ctc_weight} == 0.0 ]] || parts+=" visual_ctc"
init_param=()
for part in ${parts}; do
    init_param+=("${stage1_dir}/${stage1_model}:${part}:${part}")
done

if (( step <= 1 && stop_step >= 1 )); then
    ./speechllm.sh "${common[@]}" --train_config "${train_config}" --stop_stage 7
fi
if (( step <= 2 && stop_step >= 2 )); then
    ./speechllm.sh "${common[@]}" --train_config "${stage1_config}" --stage 8 --stop_stage 8
fi
if (( step <= 3 && stop_step >= 3 )); then
    ./speechllm.sh "${common[@]}" --train_config "${train_config}" --stage 8 --stop_stage 8 \
        --train_args "--init_param ${init_param[*]}"
fi
if (( step <= 4 && stop_step >= 4 )); then
    for task in ${tasks}; do
        ./speechllm.sh "${common[@]}" --train_config "${train_config}" --stage 9 --stop_stage 10 \
            --decode_config "${decode_config}" --inference_model "${inference_model}" \
            --inference_args "--task ${task}"
    done
fi
if (( step <= 5 && stop_step >= 5 )); then
    python3 -m speechllm.scoring.results_by_task --model_dir "${model_dir}" --tasks "${tasks}" \
        --test_sets "${test_sets}" --decode_prefix "decode_$(tag_of "${decode_config}")_task" \
        --inference_model "${inference_model%.pth}" | tee "${model_dir}/RESULTS_by_task.md"
fi
