"""The Loquacious Set (speechbrain/LoquaciousSet) from a local copy of its parquet shards into Kaldi data dirs.

    python3 -m speechllm.data.loquacious --corpus_dir /corpora/LoquaciousSet --part dev --data_dir data/dev \\
        [--audio_dir data/audio] [--lowercase true] [--per_source true]

The copy holds one folder per part: the training subsets ``small`` (250 h), ``medium`` (2,500 h), ``large``
(25,000 h) and ``clean``, and ``dev`` (15 h) and ``test`` (21 h), each of parquet shards
(``dev/dev-00000-of-00006.parquet``, ...) with the columns ID, duration, wav (the encoded 16 kHz file), spk_id, sex
and text. ``--corpus_dir`` may also be the hub name ``speechbrain/LoquaciousSet`` where a hub is reachable (the
part's shards are fetched into the hub cache); the recipe never needs it.

Writes ``<audio_dir>/<part>/<shard>/<utt>.flac`` (16-bit FLAC, the corpus's rate) and the data dir: ``wav.scp``,
``text`` (whitespace collapsed; lower-cased by default, as the LibriSpeech recipe does for the LLM), ``utt2spk``
(``spk_id``; an utterance without one is its own speaker), ``spk2utt``, ``utt2num_samples``. Utterance ids are the
corpus's IDs (whitespace, '(', ')' and '/' replaced by '_'), prefixed by the speaker unless they start with it, as
Kaldi wants utterances sorted by speaker. Rows with an empty transcript are dropped and counted.

For ``dev`` and ``test`` (``--per_source true``), each utterance's source corpus is derived from its ID as RWTH's
Loquacious setups do (i6_core ``datasets/loquacious.py``, i6_experiments ``users/zeyer/datasets/loquacious.py``):
'PLENARY' in it: VoxPopuli; 'common_voice' in it: CommonVoice; digits and '-' only: LibriSpeech (its dev/test-other
ids SPK-CHAP-UTT); ending in 'wav': YODAS. It is written to ``utt2category``, and one more data dir per source is
written beside the whole one (``data/dev_voxpopuli``, ...), so that each is scored on its own as well as in total.
An ID matching no source or several stops the conversion with the list (the split would be wrong otherwise).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from speechllm.data.cli import parse_bool, run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem
from speechllm.data.parquet_corpus import (RowError, Schema, Utterance, convert_shards, find_shards, kaldi_id,
                                           local_copy, write_data_dir)

PROG = "python3 -m speechllm.data.loquacious"
HUB_NAME = "speechbrain/LoquaciousSet"
TRAIN_SUBSETS = ("small", "medium", "large", "clean")
EVAL_PARTS = ("dev", "test")
SCHEMA = Schema(HUB_NAME, {"ID": "string", "duration": "seconds", "wav": "encoded 16 kHz audio", "spk_id": "string",
                           "sex": "string", "text": "string"}, audio_column="wav")

# The source corpus of a dev/test utterance, from its ID (RWTH's filters, searched anywhere in the ID).
SOURCES = {
    "voxpopuli": re.compile("PLENARY"),
    "commonvoice": re.compile("common_voice"),
    "librispeech": re.compile("^[0-9-]*$"),
    "yodas": re.compile(".wav$"),
}


def source_of(raw_id: str) -> str:
    """The source corpus of a dev/test ID; RowError when no source or several match."""
    found = [name for name, pattern in SOURCES.items() if pattern.search(raw_id)]
    if len(found) != 1:
        what = "matches no source" if not found else f"matches several sources ({', '.join(found)})"
        raise RowError(f"ID '{raw_id}' {what}: the per-source split knows "
                       + "; ".join(f"{name}: /{pattern.pattern}/" for name, pattern in SOURCES.items()),
                       "check that this is the Loquacious dev/test set, or pass --per_source false")
    return found[0]


def utterance_chooser(lowercase: bool, per_source: bool):
    """The row -> Utterance (or reason to drop) function of one conversion."""

    def choose(row: dict[str, Any]) -> Utterance | str:
        raw_id = row["ID"] or ""
        if not raw_id.strip():
            raise RowError("has an empty ID", "download the shard again")
        text = " ".join((row["text"] or "").split())
        if not text:
            return "with an empty transcript"
        base = kaldi_id(raw_id)
        speaker = kaldi_id(row["spk_id"]) if row["spk_id"] and str(row["spk_id"]).strip() else ""
        if not speaker:
            utt = speaker = base
        else:
            utt = base if base.startswith(f"{speaker}-") else f"{speaker}-{base}"
        return Utterance(utt, speaker, text.lower() if lowercase else text,
                         source_of(raw_id) if per_source else "")

    return choose


def part_shards(corpus: Path, part: str) -> list[Path]:
    """The shards of a part: <part>/<split>-*.parquet (split: train for the subsets), else any <part>/*.parquet."""
    folder = corpus / part
    split = "train" if part in TRAIN_SUBSETS else part
    shards = find_shards(folder, split) or sorted(folder.glob("*.parquet"))
    if not shards:
        found = sorted(p.name for p in corpus.iterdir()) if corpus.is_dir() else []
        raise DataDirError(Problem(
            str(folder), None, f"holds no parquet shards of the '{part}' part"
            + (f" ({corpus} holds: {', '.join(found[:12])})" if found else ""),
            f"download it: huggingface-cli download {HUB_NAME} --repo-type dataset --include '{part}/*' "
            f"--local-dir {corpus}"))
    return shards


def convert(corpus_dir: str, part: str, data_dir: Path, audio_dir: Path, lowercase: bool = True,
            per_source: bool = True) -> list[str]:
    """Convert one part; returns the report lines."""
    if part not in TRAIN_SUBSETS + EVAL_PARTS:
        raise DataDirError(Problem("", None, f"--part '{part}' is not a part of the Loquacious Set",
                                   f"give one of {', '.join(TRAIN_SUBSETS + EVAL_PARTS)}"))
    corpus = local_copy(corpus_dir, [f"{part}/*.parquet"])
    shards = part_shards(corpus, part)
    per_source = per_source and part in EVAL_PARTS
    done = convert_shards(shards, SCHEMA, utterance_chooser(lowercase, per_source), audio_dir / part,
                          {"lowercase": lowercase, "per_source": per_source})
    files = done.files()
    write_data_dir(data_dir, files)
    report = [f"{corpus / part} ({len(shards)} shards) -> {data_dir}: {done.summary()}"]
    if per_source:
        whole = DataDir(data_dir, files)
        for source in SOURCES:
            utts = [u.utt for u in done.utterances if u.category == source]
            dest = data_dir.parent / f"{data_dir.name}_{source}"
            if not utts:
                report.append(f"{dest} not made: no {source} utterance in {part}")
                continue
            write_data_dir(dest, whole.select(utts).files_as_written())
            report.append(f"{dest}: {len(utts)} utterances")
    return report


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus_dir", required=True,
                        help=f"local copy of the corpus (the folder holding dev/, test/, small/, ...), or {HUB_NAME}")
    parser.add_argument("--part", required=True, help=f"one of {', '.join(TRAIN_SUBSETS + EVAL_PARTS)}")
    parser.add_argument("--data_dir", type=Path, required=True, help="the data dir to write, e.g. data/dev")
    parser.add_argument("--audio_dir", type=Path, default=Path("data/audio"),
                        help="where the FLAC files go, in <part>/<shard>/ (default: data/audio)")
    parser.add_argument("--lowercase", type=parse_bool, default=True, help="lower-case the transcripts (true)")
    parser.add_argument("--per_source", type=parse_bool, default=True,
                        help="dev/test: write utt2category and one data dir per source corpus (true)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)

    def body() -> int:
        for line in convert(args.corpus_dir, args.part, args.data_dir, args.audio_dir, args.lowercase,
                            args.per_source):
            print(f"loquacious: {line}")
        return 0

    return run_tool("loquacious", body)


if __name__ == "__main__":
    sys.exit(main())
