"""Summarise every ``EXP_DIR/**/score_{wer,cer}/result.txt`` into one markdown RESULTS.md.

    python -m speechllm.bin.make_results exp/asr_train_x [--out exp/asr_train_x/RESULTS.md]

One table per metric (WER, CER) with a row per decode directory and test set:
dataset, Snt, Wrd (or Chr), Corr, Sub, Del, Ins, Err, S.Err, as ESPnet's RESULTS.md,
preceded by the environment (date, python/torch versions, git commit).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechllm.scoring.results import collect, to_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("exp_dir", type=Path, help="experiment directory to search")
    parser.add_argument("--out", type=Path, default=None, help="output file (default: EXP_DIR/RESULTS.md)")
    args = parser.parse_args(argv)
    if not args.exp_dir.is_dir():
        print(f"make_results: error: {args.exp_dir} is not a directory", file=sys.stderr)
        return 1
    try:
        summaries = collect(args.exp_dir)
    except ValueError as err:
        print(f"make_results: error: {err}", file=sys.stderr)
        return 1
    if not summaries:
        print(f"make_results: error: no score_wer/result.txt or score_cer/result.txt under {args.exp_dir}; "
              "run python -m speechllm.bin.score_text first", file=sys.stderr)
        return 1
    out = args.out or args.exp_dir / "RESULTS.md"
    out.write_text(to_markdown(args.exp_dir, summaries), encoding="utf-8")
    print(f"make_results: {len(summaries)} result(s) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
