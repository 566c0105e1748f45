"""utils/subset_data_dir.sh: copy part of a data dir, keeping every file consistent.

    utils/subset_data_dir.sh (--utt-list FILE | --spk-list FILE | --first N | --last N | --random N [--seed S])
                             data/src data/dest

With segments, wav.scp (and reco2dur) keep only the recordings the chosen utterances need.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, c_order, read_lines_or_stdin
from speechllm.data.validate import require_valid

PROG = "utils/subset_data_dir.sh"


def read_id_list(path: str) -> list[str]:
    """First field of each non-empty line (so a utt2spk or text file works as a list too)."""
    ids = []
    for lineno, raw in enumerate(read_lines_or_stdin(path), 1):
        try:
            fields = raw.decode("utf-8").split()
        except UnicodeDecodeError:
            raise DataDirError(Problem(path, lineno, "is not valid UTF-8", "convert the list to UTF-8")) from None
        if fields:
            ids.append(fields[0])
    return ids


def pick_listed(wanted: list[str], available: list[str], what: str, list_file: str) -> tuple[list[str], str]:
    """The listed ids that exist, and a note counting those that do not."""
    known = set(available)
    found = [i for i in dict.fromkeys(wanted) if i in known]
    absent = [i for i in dict.fromkeys(wanted) if i not in known]
    note = ""
    if absent:
        note = (f"{len(absent)} of {len(set(wanted))} {what}s in {list_file} are not in the source "
                f"(e.g. '{absent[0]}'): skipped")
    return found, note


def choose(data: DataDir, how: str, value: str | int, seed: int) -> tuple[list[str], str]:
    """Utterance ids to keep, and a note for the user. `how` is the option name: utt-list, spk-list, first,
    last or random."""
    utts = sorted(data.utt_ids, key=c_order)
    if how == "utt-list":
        return pick_listed(read_id_list(str(value)), utts, "utterance", str(value))
    if how == "spk-list":
        utt2spk = data.files["utt2spk"]
        speakers, note = pick_listed(read_id_list(str(value)), list(utt2spk.values()), "speaker", str(value))
        chosen = set(speakers)
        return [u for u in utts if utt2spk[u] in chosen], note
    count = int(value)
    if count > len(utts):
        raise DataDirError(Problem(str(data.path), None, f"has {len(utts)} utterances, fewer than --{how} {count}",
                                   f"ask for at most {len(utts)}"))
    if how == "first":
        return utts[:count], ""
    if how == "last":
        return utts[-count:], ""
    return random.Random(seed).sample(utts, count), ""


def subset_data_dir(src: str | Path, dest: str | Path, how: str, value: str | int, seed: int = 0
                    ) -> tuple[int, int, list[str]]:
    """Write the subset chosen by option `how` (utt-list, spk-list, first, last, random) with `value`;
    returns (kept, total, notes)."""
    if Path(src).resolve() == Path(dest).resolve():
        raise DataDirError(Problem(str(dest), None, "is also the source", "write the subset to a new dir"))
    require_valid(src)
    data = DataDir.read(src)
    utts, note = choose(data, how, value, seed)
    if not utts:
        raise DataDirError(Problem(str(src), None, "no utterance was selected (nothing written)",
                                   "check the list against the source's ids"))
    notes = [note] if note else []
    return len(utts), len(data.utt_ids), notes + data.select(utts).write(dest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Copy part of a data dir.")
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--utt-list", metavar="FILE", help="keep these utterances (first field of each line)")
    how.add_argument("--spk-list", metavar="FILE", help="keep all utterances of these speakers")
    how.add_argument("--first", type=int, metavar="N", help="the first N utterances (in sorted order)")
    how.add_argument("--last", type=int, metavar="N", help="the last N utterances")
    how.add_argument("--random", type=int, metavar="N", help="N utterances drawn at random (see --seed)")
    parser.add_argument("--seed", type=int, default=0, help="random seed for --random (default 0)")
    parser.add_argument("src")
    parser.add_argument("dest")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    how = next(o for o in ("utt_list", "spk_list", "first", "last", "random") if getattr(args, o) is not None)
    value = getattr(args, how)
    if how in ("first", "last", "random") and value < 1:
        parser.error(f"--{how} needs a positive number")

    def body() -> int:
        kept, total, notes = subset_data_dir(args.src, args.dest, how.replace("_", "-"), value, args.seed)
        for note in notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        print(f"{PROG}: kept {kept} of {total} utterances in {args.dest}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
