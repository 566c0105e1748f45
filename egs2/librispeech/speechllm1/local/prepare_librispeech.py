#!/usr/bin/env python3
"""Convert one LibriSpeech subset into a Kaldi data dir (as Kaldi's egs/librispeech/s5/local/data_prep.sh does).

    python3 local/prepare_librispeech.py [--lowercase true] /corpora/LibriSpeech/dev-clean data/dev_clean

The subset holds ``SPK/CHAP/SPK-CHAP-UTT.flac`` and one ``SPK/CHAP/SPK-CHAP.trans.txt`` per chapter, whose lines
are ``SPK-CHAP-UTT WORDS``. Writes ``wav.scp`` (absolute flac paths, read directly), ``text``, ``utt2spk`` (the
speaker is ``SPK-CHAP``: Kaldi's choice, so that per-speaker normalisation and sclite's per-speaker table work per
chapter) and ``spk2utt``, all sorted as ``LC_ALL=C sort``. A transcript without its flac, a flac without a
transcript, an empty transcript or a misplaced file stops the conversion with every such problem listed: they mean
a damaged or partial extraction, and dropping them silently would change the test sets.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from speechllm.data.cli import parse_bool
from speechllm.data.datadir import Problem, format_problems, spk2utt_from_utt2spk, write_kv

UTT_ID = re.compile(r"^(\d+)-(\d+)-(\d+)$")


def damaged(file: Path, line: int | None, message: str, kind: str) -> Problem:
    """A problem that only a damaged or partial extraction causes."""
    return Problem(str(file), line, message, "re-extract this subset from its openslr.org/12 archive", kind=kind)


def read_transcripts(trans: Path, speaker: str, chapter: str, lowercase: bool,
                     problems: list[Problem]) -> dict[str, str]:
    """utterance id -> words of one chapter's SPK-CHAP.trans.txt; problems are appended, naming file and line."""
    texts = {}
    for number, line in enumerate(trans.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        utt, words = (line.split(maxsplit=1) + [""])[:2]
        match = UTT_ID.match(utt)
        if not match or match.group(1, 2) != (speaker, chapter):
            problems.append(damaged(trans, number, f"'{utt}' is not an utterance id {speaker}-{chapter}-NNNN",
                                    "bad id"))
        elif not words.strip():
            problems.append(damaged(trans, number, f"'{utt}' has an empty transcript", "empty"))
        elif utt in texts:
            problems.append(damaged(trans, number, f"'{utt}' is transcribed twice", "duplicate"))
        else:
            words = " ".join(words.split())
            texts[utt] = words.lower() if lowercase else words
    return texts


def convert_subset(subset: Path, lowercase: bool) -> tuple[dict[str, dict[str, str]], list[Problem]]:
    """The data dir files (name -> id -> value) of one subset, and what is wrong with it."""
    problems: list[Problem] = []
    files: dict[str, dict[str, str]] = {"wav.scp": {}, "text": {}, "utt2spk": {}}
    for chapter_dir in sorted(p for p in subset.glob("*/*") if p.is_dir()):
        speaker, chapter = chapter_dir.parent.name, chapter_dir.name
        trans = chapter_dir / f"{speaker}-{chapter}.trans.txt"
        flacs = {p.stem: p for p in chapter_dir.glob("*.flac")}
        if not trans.is_file():
            problems.append(damaged(trans, None, f"missing: {len(flacs)} flac files have no transcript", "no trans"))
            continue
        texts = read_transcripts(trans, speaker, chapter, lowercase, problems)
        for utt in sorted(set(texts) - set(flacs)):
            problems.append(damaged(chapter_dir / f"{utt}.flac", None, f"missing, but transcribed in {trans.name}",
                                    "no flac"))
        for utt in sorted(set(flacs) - set(texts)):
            problems.append(damaged(flacs[utt], None, f"has no line in {trans.name}", "no text"))
        for utt in sorted(set(texts) & set(flacs)):
            files["wav.scp"][utt] = str(flacs[utt].resolve())
            files["text"][utt] = texts[utt]
            files["utt2spk"][utt] = f"{speaker}-{chapter}"
    if not files["wav.scp"] and not problems:
        problems.append(Problem(str(subset), None, "holds no SPK/CHAP/*.flac files",
                                "point to an extracted LibriSpeech subset, e.g. .../LibriSpeech/dev-clean"))
    return files, problems


def write_data_dir(out: Path, files: dict[str, dict[str, str]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, mapping in files.items():
        write_kv(out / name, mapping)
    write_kv(out / "spk2utt", spk2utt_from_utt2spk(files["utt2spk"]))


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lowercase", type=parse_bool, default=True,
                        help="lower-case the (upper-case) LibriSpeech transcripts (default: true)")
    parser.add_argument("subset_dir", type=Path, help="an extracted subset, e.g. /corpora/LibriSpeech/dev-clean")
    parser.add_argument("data_dir", type=Path, help="the Kaldi data dir to write, e.g. data/dev_clean")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if not args.subset_dir.is_dir():
        print(f"prepare_librispeech.py: {args.subset_dir} is not a folder", file=sys.stderr)
        return 1
    files, problems = convert_subset(args.subset_dir, args.lowercase)
    if problems:
        print(f"prepare_librispeech.py: {args.subset_dir}: {len(problems)} problem(s), nothing written:",
              file=sys.stderr)
        for line in format_problems(problems):
            print(f"  {line}", file=sys.stderr)
        return 1
    write_data_dir(args.data_dir, files)
    speakers = len(set(files["utt2spk"].values()))
    words = sum(len(t.split()) for t in files["text"].values())
    print(f"prepare_librispeech.py: {args.subset_dir} -> {args.data_dir}: {len(files['text'])} utterances, "
          f"{speakers} speakers (speaker-chapters), {words} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
