#!/usr/bin/env bash
# speechllm.sh: the stages every speechllm recipe shares, from Kaldi data dirs to a scored, packed speech LLM.
# With --task asr the same stages train and decode a conventional AED + CTC acoustic model through ESPnet's own
# ASRTask instead (the combination paradigm's first pass; its decode configs may fuse an LLM), and with --task lm
# they fine-tune a pretrained LLM on the transcripts (the combination paradigm's LM; stage 11 exports it).
# A corpus's run.sh sets its data sets and configs and calls `./speechllm.sh --train_set ... "$@"`.
# `./speechllm.sh --help` lists the stages and the options (generated from the blocks below).
set -euo pipefail

# BEGIN OPTIONS
# General
stage=1                      # First stage to run.
stop_stage=10000             # Last stage to run.
skip_stages=                 # Stages not to run, space separated, e.g. "5 7".
dry_run=false                # Print the commands the selected stages would run, run none of them.
nj=4                         # Parallel jobs of data dumping and statistics collection.
inference_nj=4               # Parallel jobs of decoding.
ngpu=0                       # GPUs for training (0: CPU).
train_threads=2              # CPU threads of the training job (OMP_NUM_THREADS; path.sh defaults jobs to 1).
expdir=exp                   # Where models, statistics and decoding results go.
task=speechllm               # speechllm: a speech LLM (speechllm.bin.speechllm_train); asr: an AED + CTC acoustic
                             # model through ESPnet's ASRTask (espnet2.bin.asr_train) over a BPE of --am_bpe_vocab_size;
                             # lm: the LLM fine-tuned on the transcripts (speechllm.bin.lm_train; no stages 9-10).
dumpdir=dump                 # Where the dumped audio data dirs go.
# Data
local_data_opts=             # Options of local/data.sh (stage 1), e.g. "--seed 1".
train_set=                   # Training data dir under data/.
valid_set=                   # Validation data dir under data/.
test_sets=                   # Test data dirs under data/, space separated, e.g. "dev test".
speed_perturb_factors=       # Speed perturbation of the training set, e.g. "0.9 1.0 1.1" (empty: none).
fs=16000                     # Sampling rate of the dumped audio (Hz).
audio_format=flac            # Format of the dumped audio: flac or wav.
resample=false               # true: audio at another sample rate is resampled to --fs (false: it is an error).
channel=-1                   # Channel kept of multi-channel audio, 0-based (-1: multi-channel audio is an error).
min_duration=0.1             # Shorter training/validation utterances are removed (seconds).
max_duration=20              # Longer training/validation utterances are removed (seconds).
# Tokens and LLM
token_dir=data/token_list    # Token models (CTC BPE) and tokenizer reports.
ctc_bpe_vocab_size=0         # Vocabulary size of the CTC head's SentencePiece BPE (0: none, or CTC on the LLM's tokens).
am_bpe_vocab_size=100        # Vocabulary size of the corpus's SentencePiece BPE (am_bpe.model, stage 5): the units of
                             # the acoustic model (--task asr) and of the LLM with --llm_token_type bpe.
llm_token_type=llm           # The speech LLM's label units: llm (its own tokenizer) or bpe (the corpus's BPE, shared
                             # with the AM; the LLM's embedding and output layer rebuilt for it).
feats_normalize=global_mvn   # (--task asr) ESPnet's feature normalisation: global_mvn (statistics of stage 7) or
                             # utterance_mvn; as ESPnet's asr.sh, it overrides the train config's.
llm=                         # Pretrained LLM: folder, .gguf file or hub name (empty: the train config's).
                             # A .gguf file is dequantised once by stage 5 into ${expdir}/llm/<name>, used from then on.
toy_llm_config=              # YAML of a random-init LLM made in stage 5 and used when --llm is empty.
# Frozen frontend
dump_frontend=false          # true: run the train config's frozen frontend once (stage 6); train and decode from it.
frontend_batch_size=8        # Utterances per frontend call in stage 6.
# Training
train_config=                # Training config (ESPnet YAML).
train_args=                  # Extra options of the training job (speechllm.bin.speechllm_train; espnet2.bin.asr_train
                             # with --task asr), e.g. "--max_epoch 1".
model_tag=                   # Model dir name under expdir (empty: the train config's basename).
stats_dir=                   # Statistics dir (empty: ${expdir}/stats_${model_tag}).
# Decoding and scoring
decode_config=               # Decoding config (YAML).
inference_model=valid.loss.ave.pth  # Model file (in the model dir) to decode with and to pack; none: the untrained model.
inference_batch_size=1       # Utterances per decoding batch.
inference_args=              # Extra options of the decoding jobs (speechllm.bin.speechllm_inference), e.g.
                             # "--beam_size 8 --ctc_weight 0.3"; they override the decode config and name the decode dir.
gpu_inference=false          # true: decode on GPUs, one per job (\${cuda_cmd} --gpu 1; cmd.sh), else on CPUs.
max_segment_seconds=0        # Longer recordings: cut at pauses, decoded in segments, joined (0: the longest training utterance).
rescore_lm=                  # Causal LM (folder, .gguf or hub name) rescoring stage 9's n-best lists (decode config
                             # nbest > 1), its weight and word bonus tuned on --valid_set's decode (empty: none).
rescore_opts=                # Extra options of speechllm.bin.rescore_nbest, e.g. "--lm_weights 0,0.5,1".
scorer=builtin               # builtin (speechllm.scoring) or sclite (NIST SCTK's binary).
score_normalize=none         # Text normalisation before scoring: none, basic, whisper_en or open_asr_leaderboard.
# END OPTIONS

# The stages: number|title|function|options it needs. Run in this order; --help lists them from here.
STAGES=(
    "1|Data preparation (local/data.sh)|prepare_data|train_set valid_set test_sets"
    "2|Speed perturbation of the training set|perturb_speed|train_set"
    "3|Audio dumping and validation|dump_audio|train_set valid_set test_sets"
    "4|Length filtering of training and validation data|filter_lengths|train_set valid_set"
    "5|Token models (CTC or AM BPE, LLM tokenizer report, toy LLM)|prepare_tokens|train_set"
    "6|Frozen frontend outputs (with --dump_frontend true)|dump_frontend_outputs|train_set valid_set train_config"
    "7|Shape and feature statistics (collect_stats)|collect_stats|train_set valid_set train_config"
    "8|Training|train_model|train_set valid_set train_config"
    "9|Decoding|decode|test_sets decode_config model_tag"
    "10|Scoring|score|test_sets decode_config model_tag"
    "11|Packing the model (--task lm: exporting the LM as a transformers folder)|pack_model|model_tag"
)

list_stages() {
    local row number title
    for row in "${STAGES[@]}"; do
        IFS='|' read -r number title _ <<< "${row}"
        printf '  %2d. %s\n' "${number}" "${title}"
    done
}

# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 --train_set NAME --valid_set NAME --test_sets \"NAME ...\" --train_config YAML \\
    --decode_config YAML [options]
Runs the selected stages (--stage, --stop_stage, --skip_stages) of a speechllm recipe, in the recipe dir:
$(list_stages)"

# ------------------------------------------------------------------------------------------------- helpers

log() {
    printf '%s (%s:%d:%s) %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${BASH_SOURCE[1]##*/}" "${BASH_LINENO[0]}" \
        "${FUNCNAME[1]}" "$*"
}

die() {
    printf '%s (%s:%d:%s) ERROR: %s\n' "$(date '+%Y-%m-%dT%H:%M:%S')" "${BASH_SOURCE[1]##*/}" \
        "${BASH_LINENO[0]}" "${FUNCNAME[1]}" "$*" >&2
    exit 1
}

# run_cmd COMMAND ARG...: prints the command (quoted so that it can be pasted), then runs it unless --dry_run.
run_cmd() {
    local word quoted line='+'
    for word in "$@"; do
        if [[ ${word} =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            quoted=${word}
        elif [[ ${word} != *\'* ]]; then
            quoted="'${word}'"
        else
            printf -v quoted '%q' "${word}"
        fi
        line+=" ${quoted}"
    done
    printf '%s\n' "${line}"
    if ! ${dry_run}; then
        "$@"
    fi
}

# launch LAUNCHER ARG...: runs ARG... through a job launcher of cmd.sh, a string such as "utils/local.py --mem 4G".
launch() {
    local -a launcher
    read -r -a launcher <<< "$1"
    shift
    run_cmd "${launcher[@]}" "$@"
}

# need_file FILE HINT: stops with a message naming the stage that makes FILE (a dry run only notes it).
need_file() {
    if [[ -e $1 ]]; then
        return 0
    fi
    if ${dry_run}; then
        log "(dry run) $1 does not exist yet"
    else
        die "stage ${current_stage} needs $1, which does not exist: $2"
    fi
}

# need_model_file: --inference_model must exist in the model dir; the message lists the ones that do.
need_model_file() {
    local file available=""
    [[ ${inference_model} == none ]] && return 0  # the freshly initialised model: an untrained baseline
    for file in "${model_dir}"/*.pth; do
        [[ -e ${file} ]] && available+=" ${file##*/}"
    done
    need_file "${model_dir}/${inference_model}" \
        "run stage 8 first, or choose another --inference_model (${model_dir} has:${available:- no .pth file})"
}

# num_parts MAX FILE...: how many jobs to split FILEs into: MAX, or fewer when a FILE has fewer lines.
num_parts() {
    local parts=$1 file lines
    shift
    for file in "$@"; do
        [[ -f ${file} ]] || continue
        lines=$(wc -l < "${file}")
        (( lines > 0 )) || die "${file} is empty: nothing to process"
        (( lines < parts )) && parts=${lines}
    done
    echo "${parts}"
}

# split_scp SCP N PREFIX: PREFIX.1.scp ... PREFIX.N.scp, consecutive blocks of SCP's lines of near-equal size.
split_scp() {
    local lines
    lines=$(wc -l < "$1")
    awk -v lines="${lines}" -v parts="$2" -v prefix="$3" \
        '{ print > (prefix "." (int((NR - 1) * parts / lines) + 1) ".scp") }' "$1"
}

# speech_scp SET: what the model reads of SET: its audio (wav.scp), or with --dump_frontend true the frozen
# frontend's outputs (feats.scp, stage 6); ${speech_type} is the matching ESPnet data type.
speech_scp() {
    if [[ ${task} == lm ]]; then  # an LM reads the transcripts only
        echo "${dumpdir}/$1/text"
    elif ${dump_frontend}; then
        echo "${dumpdir}/frontend/$1/feats.scp"
    else
        echo "${dumpdir}/$1/wav.scp"
    fi
}

# is_audio_visual CONFIG: whether the training config CONFIG builds an audio-visual model (visual_injection_conf).
# Its value is a mapping (inline, or the indented block under the key); null, ~ or no key: audio-only.
is_audio_visual() {
    [[ -f $1 ]] && awk '
        block { audio_visual = /^[[:space:]]/; exit }
        /^visual_injection_conf:/ {
            value = $0
            sub(/^visual_injection_conf:[[:space:]]*/, "", value)
            sub(/[[:space:]]*(#.*)?$/, "", value)
            if (value == "") { block = 1; next }
            audio_visual = value != "null" && value != "~"
            exit
        }
        END { exit !audio_visual }' "$1"
}

# set_video_args PREFIX SET CONFIG: video_args holds the lip ROIs of SET (roi.scp, which stages 3-4 carry with the
# audio) as the data name video (option --PREFIXdata_path_and_name_and_type) when the model of CONFIG is
# audio-visual; nothing for an audio-only model.
set_video_args() {
    video_args=()
    is_audio_visual "$3" || return 0
    [[ -f data/$2/roi.scp ]] || die "$3 configures an audio-visual model but data/$2 has no roi.scp (lip ROIs)"
    video_args=("--$1data_path_and_name_and_type" "${dumpdir}/$2/roi.scp,video,npy")
}

# set_training_args: the arguments stages 7 and 8 share, in arrays model_args (the LLM and CTC BPE; with --task
# asr the AM's token list and BPE), data_args, extra_train_args and (stage 8 of --task asr) normalize_args.
set_training_args() {
    model_args=()
    normalize_args=()
    if [[ ${task} == asr ]]; then
        ${dry_run} || need_file "${token_dir}/am_tokens.txt" "run stage 5 first (with --task asr)"
        model_args+=(--token_list "${token_dir}/am_tokens.txt" --token_type bpe --bpemodel "${token_dir}/am_bpe.model")
        normalize_args=(--normalize "${feats_normalize}")
        if [[ ${feats_normalize} == global_mvn ]]; then
            normalize_args+=(--normalize_conf "stats_file=${stats_dir}/train/feats_stats.npz")
        fi
    else
        if [[ -n ${llm} ]]; then
            [[ -z ${gguf_llm} ]] || ${dry_run} ||
                need_file "${llm}/config.json" "run stage 5 first (it converts ${gguf_llm})"
            model_args+=(--llm_conf "name_or_path=${llm}")
        fi
        if [[ ${llm_token_type} == bpe ]]; then
            ${dry_run} || need_file "${token_dir}/am_bpe.model" "run stage 5 first (with --llm_token_type bpe)"
            model_args+=(--token_type bpe --bpemodel "${token_dir}/am_bpe.model")
        fi
    fi
    # The option decides, not a leftover file: a CTC head over the LLM's tokens (ctc_token_type: llm) takes no BPE.
    if (( ctc_bpe_vocab_size > 0 )); then
        ${dry_run} || need_file "${token_dir}/ctc_bpe.model" "run stage 5 first"
        model_args+=(--ctc_bpemodel "${token_dir}/ctc_bpe.model")
    fi
    local set split
    local -a video_args
    data_args=()
    for split in train valid; do
        set=${train_set}
        [[ ${split} == train ]] || set=${valid_set}
        [[ ${task} == lm ]] ||
            data_args+=("--${split}_data_path_and_name_and_type" "$(speech_scp "${set}"),speech,${speech_type}")
        data_args+=("--${split}_data_path_and_name_and_type" "${dumpdir}/${set}/text,text,text")
        if [[ ${task} == speechllm ]]; then
            set_video_args "${split}_" "${set}" "${train_config}"
            data_args+=("${video_args[@]}")
        fi
    done
    if ${dump_frontend}; then
        ${dry_run} || run_cmd utils/dump_frontend.sh --verify --config "${train_config}" \
            "${dumpdir}/frontend/${train_set}" > /dev/null
    fi
    # Split on white space, as ESPnet's asr.sh does with its --asr_args.
    read -r -a extra_train_args <<< "${train_args}"
}

# unique_words WORD...: each WORD once, in order (a test set may also be the validation set).
unique_words() {
    printf '%s\n' "$@" | awk '!seen[$0]++'
}

decode_dir_of() {
    echo "${model_dir}/$(decode_tag)/$1"
}

# decode_tag: decode_<decode config>[_<inference args>]_<model file>, e.g. decode_decode_beam_size8_valid.acc.ave:
# every decoding method and its parameters get their own results (as icefall names them).
decode_tag() {
    local args_tag=
    [[ -z ${inference_args} ]] || args_tag=$(echo "${inference_args}" | sed -e 's/--/_/g' -e 's/[ =]//g' -e 's/[^A-Za-z0-9._-]//g')
    echo "decode_$(basename "${decode_config}" .yaml)${args_tag}_${inference_model%.pth}"
}

# rescore_dir_of SET: where --rescore_lm's rescoring of SET's decode goes, named by the decode and the LM.
rescore_dir_of() {
    local lm_name
    lm_name=$(basename "${rescore_lm%/}")
    echo "${model_dir}/$(decode_tag)_rescore_${lm_name%.gguf}/$1"
}

# The decode dirs stage 10 scores: every test set's decode, and its rescoring with --rescore_lm.
scored_dirs_of() {
    decode_dir_of "$1"
    [[ -z ${rescore_lm} ]] || rescore_dir_of "$1"
}

# decode_inputs_stamp SCP N: a digest of what the decoding jobs' outputs depend on besides their command lines (the
# contents of the data list, decoding config, training config and the model file's size and time, the split).
decode_inputs_stamp() {
    local file
    {
        for file in "$1" "${decode_config}" "${model_dir}/config.yaml" "${model_dir}/${inference_model}"; do
            [[ -f ${file} ]] && stat -L -c '%n %s %Y' "${file}"  # absent files (a dry run) count as absent
        done
        echo "jobs $2 batch ${inference_batch_size} segments ${max_segment_seconds} gpu ${gpu_inference}"
        echo "args ${inference_args}"
        for file in "$1" "${decode_config}"; do
            [[ -f ${file} ]] && cat "${file}"
        done
    } | sha256sum | cut -d' ' -f1
}

# write_line FILE TEXT: FILE holds the line TEXT (a function, so that run_cmd shows it and a dry run skips it).
write_line() {
    printf '%s\n' "$2" > "$1"
}

# merge_decode_outputs LOGDIR N DECODE_DIR: joins the N jobs' OUTPUT.JOB/<n>best_recog/* files, sorted by key:
# the 1-best ones into DECODE_DIR/, the other n-best ones into DECODE_DIR/<n>best_recog/.
merge_decode_outputs() {
    local logdir=$1 parts=$2 decode_dir=$3 nbest_dir nbest file name i target
    [[ -d ${logdir}/output.1/1best_recog ]] || die "no ${logdir}/output.1/1best_recog: see ${logdir}/decode.1.log"
    for nbest_dir in "${logdir}"/output.1/*best_recog; do
        nbest=$(basename "${nbest_dir}")
        target=${decode_dir}/${nbest}
        [[ ${nbest} == 1best_recog ]] && target=${decode_dir}
        mkdir -p "${target}"
        for file in "${nbest_dir}"/*; do
            name=$(basename "${file}")
            for i in $(seq "${parts}"); do
                [[ -f ${logdir}/output.${i}/${nbest}/${name} ]] ||
                    die "${logdir}/output.${i}/${nbest}/${name} is missing: see ${logdir}/decode.${i}.log"
                cat "${logdir}/output.${i}/${nbest}/${name}"
            done | LC_ALL=C sort -k1,1 > "${target}/${name}"
        done
    done
    log "Merged the outputs of ${parts} jobs into ${decode_dir}"
}

# check_all_decoded WAV_SCP DECODE_DIR: utterances without a hypothesis are listed and counted, never dropped.
check_all_decoded() {
    local missing=$2/missing_hyps.txt
    LC_ALL=C join -v 1 <(cut -d' ' -f1 "$1" | LC_ALL=C sort) <(cut -d' ' -f1 "$2/text" | LC_ALL=C sort) \
        > "${missing}"
    if [[ -s ${missing} ]]; then
        log "WARNING: $(wc -l < "${missing}") of $(wc -l < "$1") utterances have no hypothesis" \
            "(listed in ${missing}); scoring counts them as deletions"
    else
        rm "${missing}"
    fi
}

# ------------------------------------------------------------------------------------------------- stages

prepare_data() {
    local x
    local -a opts
    read -r -a opts <<< "${local_data_opts}"
    [[ -x local/data.sh ]] || die "local/data.sh is missing or not executable in ${PWD}: every recipe provides it"
    local -a sets
    mapfile -t sets < <(unique_words "${data_train_set}" "${valid_set}" "${test_set_list[@]}")
    log "local/data.sh writes data/{$(IFS=,; echo "${sets[*]}")}"
    run_cmd local/data.sh "${opts[@]}"
    for x in "${sets[@]}"; do
        need_file "data/${x}/wav.scp" "local/data.sh did not write data/${x}: check --train_set/--valid_set/--test_sets"
    done
}

perturb_speed() {
    if [[ -z ${speed_perturb_factors} ]]; then
        log "No --speed_perturb_factors: nothing to do"
        return 0
    fi
    need_file "data/${data_train_set}/wav.scp" "run stage 1 first"
    log "Reads data/${data_train_set}, writes data/${train_set} (factors: ${speed_perturb_factors})"
    run_cmd utils/perturb_data_dir_speed.sh --factors "${speed_perturb_factors}" \
        "data/${data_train_set}" "data/${train_set}"
}

dump_audio() {
    local x out
    local -a sets
    mapfile -t sets < <(unique_words "${train_set}" "${valid_set}" "${test_set_list[@]}")
    for x in "${sets[@]}"; do
        # Training and validation data are length-filtered into ${dumpdir}/x in stage 4; test data are not.
        out=${dumpdir}/${x}
        if [[ ${x} == "${train_set}" || ${x} == "${valid_set}" ]]; then
            out=${dumpdir}/org/${x}
        fi
        need_file "data/${x}/wav.scp" "run stage 1 (and stage 2 with --speed_perturb_factors) first"
        log "Reads data/${x}, writes ${out}"
        run_cmd utils/dump_audio.sh --nj "${nj}" --cmd "${data_cmd}" --fs "${fs}" --audio_format "${audio_format}" \
            --resample "${resample}" --channel "${channel}" \
            "data/${x}" "${out}"
        run_cmd utils/validate_data_dir.sh "${out}"
    done
}

filter_lengths() {
    local x
    local -a sets
    mapfile -t sets < <(unique_words "${train_set}" "${valid_set}")
    for x in "${sets[@]}"; do
        need_file "${dumpdir}/org/${x}/wav.scp" "run stage 3 first"
        log "Reads ${dumpdir}/org/${x}, writes ${dumpdir}/${x}"
        run_cmd utils/filter_data_dir.sh --min_duration "${min_duration}" --max_duration "${max_duration}" \
            --fs "${fs}" "${dumpdir}/org/${x}" "${dumpdir}/${x}"
    done
}

prepare_tokens() {
    local -a opts=(--text "${dumpdir}/${train_set}/text" --output_dir "${token_dir}")
    need_file "${dumpdir}/${train_set}/text" "run stage 4 first"
    if (( ctc_bpe_vocab_size > 0 )); then
        opts+=(--ctc_bpe_vocab_size "${ctc_bpe_vocab_size}")
    fi
    if [[ ${task} == asr || ${llm_token_type} == bpe ]]; then
        opts+=(--am_bpe_vocab_size "${am_bpe_vocab_size}")
    fi
    if ${make_toy_llm}; then
        opts+=(--toy_llm_config "${toy_llm_config}" --toy_llm_dir "${llm}")
        log "Reads ${dumpdir}/${train_set}/text and ${toy_llm_config}, writes ${token_dir} and ${llm}"
    elif [[ -n ${gguf_llm} ]]; then
        opts+=(--llm "${gguf_llm}" --convert_gguf_to "${llm}")
        log "Reads ${dumpdir}/${train_set}/text and ${gguf_llm}, writes ${token_dir} and ${llm}"
    else
        if [[ -n ${llm} ]]; then
            opts+=(--llm "${llm}")
        fi
        log "Reads ${dumpdir}/${train_set}/text, writes ${token_dir}"
    fi
    run_cmd python3 -m speechllm.bin.prepare_tokens "${opts[@]}"
}

dump_frontend_outputs() {
    local x
    if ! ${dump_frontend}; then
        log "--dump_frontend false: the frontend runs inside training and decoding; nothing to do"
        return 0
    fi
    local -a sets
    mapfile -t sets < <(unique_words "${train_set}" "${valid_set}" "${test_set_list[@]}")
    for x in "${sets[@]}"; do
        need_file "${dumpdir}/${x}/wav.scp" "run stages 3 and 4 first"
        log "Reads ${dumpdir}/${x} and the frontend of ${train_config}, writes ${dumpdir}/frontend/${x}"
        run_cmd utils/dump_frontend.sh --nj "${nj}" --cmd "${data_cmd}" --batch_size "${frontend_batch_size}" \
            --config "${train_config}" "${dumpdir}/${x}" "${dumpdir}/frontend/${x}"
    done
}

collect_stats() {
    local logdir=${stats_dir}/logdir parts i
    local -a input_dirs=()
    need_file "$(speech_scp "${train_set}")" "run stage 4 (and 6 with --dump_frontend true) first"
    need_file "$(speech_scp "${valid_set}")" "run stage 4 (and 6 with --dump_frontend true) first"
    parts=$(num_parts "${nj}" "$(speech_scp "${train_set}")" "$(speech_scp "${valid_set}")")
    set_training_args
    log "Reads ${dumpdir}/{${train_set},${valid_set}}, writes ${stats_dir} (${parts} jobs)"
    # A fresh logdir: the launcher skips jobs whose log shows success, which would keep stale statistics.
    run_cmd rm -rf "${logdir}"
    run_cmd mkdir -p "${logdir}"
    run_cmd split_scp "$(speech_scp "${train_set}")" "${parts}" "${logdir}/train"
    run_cmd split_scp "$(speech_scp "${valid_set}")" "${parts}" "${logdir}/valid"
    launch "${train_cmd}" JOB=1:"${parts}" "${logdir}/stats.JOB.log" \
        python3 -m "${train_module}" --collect_stats true --use_preprocessor true \
        --config "${train_config}" "${model_args[@]}" "${data_args[@]}" \
        --train_shape_file "${logdir}/train.JOB.scp" --valid_shape_file "${logdir}/valid.JOB.scp" \
        --output_dir "${logdir}/stats.JOB" "${extra_train_args[@]}" ||
        die "statistics collection failed: see ${logdir}/stats.*.log"
    for i in $(seq "${parts}"); do
        input_dirs+=(--input_dir "${logdir}/stats.${i}")
    done
    run_cmd python3 -m espnet2.bin.aggregate_stats_dirs "${input_dirs[@]}" --output_dir "${stats_dir}"
}

train_model() {
    local shape run
    local -a shape_args=()
    local -a shapes=(train/text_shape valid/text_shape)
    [[ ${task} == lm ]] || shapes=(train/speech_shape train/text_shape valid/speech_shape valid/text_shape)
    for shape in "${shapes[@]}"; do
        need_file "${stats_dir}/${shape}" "run stage 7 first"
        shape_args+=("--${shape%%/*}_shape_file" "${stats_dir}/${shape}")
    done
    set_training_args
    if [[ ${task} == asr && ${feats_normalize} == global_mvn ]]; then
        need_file "${stats_dir}/train/feats_stats.npz" "run stage 7 first"
    fi
    log "Reads ${dumpdir}/{${train_set},${valid_set}} and ${stats_dir}, writes ${model_dir}"
    run_cmd mkdir -p "${model_dir}"
    # Earlier runs' logs are kept as train.log.1, .2, ... (the launcher would skip a job whose log shows success;
    # speechllm.bin.plot_training reads them all, in order, with train.log).
    if [[ -f ${model_dir}/train.log ]]; then
        run=1
        while [[ -e ${model_dir}/train.log.${run} ]]; do run=$((run + 1)); done
        run_cmd mv "${model_dir}/train.log" "${model_dir}/train.log.${run}"
    fi
    launch "${train_cmd}" --gpu "${ngpu}" --num_threads "${train_threads}" "${model_dir}/train.log" \
        python3 -m "${train_module}" --config "${train_config}" "${model_args[@]}" "${normalize_args[@]}" \
        --use_preprocessor true --ngpu "${ngpu}" --resume true --output_dir "${model_dir}" \
        "${data_args[@]}" "${shape_args[@]}" "${extra_train_args[@]}" ||
        die "training failed: see ${model_dir}/train.log"
}

decode() {
    local x dir logdir parts scp stamp
    local -a video_args
    local -a model_file_args=(--model_file "${model_dir}/${inference_model}")
    [[ ${inference_model} == none ]] && model_file_args=()
    if [[ ${task} == lm ]]; then
        log "--task lm decodes nothing: its LM (stage 11 exports it) serves rescoring and fusion (decode option lm)"
        return 0
    fi
    need_file "${model_dir}/config.yaml" "run stage 8 first"
    need_model_file
    if [[ -n ${rescore_lm} && " ${test_sets} " != *" ${valid_set} "* ]]; then
        die "--rescore_lm tunes on the validation set's decode: add ${valid_set} to --test_sets"
    fi
    for x in "${test_set_list[@]}"; do
        dir=$(decode_dir_of "${x}")
        logdir=${dir}/logdir
        scp=$(speech_scp "${x}")
        need_file "${scp}" "run stage 3 (and 6 with --dump_frontend true) first"
        parts=$(num_parts "${inference_nj}" "${scp}")
        log "Reads ${scp}, writes ${dir} (${parts} jobs)"
        stamp=$(decode_inputs_stamp "${scp}" "${parts}")
        if [[ -f ${logdir}/inputs.sha256 && $(< "${logdir}/inputs.sha256") == "${stamp}" ]]; then
            log "${logdir} was decoded from the same inputs: only its unfinished jobs run again"
        else  # another model, config, data or split: nothing of the old jobs is kept
            run_cmd rm -rf "${logdir}"
            run_cmd mkdir -p "${logdir}"
            run_cmd split_scp "${scp}" "${parts}" "${logdir}/keys"
            run_cmd write_line "${logdir}/inputs.sha256" "${stamp}"
        fi
        # The merged results of an earlier run go first: a failed run leaves no stale text to score.
        run_cmd rm -rf "${dir}"/{text,token,token_int,score,missing_hyps.txt,score_wer,score_cer} "${dir}"/*best_recog
        video_args=()  # a test set without lip ROIs decodes task asr only
        [[ ${task} != speechllm || ! -f data/${x}/roi.scp ]] || set_video_args "" "${x}" "${model_dir}/config.yaml"
        launch "${inference_cmd}" --gpu "${inference_ngpu}" JOB=1:"${parts}" "${logdir}/decode.JOB.log" \
            python3 -m speechllm.bin.speechllm_inference --ngpu "${inference_ngpu}" \
            --batch_size "${inference_batch_size}" --segment_seconds "${max_segment_seconds}" \
            --config "${decode_config}" --data_path_and_name_and_type "${scp},speech,${speech_type}" "${video_args[@]}" \
            --key_file "${logdir}/keys.JOB.scp" --train_config "${model_dir}/config.yaml" \
            "${model_file_args[@]}" --output_dir "${logdir}/output.JOB" "${extra_inference_args[@]}" ||
            die "decoding ${x} failed: see ${logdir}/decode.*.log"
        run_cmd merge_decode_outputs "${logdir}" "${parts}" "${dir}"
        run_cmd check_all_decoded "${scp}" "${dir}"
    done
    [[ -z ${rescore_lm} ]] || rescore_nbest_lists
}

# With --rescore_lm: the LM weight and word bonus are tuned on the validation set's n-best lists (a grid, logged in
# rescoring.yaml), then every test set's n-best lists are rescored with them, in one job (one LM load, one tuning).
rescore_nbest_lists() {
    local x tune_dir rescore_root
    local -a rescore_args pairs=()
    read -r -a rescore_args <<< "${rescore_opts}"
    tune_dir=$(decode_dir_of "${valid_set}")
    rescore_root=$(dirname "$(rescore_dir_of "${valid_set}")")
    for x in "${test_set_list[@]}"; do
        pairs+=(--nbest_dir "$(decode_dir_of "${x}")" --output_dir "$(rescore_dir_of "${x}")")
    done
    log "Reads the n-best lists of ${test_sets} and ${rescore_lm}, tuned on ${tune_dir}, writes ${rescore_root}"
    launch "${decode_cmd}" "${rescore_root}/rescore.log" \
        python3 -m speechllm.bin.rescore_nbest --lm "${rescore_lm}" "${pairs[@]}" \
        --tune_nbest_dir "${tune_dir}" --tune_ref "${dumpdir}/${valid_set}/text" \
        --normalize "${score_normalize}" "${rescore_args[@]}" ||
        die "rescoring failed: see ${rescore_root}/rescore.log"
}

score() {
    local x dir unit_and_name
    local -a dirs
    if [[ ${task} == lm ]]; then
        log "--task lm scores no decode: its validation perplexity is in ${model_dir}/train.log"
        return 0
    fi
    for x in "${test_set_list[@]}"; do
        mapfile -t dirs < <(scored_dirs_of "${x}")
        for dir in "${dirs[@]}"; do
            need_file "${dir}/text" "run stage 9 first"
            log "Reads ${dumpdir}/${x}/text and ${dir}/text, writes ${dir}/score_{wer,cer}"
            for unit_and_name in word:wer char:cer; do
                run_cmd python3 -m speechllm.bin.score_text --ref "${dumpdir}/${x}/text" --hyp "${dir}/text" \
                    --utt2spk "${dumpdir}/${x}/utt2spk" --unit "${unit_and_name%:*}" \
                    --normalize "${score_normalize}" --scorer "${scorer}" --out_dir "${dir}/score_${unit_and_name#*:}"
            done
        done
    done
    run_cmd python3 -m speechllm.bin.make_results "${model_dir}"
    run_cmd cat "${model_dir}/RESULTS.md"
}

pack_model() {
    [[ ${inference_model} != none ]] || die "--inference_model none (the untrained model) is not packed"
    need_model_file
    if [[ ${task} == lm ]]; then  # a transformers folder: rescoring and fusion load it like any LLM
        log "Reads ${model_dir}, writes ${model_dir}/exported"
        run_cmd python3 -m speechllm.bin.export_lm --train_config "${model_dir}/config.yaml" \
            --model_file "${model_dir}/${inference_model}" --output_dir "${model_dir}/exported"
        return 0
    fi
    log "Reads ${model_dir}, writes ${model_dir}/packed.zip"
    if [[ ${task} == asr ]]; then  # ESPnet's own archive of an ASRTask model (espnet2.bin.asr_inference reads it)
        run_cmd python3 -m espnet2.bin.pack asr --asr_train_config "${model_dir}/config.yaml" \
            --asr_model_file "${model_dir}/${inference_model}" --option "${token_dir}/am_bpe.model" \
            --outpath "${model_dir}/packed.zip"
        return 0
    fi
    run_cmd python3 -m speechllm.bin.pack --train_config "${model_dir}/config.yaml" \
        --model_file "${model_dir}/${inference_model}" --outpath "${model_dir}/packed.zip"
}

# ------------------------------------------------------------------------------------------------- main

stage_selected() {
    local skipped
    (( $1 >= stage && $1 <= stop_stage )) || return 1
    for skipped in "${skip_stage_list[@]}"; do
        [[ ${skipped} == "$1" ]] && return 1
    done
    return 0
}

# check_options: the values the script computes with, and every option a selected stage needs, before any runs.
check_options() {
    local option row number needs skipped hint
    for option in stage stop_stage nj inference_nj ngpu train_threads ctc_bpe_vocab_size am_bpe_vocab_size fs \
        inference_batch_size frontend_batch_size; do
        [[ ${!option} =~ ^[0-9]+$ ]] || die "--${option} takes a whole number, got '${!option}'"
    done
    for option in dry_run resample dump_frontend gpu_inference; do
        [[ ${!option} == true || ${!option} == false ]] || die "--${option} takes true or false, got '${!option}'"
    done
    [[ ${llm_token_type} == llm || ${llm_token_type} == bpe ]] ||
        die "--llm_token_type takes llm or bpe, got '${llm_token_type}'"
    case ${task} in
        lm)
            ! ${dump_frontend} || die "--task lm reads transcripts only: use --dump_frontend false" ;&
        speechllm)
            [[ ${llm_token_type} == llm ]] || (( am_bpe_vocab_size > 0 )) ||
                die "--llm_token_type bpe needs --am_bpe_vocab_size > 0" ;;
        asr)
            ! ${dump_frontend} || die "--task asr trains its frontend with the model: use --dump_frontend false"
            (( ctc_bpe_vocab_size == 0 )) ||
                die "--task asr: the AM's CTC head shares its BPE (--am_bpe_vocab_size); drop --ctc_bpe_vocab_size"
            (( am_bpe_vocab_size > 0 )) || die "--task asr needs --am_bpe_vocab_size > 0"
            [[ ${feats_normalize} == global_mvn || ${feats_normalize} == utterance_mvn ]] ||
                die "--feats_normalize takes global_mvn or utterance_mvn, got '${feats_normalize}'" ;;
        *) die "--task takes speechllm, asr or lm, got '${task}'" ;;
    esac
    [[ ${max_segment_seconds} =~ ^[0-9]+(\.[0-9]+)?$ ]] ||
        die "--max_segment_seconds takes seconds (0: the longest training utterance), got '${max_segment_seconds}'"
    for skipped in "${skip_stage_list[@]}"; do
        [[ ${skipped} =~ ^[0-9]+$ ]] || die "--skip_stages takes stage numbers, e.g. \"5 7\", got '${skip_stages}'"
    done
    for row in "${STAGES[@]}"; do
        IFS='|' read -r number _ _ needs <<< "${row}"
        stage_selected "${number}" || continue
        for option in ${needs}; do
            hint="set it in run.sh or on the command line"
            [[ ${option} == model_tag ]] && hint+=" (or set --train_config: its basename is the default)"
            [[ -n ${!option} ]] || die "stage ${number} needs --${option}; ${hint}"
        done
    done
}

run_stage() {
    local number=$1 title=$2 function=$3 start=${SECONDS}
    if (( number < stage || number > stop_stage )); then
        return 0
    fi
    if ! stage_selected "${number}"; then
        log "Stage ${number}: ${title}: skipped (--skip_stages)"
        return 0
    fi
    current_stage=${number}
    current_title=${title}
    log "Stage ${number}: ${title}: started"
    "${function}"
    log "Stage ${number}: ${title}: finished in $((SECONDS - start)) s"
    current_stage=0
}

# On exit: a failed stage is named, with how to resume from it (the cause is in the messages above).
report_failure() {
    local code=$?
    if (( code != 0 && current_stage > 0 )); then
        printf '%s (speechllm.sh) ERROR: stage %d (%s) failed with exit code %d; resume with --stage %d\n' \
            "$(date '+%Y-%m-%dT%H:%M:%S')" "${current_stage}" "${current_title}" "${code}" "${current_stage}" >&2
    fi
}

# shellcheck source=/dev/null
. utils/parse_options.sh
if (( $# > 0 )); then
    die "unexpected argument '$1': options are --name value pairs; see $0 --help"
fi

# shellcheck source=/dev/null
. ./path.sh
# shellcheck source=/dev/null
. ./cmd.sh
# cmd.sh chooses how jobs run (utils/local.py, utils/slurm.py ...) for each kind of job.
train_cmd=${train_cmd:?cmd.sh must set train_cmd}
decode_cmd=${decode_cmd:?cmd.sh must set decode_cmd}
data_cmd=${data_cmd:?cmd.sh must set data_cmd}
# Decoding jobs run through ${decode_cmd} on CPUs, or through ${cuda_cmd} with one GPU each (--gpu_inference true).
if [[ ${gpu_inference} == true ]]; then
    inference_cmd=${cuda_cmd:?cmd.sh must set cuda_cmd for --gpu_inference true}
    inference_ngpu=1
else
    inference_cmd=${decode_cmd}
    inference_ngpu=0
fi
read -r -a extra_inference_args <<< "${inference_args}"

read -r -a skip_stage_list <<< "${skip_stages}"
read -r -a test_set_list <<< "${test_sets}"
# Stage 2 writes data/${train_set}_sp; every later stage trains on it.
data_train_set=${train_set}
if [[ -n ${speed_perturb_factors} && -n ${train_set} ]]; then
    train_set=${train_set}_sp
fi
if [[ -z ${model_tag} && -n ${train_config} ]]; then
    model_tag=$(basename "${train_config}" .yaml)
fi
model_dir=${expdir}/${model_tag}
speech_type=sound
if ${dump_frontend}; then
    speech_type=kaldi_ark
fi
stats_dir=${stats_dir:-${expdir}/stats_${model_tag}}
train_module=speechllm.bin.speechllm_train
if [[ ${task} == asr ]]; then
    train_module=espnet2.bin.asr_train  # ESPnet's own ASRTask and Trainer, unchanged
elif [[ ${task} == lm ]]; then
    train_module=speechllm.bin.lm_train
fi
# Without a pretrained --llm, stage 5 makes a random-init LLM from --toy_llm_config and later stages use it.
make_toy_llm=false
if [[ -z ${llm} && -n ${toy_llm_config} ]]; then
    make_toy_llm=true
    llm=${expdir}/llm_init
elif [[ -n ${llm} && -n ${toy_llm_config} ]]; then
    log "--llm ${llm} is given: --toy_llm_config ${toy_llm_config} is not used"
fi
# A GGUF LLM is dequantised once (stage 5) instead of in every job that loads it.
gguf_llm=
if [[ ${llm} == *.gguf ]]; then
    gguf_llm=${llm}
    llm=${expdir}/llm/$(basename "${llm}" .gguf)
fi
check_options

current_stage=0
current_title=
trap report_failure EXIT
${dry_run} && log "Dry run: the commands are printed, not run"
for row in "${STAGES[@]}"; do
    IFS='|' read -r number title function _ <<< "${row}"
    run_stage "${number}" "${title}" "${function}"
done
log "Successfully finished (stages ${stage} to ${stop_stage}${skip_stages:+, skipping ${skip_stages}})"
