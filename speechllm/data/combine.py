"""utils/combine_data.sh: merge data dirs into one; an utterance id in two sources is an error.

    utils/combine_data.sh data/dest data/src1 data/src2 ...

As in Kaldi, a file missing from some sources (e.g. utt2dur) is left out of the result, with a note.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, die_on
from speechllm.data.validate import require_valid

PROG = "utils/combine_data.sh"
DISTINCT_IDS = ("give the sources distinct ids (e.g. prefix each corpus' ids with its name), or leave one copy out "
                "with utils/subset_data_dir.sh")


def label(data: DataDir) -> str:
    return str(data.path) if data.path else "(generated)"


def merge_file(name: str, sources: list[DataDir]) -> tuple[dict[str, str], list[Problem]]:
    """Union of file `name` of all sources. Utterances must be unique; a speaker or recording may recur with the
    same value (a speaker in two corpora, a recording segmented twice)."""
    merged: dict[str, str] = {}
    origin: dict[str, DataDir] = {}
    problems = []
    level = sources[0].level(name)
    for data in sources:
        for key, value in data.files[name].items():
            if key not in merged:
                merged[key], origin[key] = value, data
                continue
            first_file, first_line = origin[key].where(name, key)
            file, line = data.where(name, key)
            if level == "utt" and name == "utt2spk":  # reported once per utterance, not once per file
                problems.append(Problem(file, line, f"utterance '{key}' is also in {first_file} line {first_line}",
                                        DISTINCT_IDS, kind="repeated utterance"))
            elif level != "utt" and merged[key] != value:
                what = "speaker" if level == "spk" else "recording"
                problems.append(Problem(file, line, f"{what} '{key}' is '{value}' here but '{merged[key]}' in "
                                        f"{first_file} line {first_line}", DISTINCT_IDS, kind=f"repeated {what}"))
    return merged, problems


def merge_data_dirs(sources: list[DataDir]) -> tuple[DataDir, list[str]]:
    """The merged data dir and notes on files left out. Raises DataDirError on clashing ids."""
    with_segments = [label(d) for d in sources if d.has_segments]
    if with_segments and len(with_segments) != len(sources):
        without = [label(d) for d in sources if not d.has_segments]
        raise DataDirError(Problem(", ".join(without), None, f"has no segments file but {with_segments[0]} has one",
                                   "dump the sources with segments first (utils/dump_audio.sh cuts them), so all "
                                   "have one audio file per utterance"))
    names = [n for n in dict.fromkeys(n for d in sources for n in d.files) if n != "spk2utt"]
    files: dict[str, dict[str, str]] = {}
    notes: list[str] = []
    problems: list[Problem] = []
    for name in names:
        missing = [label(d) for d in sources if name not in d.files]
        if missing:
            notes.append(f"{name} left out: missing from {', '.join(missing)}")
            continue
        files[name], clashes = merge_file(name, sources)
        problems += clashes
    die_on(problems)
    return DataDir(None, files), notes


def combine_data(dest: str | Path, sources: list[str | Path]) -> list[str]:
    dest = Path(dest)
    if any(Path(s).resolve() == dest.resolve() for s in sources):
        raise DataDirError(Problem(str(dest), None, "is also a source", "write the combination to a new dir"))
    for source in sources:
        require_valid(source)
    merged, notes = merge_data_dirs([DataDir.read(s) for s in sources])
    return notes + merged.write(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Merge data dirs into one.")
    parser.add_argument("dest")
    parser.add_argument("sources", nargs="+")
    args = parser.parse_args(argv)

    def body() -> int:
        for note in combine_data(args.dest, args.sources):
            print(f"{PROG}: note: {note}", file=sys.stderr)
        print(f"{PROG}: combined {len(args.sources)} data dirs into {args.dest}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
