#!/usr/bin/env bash
# The ablations of the integration papers (Schmitt et al.; Pham et al.) on the demo corpus, one switch at a time
# against the demo's first model, the speech LLM with its speech embeddings as a plain prefix (conf/train_prefix.yaml,
# trained into exp/train_prefix): adapters, the attention interface, the positions of the speech, the label units,
# and how the LLM is fine-tuned. Each row is conf/train_prefix.yaml with a few keys replaced (written to
# exp/ablation_conf/<row>.yaml), trained into exp/ablation_<row> and decoded on dev and test by the LLM alone
# (conf/decode_llm.yaml) and jointly with CTC (conf/decode.yaml); then one table, exp/ablation.md: WER, training
# time and trainable parameters per row, with the recipe's model (conf/train.yaml, exp/train) beside them. Rows
# already trained and decoded are not run again (the stages' own stamps), so the script can be stopped and rerun.
#   local/ablation.sh [--rows "adapter_stack interface_cross_attention ..."] [--run_args "--train_threads 1"]
set -euo pipefail

rows="adapter_dws_mlp adapter_stack adapter_conv1d_transformer adapter_qformer adapter_ctc_posterior \
interface_cross_attention positions_aligned units_bpe llm_frozen llm_lora"
run_args=                      # more options of every ./run.sh call, the base's too (e.g. --train_threads 1)
# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh

base=conf/train_prefix.yaml
# row_patch ROW: the YAML that replaces keys of the base config (top-level keys replace the recipe's, except
# model_conf and llm_conf, which are merged key by key).
row_patch() {
    case $1 in
        adapter_dws_mlp) echo "{speech_adapter: dws_mlp, speech_adapter_conf: {downsample: 2, hidden_size: 256}}" ;;
        adapter_stack) echo "{speech_adapter: stack, speech_adapter_conf: {downsample: 2}}" ;;
        adapter_conv1d_transformer)
            echo "{speech_adapter: conv1d_transformer, speech_adapter_conf: {downsample: 2, hidden_size: 192," \
                "num_layers: 1, attention_heads: 4, linear_units: 768}}" ;;
        adapter_qformer)  # 2 queries per window of 4 frames: the 2x downsampling of the others
            echo "{speech_adapter: qformer, speech_adapter_conf: {window: 4, num_queries: 2, hidden_size: 192," \
                "num_layers: 1, attention_heads: 4, linear_units: 768}}" ;;
        adapter_ctc_posterior)  # LegoSLM: the CTC head's posteriors times the LLM's embeddings, no downsampling
            echo "{speech_adapter: ctc_posterior, speech_adapter_conf: {temperature: 1.0}}" ;;
        interface_cross_attention)  # a block before each of the toy LLM's 3 layers, gates closed at the start
            echo "{model_conf: {interface: cross_attention, cross_attention_conf: {every: 1, num_heads: 4}}}" ;;
        positions_aligned) echo "{model_conf: {speech_positions: aligned, prompt_suffix: <s>}}" ;;
        units_bpe) echo "{}" ;;  # the template option below does it
        llm_frozen) echo "{llm_conf: {finetune: frozen}}" ;;
        llm_lora) echo "{llm_conf: {finetune: lora, lora_conf: {r: 16, alpha: 16}}}" ;;
        *) echo "ablation.sh: unknown row '$1'; rows: ${rows}" >&2; return 1 ;;
    esac
}

# row_options ROW: template options of the row beyond its config.
row_options() {
    case $1 in
        units_bpe) echo "--llm_token_type bpe --am_bpe_vocab_size 64" ;;
        *) echo "" ;;
    esac
}

[[ -f exp/train/config.yaml ]] || { echo "ablation.sh: run ./run.sh first (the recipe's model, exp/train)" >&2; exit 1; }
read -r -a base_options <<< "${run_args}"
./run.sh --train_config "${base}" --model_tag train_prefix "${base_options[@]}" --stage 7 --stop_stage 10 \
    --decode_config conf/decode.yaml
./run.sh --train_config "${base}" --model_tag train_prefix "${base_options[@]}" --stage 9 --stop_stage 10 \
    --decode_config conf/decode_llm.yaml
mkdir -p exp/ablation_conf
systems=("the recipe's model: CTC posteriors, compressed, at aligned positions, toy LLM frozen (conf/train.yaml)=exp/train"
         "prefix, conv1d_mlp adapter, LLM units, LLM fully trained (conf/train_prefix.yaml, the base)=exp/train_prefix")
for row in ${rows}; do
    patch=$(row_patch "${row}")
    config=exp/ablation_conf/${row}.yaml
    # Rewritten only when it changes, so that a finished row's stamps stay valid.
    python3 - "${base}" "${patch}" "${config}.new" <<'EOF'
import sys
import yaml
base, patch, out = yaml.safe_load(open(sys.argv[1])), yaml.safe_load(sys.argv[2]), sys.argv[3]
for key, value in patch.items():
    base[key] = {**base.get(key, {}), **value} if key in ("model_conf", "llm_conf") else value
yaml.safe_dump(base, open(out, "w"), sort_keys=False)
EOF
    if cmp -s "${config}.new" "${config}"; then rm "${config}.new"; else mv "${config}.new" "${config}"; fi
    read -r -a options <<< "$(row_options "${row}") ${run_args}"
    common=(--train_config "${config}" --model_tag "ablation_${row}" "${options[@]}")
    ./run.sh "${common[@]}" --stage 7 --stop_stage 10 --decode_config conf/decode.yaml
    ./run.sh "${common[@]}" --stage 9 --stop_stage 10 --decode_config conf/decode_llm.yaml
    systems+=("${row}=exp/ablation_${row}")
done

python3 - exp/ablation.md "${systems[@]}" <<'EOF'
"""One row per system: LLM-alone and joint WER on dev and test, training time, trainable parameters."""
import re
import sys
from pathlib import Path

from speechllm.scoring.results import job_seconds, parse_result

out, systems = sys.argv[1], sys.argv[2:]
lines = ["| system | LLM alone dev / test WER (%) | joint CTC/LLM dev / test WER (%) | training (s, threads) "
         "| trainable parameters |", "|---|---:|---:|---:|---:|"]
for system in systems:
    name, root = system.split("=", 1)
    root = Path(root)
    wers = []
    for decode in ("decode_decode_llm_valid.acc.ave", "decode_decode_valid.acc.ave"):
        wers.append(" / ".join(f"{parse_result(root / decode / s / 'score_wer/result.txt')[3][4]:.1f}"
                               for s in ("dev", "test")))
    # Every training job of the model (a resumed run writes train.log anew, the older ones become train.log.N);
    # the threads of the longest.
    logs = [(job_seconds(log) or 0.0, log) for log in root.glob("train.log*")]
    seconds, longest = max(logs)
    threads = re.search(r"# Accounting: time=\d+ threads=(\d+)", longest.read_text())
    trainable = sum(int(n.replace(",", "")) for n in
                    re.findall(r"INFO: \w+: ([\d,]+) of [\d,]+ parameters train", longest.read_text()))
    lines.append(f"| {name} | {wers[0]} | {wers[1]} | {sum(s for s, _ in logs):.0f} "
                 f"({threads.group(1) if threads else '?'}) | {trainable:,} |")
Path(out).write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
