"""The Open ASR leaderboard's English test sets (hf-audio/esb-datasets-test-only-sorted) as Kaldi data dirs.

    utils/prepare_esb.sh --corpus_dir /corpora/esb-datasets-test-only-sorted [--sets ami,tedlium] \\
        [--data_dir data] [--audio_dir data/audio]

Any recipe can add them as test sets: the data dirs are ``data/esb_<set>`` for the 8 sets the leaderboard averages
(``esb_ami``, ``esb_earnings22``, ``esb_gigaspeech``, ``esb_librispeech_test_clean``,
``esb_librispeech_test_other``, ``esb_spgispeech``, ``esb_tedlium``, ``esb_voxpopuli``). Decode them with
``--test_sets "... esb_ami ..."`` and score them with ``--score_normalize open_asr_leaderboard``: RESULTS.md then
gives each set's RTFx and, when all 8 are scored, their mean WER as the leaderboard reports it
(speechllm.scoring.results).

The local copy has the hub's layout: ``<config>/<split>-00000-of-00015.parquet`` (or ``<config>/<split>/0000.parquet``
from the hub's parquet conversion), e.g. ``ami/test-*.parquet``, ``librispeech/test.clean-*.parquet``, with the
columns audio (the encoded file), text, id and audio_length_s. A hub name works where a hub is reachable.

As the leaderboard's data preparation (normalizer/data_utils.py at the pinned commit of
speechllm.scoring.normalize), utterances whose normalised reference is empty or "ignore time segment in scoring"
are left out (counted in the report); ``text`` keeps the reference as published (cased and punctuated): the
normaliser is applied at scoring. Each utterance is its own speaker (the sets carry none).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDirError, Problem
from speechllm.data.parquet_corpus import (RowError, Schema, Utterance, check_schema, convert_shards, find_shards,
                                           kaldi_id, local_copy, write_data_dir)
from speechllm.scoring.normalize import open_asr_leaderboard_normalization

PROG = "utils/prepare_esb.sh"
HUB_NAME = "hf-audio/esb-datasets-test-only-sorted"
# data dir suffix -> (config, split) of the hub dataset: the 8 sets of the leaderboard's mean WER.
SETS = {
    "ami": ("ami", "test"),
    "earnings22": ("earnings22", "test"),
    "gigaspeech": ("gigaspeech", "test"),
    "librispeech_test_clean": ("librispeech", "test.clean"),
    "librispeech_test_other": ("librispeech", "test.other"),
    "spgispeech": ("spgispeech", "test"),
    "tedlium": ("tedlium", "test"),
    "voxpopuli": ("voxpopuli", "test"),
}
DATA_DIR_PREFIX = "esb_"
SCHEMA = Schema(HUB_NAME, {"audio": "encoded audio", "text": "string", "id": "string",
                           "audio_length_s": "seconds"}, audio_column="audio")
# The leaderboard's is_target_text_in_range: references it does not score.
UNSCORED = ("", "ignore time segment in scoring")


def choose(row: dict[str, Any]) -> Utterance | str:
    raw_id = row["id"] or ""
    if not str(raw_id).strip():
        raise RowError("has an empty id", "download the shard again")
    text = " ".join((row["text"] or "").split())
    if open_asr_leaderboard_normalization(text) in UNSCORED:
        return "with a reference the leaderboard does not score (empty after normalisation)"
    utt = kaldi_id(str(raw_id))
    return Utterance(utt, utt, text)


def set_shards(corpus: Path, name: str) -> list[Path]:
    config, split = SETS[name]
    shards = find_shards(corpus / config, split)
    if not shards:
        raise DataDirError(Problem(
            str(corpus / config), None, f"holds no shards of the '{split}' split of '{config}' (looked for "
            f"{config}/{split}-*.parquet and {config}/{split}/*.parquet)",
            f"download it: huggingface-cli download {HUB_NAME} --repo-type dataset --include '{config}/{split}*' "
            f"--local-dir {corpus}; or leave '{name}' out of --sets"))
    return shards


def parse_sets(text: str) -> list[str]:
    names = [n for n in text.replace(",", " ").split() if n]
    unknown = [n for n in names if n not in SETS]
    if unknown or not names:
        raise DataDirError(Problem("", None, f"--sets: unknown set(s) {', '.join(unknown) or '(none given)'}",
                                   f"give some of {', '.join(SETS)}"))
    return names


def convert(corpus_dir: str, sets: list[str], data_root: Path, audio_dir: Path) -> list[str]:
    """Convert `sets` into data_root/esb_<set>; every set's shards and schema are checked first."""
    corpus = local_copy(corpus_dir, [f"{SETS[n][0]}/{SETS[n][1]}*" for n in sets])
    shards = {name: set_shards(corpus, name) for name in sets}
    for shard in (s for name in sets for s in shards[name]):  # a missing split or a foreign shard stops us here,
        check_schema(shard, SCHEMA)                             # before anything is written
    report = []
    for name in sets:
        dest = data_root / f"{DATA_DIR_PREFIX}{name}"
        done = convert_shards(shards[name], SCHEMA, choose, audio_dir / f"{DATA_DIR_PREFIX}{name}", {})
        write_data_dir(dest, done.files())
        report.append(f"{corpus / SETS[name][0]} ({SETS[name][1]}, {len(shards[name])} shards) -> {dest}: "
                      f"{done.summary()}")
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", required=True, help=f"local copy of {HUB_NAME} (or that hub name)")
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated sets (default: all 8)")
    parser.add_argument("--data_dir", type=Path, default=Path("data"), help="where data dirs esb_<set> go (data)")
    parser.add_argument("--audio_dir", type=Path, default=Path("data/audio"),
                        help="where the FLAC files go, in esb_<set>/<shard>/ (default: data/audio)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        for line in convert(args.corpus_dir, parse_sets(args.sets), args.data_dir, args.audio_dir):
            print(f"prepare_esb: {line}")
        return 0

    return run_tool("prepare_esb", body)


if __name__ == "__main__":
    sys.exit(main())
