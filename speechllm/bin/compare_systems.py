#!/usr/bin/env python3
"""One table of several systems' decodes side by side: WER per test set and decoding speed.

    python -m speechllm.bin.compare_systems --sets dev test \
        --system "speech LLM + CTC=exp/train/decode_decode_valid.acc.ave" \
        --system "AM alone=exp/train_am/decode_am_valid.acc.ave" \
        --system "AM + LLM rescoring=exp/train_am/decode_am_nbest_valid.acc.ave_rescore_llm_init"

Each system is ``NAME=DECODE_ROOT``: a folder holding one scored decode per set (``DECODE_ROOT/<set>/score_wer``,
stage 10). Speed is that of the last set: its utterances over the wall-clock time of its decoding jobs (the longest
``decode.*.log``, which run in parallel; model loading included); for a rescoring (``rescoring.yaml``) the n-best
decode's time plus the rescoring job's (one job for every set, its LM loading and dev tuning included). Weights a
rescoring tuned on dev are shown beside its name. Writes markdown to stdout (and ``--output``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import yaml

from speechllm.scoring.results import job_seconds, parse_result



def log_seconds(log: Path) -> float:
    seconds = job_seconds(log)
    if seconds is None:
        raise ValueError(f"{log} has no 'elapsed time' footer: the job did not finish; run it again")
    return seconds


def decode_seconds(set_dir: Path) -> float:
    """Wall-clock seconds of one set's decoding: its parallel jobs' longest log, or for a rescoring the n-best decode's
    plus the rescoring job's."""
    rescoring = set_dir / "rescoring.yaml"
    if rescoring.is_file():
        record = yaml.safe_load(rescoring.read_text())
        return decode_seconds(Path(record["nbest_dir"])) + log_seconds(set_dir.parent / "rescore.log")
    logs = sorted((set_dir / "logdir").glob("decode.*.log"))
    if not logs:
        raise FileNotFoundError(f"{set_dir}/logdir has no decode.*.log: was {set_dir} decoded by stage 9?")
    return max(log_seconds(log) for log in logs)


def system_row(name: str, root: Path, sets: List[str]) -> Tuple[str, List[Optional[float]], str]:
    wers: List[Optional[float]] = []
    for name_of_set in sets:
        result = root / name_of_set / "score_wer/result.txt"
        if not result.is_file():
            raise FileNotFoundError(f"system '{name}': {result} is missing: score the decode first (stage 10)")
        wers.append(parse_result(result)[3][4])
    last = root / sets[-1]
    utterances = sum(1 for _ in (last / "text").open(encoding="utf-8"))
    seconds = decode_seconds(last)
    speed = f"{utterances / seconds:.2f} ({utterances} in {seconds:.0f} s)"
    rescoring = last / "rescoring.yaml"
    if rescoring.is_file():
        record = yaml.safe_load(rescoring.read_text())
        name += f" (lm_weight {record['lm_weight']:g}, length_bonus {record['length_bonus']:g}, tuned on dev)"
    return name, wers, speed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", action="append", required=True, help="NAME=DECODE_ROOT; repeatable, in order")
    parser.add_argument("--sets", nargs="+", required=True, help="test sets (columns); speed is the last one's")
    parser.add_argument("--output", help="also write the table to this file")
    args = parser.parse_args(argv)
    rows = []
    try:
        for spec in args.system:
            name, sep, root = spec.partition("=")
            if not sep or not name or not root:
                raise ValueError(f"--system {spec!r}: expected NAME=DECODE_ROOT")
            rows.append(system_row(name, Path(root), args.sets))
    except (FileNotFoundError, ValueError) as error:
        print(f"compare_systems: error: {error}", file=sys.stderr)
        return 1
    header = ["system", *(f"{s} WER (%)" for s in args.sets), f"{args.sets[-1]} utterances/s (wall)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    for name, wers, speed in rows:
        lines.append("| " + " | ".join([name, *(f"{w:.1f}" for w in wers), speed]) + " |")
    table = "\n".join(lines) + "\n"
    sys.stdout.write(table)
    if args.output:
        Path(args.output).write_text(table, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
