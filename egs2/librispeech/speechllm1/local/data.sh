#!/usr/bin/env bash
# Stage 1 of the LibriSpeech recipe: converts the extracted corpus (https://www.openslr.org/12, SLR12) into Kaldi
# data dirs data/<subset with _ for ->/ (e.g. data/dev_clean), then data/train_960 (the three training subsets)
# and data/dev (dev-clean + dev-other) when all their parts are converted. Run it from the recipe dir.
# Transcripts are lower-cased by default: see README.md ("Transcripts").
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
die() {
    echo "$0: ERROR: $*" >&2
    exit 1
}
SECONDS=0

# shellcheck source=/dev/null
. ./db.sh

# BEGIN OPTIONS
corpus_dir="${LIBRISPEECH}"     # The folder holding LibriSpeech/ (db.sh's LIBRISPEECH; empty: --download_dir).
download=true                   # Download (resumable, MD5-checked) and extract the subsets missing from corpus_dir.
download_dir=downloads          # Where the downloaded archives go.
data_url=https://www.openslr.org/resources/12  # Where the SLR12 archives are.
md5sum_file=                    # A mirror's md5sum.txt ("<md5> <subset>.tar.gz" lines; empty: OpenSLR's, below).
subsets=dev-clean,dev-other,test-clean,test-other,train-clean-100,train-clean-360,train-other-500  # Comma separated.
lowercase=true                  # Lower-case the transcripts (LibriSpeech's are upper case).
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Converts LibriSpeech subsets into Kaldi data dirs under data/, e.g.
  $0 --corpus_dir /corpora --subsets dev-clean,test-clean,train-clean-100"

log "$0 $*"
# shellcheck source=/dev/null
. utils/parse_options.sh

if [[ $# -ne 0 ]]; then
    die "takes no positional arguments, got: $*; run '$0 --help' for the options"
fi
if [[ -f ./path.sh ]]; then
    # shellcheck source=/dev/null
    . ./path.sh
fi

readonly known_subsets=" dev-clean dev-other test-clean test-other train-clean-100 train-clean-360 train-other-500 "
IFS=', ' read -r -a parts <<< "${subsets}"
if [[ ${#parts[@]} -eq 0 ]]; then
    die "--subsets is empty; give some of:${known_subsets}"
fi
for part in "${parts[@]}"; do
    if [[ ${known_subsets} != *" ${part} "* ]]; then
        die "--subsets: unknown subset '${part}'; LibriSpeech's subsets are:${known_subsets}"
    fi
done

# The MD5 sums OpenSLR publishes for SLR12 (https://www.openslr.org/resources/12/md5sum.txt).
declare -A md5=(
    [dev-clean]=42e2234ba48799c1f50f24a7926300a1 [dev-other]=c8d0bcc9cca99d4f8b62fcc847357931
    [test-clean]=32fa31d27d2e1cad72775fee3f4849a9 [test-other]=fb5a50374b501bb3bac4815ee91d3135
    [train-clean-100]=2a93770f6d5c6c964bc36631d331a522 [train-clean-360]=c0e676e450a7ff2f54aeade5171606fa
    [train-other-500]=d1a0fd59409feb2c614ce4d30c387708
)
if [[ -n ${md5sum_file} ]]; then
    [[ -f ${md5sum_file} ]] || die "--md5sum_file ${md5sum_file} does not exist"
    while read -r sum name; do
        md5[${name%.tar.gz}]=${sum}
    done < "${md5sum_file}"
fi
if [[ -z ${corpus_dir} ]]; then
    if ! ${download}; then
        die "the corpus location is not set: set LIBRISPEECH in db.sh (or pass --corpus_dir) to the folder that" \
            "holds LibriSpeech/ (download: https://www.openslr.org/12), or let this script download it" \
            "(--download true)"
    fi
    corpus_dir=${download_dir}
fi
# Check every subset before converting any, so a missing download is reported at once.
for part in "${parts[@]}"; do
    if [[ ! -d ${corpus_dir}/LibriSpeech/${part} && -d ${corpus_dir}/${part} ]]; then
        die "${corpus_dir} is the LibriSpeech folder itself; give the folder that holds it:" \
            "LIBRISPEECH=$(dirname "${corpus_dir}") in db.sh (or --corpus_dir $(dirname "${corpus_dir}"))"
    elif [[ ! -d ${corpus_dir}/LibriSpeech/${part} ]] && ${download}; then
        log "${corpus_dir}/LibriSpeech/${part} is missing: downloading ${data_url}/${part}.tar.gz"
        python3 -m speechllm.data.download "${data_url}/${part}.tar.gz" --md5 "${md5[${part}]}" \
            --download_dir "${download_dir}" --extract_to "${corpus_dir}" ||
            die "could not download ${part} (the message above says why); rerun to resume, or download it" \
                "yourself and pass --corpus_dir"
        [[ -d ${corpus_dir}/LibriSpeech/${part} ]] ||
            die "${download_dir}/${part}.tar.gz holds no LibriSpeech/${part}: not the SLR12 archive"
    elif [[ ! -d ${corpus_dir}/LibriSpeech/${part} ]]; then
        die "${corpus_dir}/LibriSpeech/${part} is missing. Download and extract it (OpenSLR SLR12):
  wget https://www.openslr.org/resources/12/${part}.tar.gz
  tar -xzf ${part}.tar.gz -C ${corpus_dir}     # creates ${corpus_dir}/LibriSpeech/${part}
or leave ${part} out of --subsets (now: ${subsets})."
    fi
done

for part in "${parts[@]}"; do
    dir=data/${part//-/_}
    python3 local/prepare_librispeech.py --lowercase "${lowercase}" "${corpus_dir}/LibriSpeech/${part}" "${dir}"
    utils/validate_data_dir.sh "${dir}"
done

# combine NAME PART...: data/NAME from the data dirs of PARTs when all were converted, else say why not.
combine() {
    local name=$1 part
    local -a dirs=() missing=()
    shift
    for part in "$@"; do
        if [[ " ${parts[*]} " == *" ${part} "* ]]; then
            dirs+=("data/${part//-/_}")
        else
            missing+=("${part}")
        fi
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        log "data/${name} not made: needs ${missing[*]} in --subsets"
        return
    fi
    utils/combine_data.sh "data/${name}" "${dirs[@]}"
    utils/validate_data_dir.sh "data/${name}"
}
combine train_960 train-clean-100 train-clean-360 train-other-500
combine dev dev-clean dev-other

log "Successfully finished. [elapsed=${SECONDS}s]"
