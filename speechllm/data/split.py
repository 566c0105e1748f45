"""utils/split_data.sh: split a data dir into N valid data dirs, balanced by number of utterances.

    utils/split_data.sh [--per-utt] data/x N

Writes data/x/split{N}/{1..N} (per speaker: a speaker is never split across parts), or, as Kaldi does for
--per-utt, data/x/split{N}utt/{1..N}.
"""
from __future__ import annotations

import argparse
import heapq
import shutil
import sys
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, c_order
from speechllm.data.validate import require_valid

PROG = "utils/split_data.sh"


def split_dir_name(num_parts: int, per_utt: bool) -> str:
    return f"split{num_parts}utt" if per_utt else f"split{num_parts}"


def split_utterances(utts: list[str], num_parts: int) -> list[list[str]]:
    """Contiguous runs whose sizes differ by at most one."""
    count = len(utts)
    return [utts[i * count // num_parts:(i + 1) * count // num_parts] for i in range(num_parts)]


def split_speakers(utts_of_speaker: dict[str, list[str]], num_parts: int) -> list[list[str]]:
    """Whole speakers into parts: largest speaker first into the part with fewest utterances (deterministic)."""
    order = sorted(utts_of_speaker, key=lambda spk: (-len(utts_of_speaker[spk]), c_order(spk)))
    parts: list[list[str]] = [[] for _ in range(num_parts)]
    sizes = [(0, index) for index in range(num_parts)]
    for spk in order:
        size, index = heapq.heappop(sizes)
        parts[index] += utts_of_speaker[spk]
        heapq.heappush(sizes, (size + len(utts_of_speaker[spk]), index))
    return parts


def split_data(path: str | Path, num_parts: int, per_utt: bool = False, out_root: str | Path | None = None
               ) -> list[Path]:
    """Write the parts (under data/x/split{N}[utt] unless out_root is given) and return their paths."""
    path = Path(path)
    require_valid(path)
    data = DataDir.read(path)
    utts = sorted(data.utt_ids, key=c_order)
    if num_parts < 1:
        raise DataDirError(Problem(str(path), None, f"cannot split into {num_parts} parts", "give N >= 1"))
    if per_utt:
        if num_parts > len(utts):
            raise DataDirError(Problem(str(path), None, f"has {len(utts)} utterances, too few for {num_parts} "
                                       "parts", f"use at most {len(utts)} parts"))
        parts = split_utterances(utts, num_parts)
    else:
        utts_of_speaker: dict[str, list[str]] = {}
        for utt in utts:
            utts_of_speaker.setdefault(data.files["utt2spk"][utt], []).append(utt)
        if num_parts > len(utts_of_speaker):
            raise DataDirError(Problem(
                str(path), None, f"has {len(utts_of_speaker)} speakers, too few for {num_parts} parts: a speaker is "
                "never split across parts", f"use --per-utt to split by utterance, or at most "
                f"{len(utts_of_speaker)} parts"))
        parts = split_speakers(utts_of_speaker, num_parts)
    root = Path(out_root) if out_root is not None else path / split_dir_name(num_parts, per_utt)
    if root.exists():
        shutil.rmtree(root)  # parts of an earlier split, possibly of other data
    part_dirs = []
    for index, part in enumerate(parts, 1):
        part_dir = root / str(index)
        data.select(part).write(part_dir)
        part_dirs.append(part_dir)
    return part_dirs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Split a data dir into N parts.")
    parser.add_argument("--per-utt", action="store_true",
                        help="split by utterance (into split{N}utt); default: whole speakers into split{N}")
    parser.add_argument("data_dir")
    parser.add_argument("num_parts", type=int)
    args = parser.parse_args(argv)

    def body() -> int:
        parts = split_data(args.data_dir, args.num_parts, args.per_utt)
        print(f"{PROG}: wrote {len(parts)} parts under {parts[0].parent}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
