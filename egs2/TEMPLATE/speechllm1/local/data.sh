#!/usr/bin/env bash
# local/data.sh: stage 1 of speechllm.sh runs it (with --local_data_opts) in the recipe dir. This template's copy
# only explains what a corpus must provide: replace it with your corpus's data preparation.
# A working example: egs2/synth_an4/speechllm1/local/data.sh.
set -euo pipefail

# shellcheck source=/dev/null
. ./db.sh
# Declare options like speechllm.sh does: utils/parse_options.sh sets them from --name value, --help lists them.
# BEGIN OPTIONS
corpus_dir=      # Where the corpus is (usually its variable in db.sh, e.g. "${LIBRISPEECH}").
# END OPTIONS
# shellcheck source=/dev/null
. utils/parse_options.sh

echo "local/data.sh (--corpus_dir '${corpus_dir}'): this is the template's placeholder, not a data preparation" \
    "for your corpus." >&2
cat >&2 <<'MESSAGE'
Replace it with a script that writes, for each of run.sh's --train_set, --valid_set and --test_sets, a Kaldi
data dir data/<set>/ holding:
  wav.scp   <utt-id> <audio file>, or <utt-id> <command> |  (a command writing audio to stdout)
  text      <utt-id> <transcript>  (the words as they should be recognised and scored)
  utt2spk   <utt-id> <speaker-id>  (utterance ids should start with their speaker id: spk1-utt1)
  spk2utt   <speaker-id> <utt-id> ...  (utils/utt2spk_to_spk2utt.sh < utt2spk > spk2utt)
  segments  <utt-id> <recording-id> <start s> <end s>  (optional: then wav.scp lists recordings)
every file sorted with LC_ALL=C sort. Read the corpus location from db.sh, and check each dir with
utils/validate_data_dir.sh data/<set> (utils/fix_data_dir.sh repairs sorting and mismatched ids).
MESSAGE
exit 1
