#!/usr/bin/env bash
# Stage 1 of the LRS3 recipe: converts the extracted corpus ({pretrain,trainval,test}/<spk>/<clip>.mp4 + .txt)
# into Kaldi data dirs data/{train,valid,test} with video.scp beside wav.scp (local/prepare_lrs3.py says how), and
# with --lip_roi true also extracts the lip ROIs of each into dump/roi/<set> (a data dir with roi.scp; utterances
# without a face are removed and listed in dump/roi/<set>/roi_report.txt), writes the audio-visual data dirs
# data/<set>_av (those utterances, with roi.scp) and the audio-visual test set under babble at --snrs
# (data/test_av_clean, data/test_av_snr5, ...: run_av.sh's test sets). Run it from the recipe dir.
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
corpus_dir="${LRS3}"            # The folder holding pretrain/, trainval/ and test/ (db.sh's LRS3).
max_segment_seconds=15          # Pretrain clips are cut by their word times into segments of at most this many seconds of words.
valid_utts=1200                 # At least this many trainval utterances (whole speakers) form data/valid.
expect_test_utts=1321           # The test set must have this many utterances (LRS3's; 0: any).
nj=4                            # Parallel processes extracting the audio, and lip-ROI jobs.
lip_roi=false                   # Also extract the lip ROIs (96x96 grayscale, 25 fps) of each set into dump/roi/<set>.
resample_video=false            # Lip ROIs of video at another frame rate than 25 fps: nearest frame (true) or an error.
snrs="clean 5 0 -5"             # With --lip_roi true: SNRs (dB) of the babble-mixed copies of data/test_av.
babble_talkers=5                # Test utterances summed into each utterance's babble.
# END OPTIONS
# shellcheck disable=SC2034  # read by utils/parse_options.sh
help_message="Usage: $0 [options]
Converts LRS3 into Kaldi data dirs data/{train,valid,test}, e.g.
  $0 --corpus_dir /corpora/LRS3 --lip_roi true"

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
if [[ -f ./cmd.sh ]]; then
    # shellcheck source=/dev/null
    . ./cmd.sh
fi
if [[ -z ${corpus_dir} ]]; then
    die "the corpus location is not set: set LRS3 in db.sh (or pass --corpus_dir) to the folder that holds" \
        "pretrain/, trainval/ and test/ (LRS3 is distributed on request: https://mmai.io/datasets/lip_reading/)"
fi
if [[ ! -d ${corpus_dir}/trainval && -d ${corpus_dir}/LRS3/trainval ]]; then
    die "${corpus_dir} holds LRS3/; give that folder: LRS3=${corpus_dir}/LRS3 in db.sh (or --corpus_dir)"
fi

python3 local/prepare_lrs3.py --max_segment_seconds "${max_segment_seconds}" --valid_utts "${valid_utts}" \
    --expect_test_utts "${expect_test_utts}" --nj "${nj}" "${corpus_dir}" data
for set in train valid test; do
    utils/validate_data_dir.sh "data/${set}"
done

if ${lip_roi}; then
    for set in train valid test; do
        log "lip ROIs of data/${set} -> dump/roi/${set}"
        utils/extract_lip_roi.sh --nj "${nj}" --cmd "${train_cmd:-utils/local.py}" \
            --resample_video "${resample_video}" "data/${set}" "dump/roi/${set}"
        utils/validate_data_dir.sh "dump/roi/${set}"
        # The audio-visual data dir: the data files of the ROIs' dir (its utterances, roi.scp), small; the arrays stay.
        mkdir -p "data/${set}_av"
        for file in "dump/roi/${set}"/*; do
            [[ ! -f ${file} || ${file} == */roi_report.txt ]] || cp "${file}" "data/${set}_av/"
        done
    done
    # Noise is mixed per utterance file: the test clips' audio (segments of the recordings) is dumped first.
    log "data/test_av under babble at SNRs ${snrs} -> data/test_av_{clean,snr*}"
    utils/dump_audio.sh --nj "${nj}" --cmd "${train_cmd:-utils/local.py}" data/test_av dump/audio/test_av
    utils/make_snr_sets.sh --snrs "${snrs}" --babble_talkers "${babble_talkers}" --data_out data \
        dump/audio/test_av babble dump/snr
fi

log "Successfully finished. [elapsed=${SECONDS}s]"
