#!/usr/bin/env bash
# Stage 1 of the Loquacious recipe: converts a local copy of the Loquacious Set's parquet shards
# (speechbrain/LoquaciousSet) into Kaldi data dirs: data/train_<subset> for each training subset asked for,
# data/dev and data/test with one more dir per source corpus (data/dev_voxpopuli, ...), and data/dev_short (a fixed
# random subset of dev for validation and quick tuning). Run it from the recipe dir. README.md has the details.
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
corpus_dir="${LOQUACIOUS}"      # Local copy of the corpus: the folder holding dev/ test/ small/ ... (db.sh's LOQUACIOUS).
subsets=small                   # Training subsets, comma separated: small (250 h), medium, large, clean.
audio_dir=data/audio            # Where the FLAC files of every utterance go (<part>/<shard>/<utt>.flac).
lowercase=true                  # Lower-case the transcripts.
per_source=true                 # Also score dev/test per source corpus (data/{dev,test}_<source>).
dev_short_size=3000             # Utterances of data/dev_short, drawn at random from dev (0: none).
seed=0                          # Random seed of the dev_short draw.
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Converts the Loquacious Set's parquet shards into Kaldi data dirs under data/, e.g.
  $0 --corpus_dir /corpora/LoquaciousSet --subsets small,medium"

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

if [[ -z ${corpus_dir} ]]; then
    die "the corpus location is not set: set LOQUACIOUS in db.sh (or pass --corpus_dir) to a local copy of" \
        "speechbrain/LoquaciousSet's parquet shards, e.g. downloaded with" \
        "'huggingface-cli download speechbrain/LoquaciousSet --repo-type dataset --include \"dev/*\" \"test/*\"" \
        "\"small/*\" --local-dir /corpora/LoquaciousSet'"
fi
readonly known_subsets=" small medium large clean "
IFS=', ' read -r -a parts <<< "${subsets}"
for part in "${parts[@]}"; do
    if [[ ${known_subsets} != *" ${part} "* ]]; then
        die "--subsets: unknown subset '${part}'; the Loquacious Set's training subsets are:${known_subsets}"
    fi
done

# Every part's shards must be there before any is converted (a hub name is fetched part by part instead).
if [[ -d ${corpus_dir} ]]; then
    for part in dev test "${parts[@]}"; do
        if [[ -z $(find "${corpus_dir}/${part}" -name '*.parquet' -print -quit 2> /dev/null) ]]; then
            die "${corpus_dir}/${part} holds no parquet shards: the '${part}' part is missing. Download it:
  huggingface-cli download speechbrain/LoquaciousSet --repo-type dataset --include '${part}/*' --local-dir ${corpus_dir}
or leave it out of --subsets (now: ${subsets}); dev and test are always needed."
        fi
    done
fi

# dev and test first: they are what every run scores, and they check the copy before the long training subsets.
for part in dev test "${parts[@]}"; do
    dir=data/${part}
    [[ ${part} == dev || ${part} == test ]] || dir=data/train_${part}
    python3 -m speechllm.data.loquacious --corpus_dir "${corpus_dir}" --part "${part}" --data_dir "${dir}" \
        --audio_dir "${audio_dir}" --lowercase "${lowercase}" --per_source "${per_source}"
    utils/validate_data_dir.sh "${dir}"
done

if (( dev_short_size > 0 )); then
    utils/subset_data_dir.sh --random "${dev_short_size}" --seed "${seed}" data/dev data/dev_short
    utils/validate_data_dir.sh data/dev_short
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
