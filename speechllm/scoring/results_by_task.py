"""An audio-visual model's one table: WER (%) of each decoding task (rows) on each test set (columns: clean, then
noise at falling SNR), read from stage 10's score_wer/result.txt of the decode dirs that the template's av.sh makes
(``<model_dir>/decode_decode_task<task>_<model>/<set>``). A decode not made yet shows as a dash.

    python -m speechllm.scoring.results_by_task --model_dir exp/train --tasks "asr vsr avsr" \
        --test_sets "test_clean test_snr10 test_snr0"
"""
from __future__ import annotations

import argparse
from pathlib import Path

from speechllm.scoring.results import parse_result

COLUMN_NAMES = {"test_clean": "clean"}


def column_name(test_set: str) -> str:
    return COLUMN_NAMES.get(test_set, test_set.replace("test_snr", "") + " dB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model_dir", default="exp/train")
    parser.add_argument("--decode_prefix", default="decode_decode_task", help="decode dir name before the task")
    parser.add_argument("--inference_model", default="valid.acc.ave")
    parser.add_argument("--tasks", default="asr vsr avsr")
    parser.add_argument("--test_sets", default="test_clean test_snr10 test_snr5 test_snr0 test_snr-5")
    args = parser.parse_args()
    test_sets = args.test_sets.split()
    print("| task | " + " | ".join(column_name(s) for s in test_sets) + " |")
    print("| --- |" + " ---: |" * len(test_sets))
    for task in args.tasks.split():
        cells = []
        for test_set in test_sets:
            result = (Path(args.model_dir) / f"{args.decode_prefix}{task}_{args.inference_model}" / test_set
                      / "score_wer" / "result.txt")
            cells.append(f"{parse_result(result)[3][4]:.1f}" if result.is_file() else "-")  # Err
        print(f"| {task.upper()} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
