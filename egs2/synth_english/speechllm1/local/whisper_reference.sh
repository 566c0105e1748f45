#!/usr/bin/env bash
# Whisper's own decoder as the reference recogniser: decodes the recipe's test sets with a transformers Whisper model
# (speechllm.bin.hf_asr_inference, greedy) and scores them exactly as stage 10 scores the speech LLM (same
# references, same --score_normalize), into exp/<tag>/decode_<method>/<set>/ and exp/<tag>/RESULTS.md.
#   local/whisper_reference.sh [--model_dir DIR] [--tag whisper_tiny_en] [--num_beams 1] [--test_sets "..."]
set -euo pipefail

# BEGIN OPTIONS
model_dir=../../../../shared/models/whisper-tiny.en  # A transformers Whisper folder (or any speech seq2seq model).
tag=whisper_tiny_en          # Model dir name under expdir.
num_beams=1                  # 1: greedy, as openai-whisper's default without temperature fallback.
batch_size=8                 # Utterances per generate() call.
test_sets="test_synth real_an4 real_pocketsphinx real_alsa real_klettres real_ktuberling real_all"  # Data dirs under dumpdir.
dumpdir=dump                 # Where stage 3 dumped the test sets.
expdir=exp                   # Where the results go.
score_normalize=whisper_en   # Text normalisation before scoring, as run.sh's --score_normalize.
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]: decodes and scores the test sets with Whisper's own decoder."

# shellcheck source=/dev/null
. utils/parse_options.sh
# shellcheck source=/dev/null
. ./path.sh
# shellcheck source=/dev/null
. ./cmd.sh
decode_cmd=${decode_cmd:?cmd.sh must set decode_cmd}

method=greedy
(( num_beams > 1 )) && method=beam${num_beams}
for x in ${test_sets}; do
    dir=${expdir}/${tag}/decode_${method}/${x}
    logdir=${dir}/logdir
    [[ -f ${dumpdir}/${x}/wav.scp ]] || { echo "$0: ${dumpdir}/${x}/wav.scp is missing: run stage 3 first" >&2; exit 1; }
    rm -rf "${logdir}"
    mkdir -p "${logdir}"
    read -r -a launcher <<< "${decode_cmd}"  # the launcher and its options
    "${launcher[@]}" "${logdir}/decode.log" \
        python3 -m speechllm.bin.hf_asr_inference --model_dir "${model_dir}" --wav_scp "${dumpdir}/${x}/wav.scp" \
        --output_dir "${logdir}/output" --batch_size "${batch_size}" --num_beams "${num_beams}" --ngpu 0 ||
        { echo "$0: decoding ${x} failed: see ${logdir}/decode.log" >&2; exit 1; }
    cp "${logdir}/output/1best_recog/text" "${dir}/text"
    for unit_and_name in word:wer char:cer; do
        python3 -m speechllm.bin.score_text --ref "${dumpdir}/${x}/text" --hyp "${dir}/text" \
            --utt2spk "${dumpdir}/${x}/utt2spk" --unit "${unit_and_name%:*}" --normalize "${score_normalize}" \
            --out_dir "${dir}/score_${unit_and_name#*:}"
    done
done
python3 -m speechllm.bin.make_results "${expdir}/${tag}"
cat "${expdir}/${tag}/RESULTS.md"
