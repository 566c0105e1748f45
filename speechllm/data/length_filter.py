"""utils/filter_data_dir.sh: copy a data dir without utterances that are too short, too long or too wordy.

    utils/filter_data_dir.sh [--min_duration 0.1] [--max_duration 30] [--max_text_words 500] [--fs 16000]
                             data/in data/out

Durations come from utt2num_samples (divided by --fs) or else utt2dur. Prints "kept K of N utterances; removed:
..." and lists each removed id with its reason in data/out/filtered_out.txt.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, c_order, format_seconds
from speechllm.data.validate import require_valid

PROG = "utils/filter_data_dir.sh"
FILTERED_OUT = "filtered_out.txt"


@dataclass(frozen=True)
class Limits:
    min_duration: float = 0.1
    max_duration: float = 30.0
    max_text_words: int = 500
    fs: int = 16000

    def reasons(self) -> dict[str, str]:
        """Reason key -> how the summary names it."""
        return {"short": f"shorter than {format_seconds(self.min_duration)} s",
                "long": f"longer than {format_seconds(self.max_duration)} s",
                "wordy": f"longer than {self.max_text_words} words"}


@dataclass
class FilterReport:
    total: int = 0
    kept: int = 0
    removed: dict[str, str] = field(default_factory=dict)  # utt -> reason with its value
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def summary(self, limits: Limits) -> str:
        reasons = ", ".join(f"{self.counts[key]} {name}" for key, name in limits.reasons().items())
        return f"kept {self.kept} of {self.total} utterances; removed: {reasons}"


def durations_of(data: DataDir, fs: int) -> dict[str, float]:
    if "utt2num_samples" in data.files:
        return {utt: int(n) / fs for utt, n in data.files["utt2num_samples"].items()}
    if "utt2dur" in data.files:
        return {utt: float(d) for utt, d in data.files["utt2dur"].items()}
    raise DataDirError(Problem(str(data.path), None, "has neither utt2num_samples nor utt2dur, so durations are "
                               "unknown", "dump the audio first (utils/dump_audio.sh writes utt2num_samples)"))


def why_removed(duration: float, words: int | None, limits: Limits) -> tuple[str, str] | None:
    if duration < limits.min_duration:
        return "short", f"{format_seconds(duration)} s"
    if duration > limits.max_duration:
        return "long", f"{format_seconds(duration)} s"
    if words is not None and words > limits.max_text_words:
        return "wordy", f"{words} words"
    return None


def filter_data_dir(src: str | Path, dest: str | Path, limits: Limits) -> FilterReport:
    src, dest = Path(src), Path(dest)
    if src.resolve() == dest.resolve():
        raise DataDirError(Problem(str(dest), None, "is also the source", "write the filtered copy to a new dir"))
    if limits.min_duration > limits.max_duration:
        raise DataDirError(Problem("--min_duration", None, f"{limits.min_duration} exceeds --max_duration "
                                   f"{limits.max_duration}", "give min_duration <= max_duration"))
    require_valid(src)
    data = DataDir.read(src)
    durations = durations_of(data, limits.fs)
    text = data.files.get("text")
    report = FilterReport(total=len(data.utt_ids))
    if text is None:
        report.notes.append(f"{src} has no text: --max_text_words not applied")
    kept = []
    names = limits.reasons()
    for utt in sorted(data.utt_ids, key=c_order):
        verdict = why_removed(durations[utt], len(text[utt].split()) if text else None, limits)
        if verdict:
            key, value = verdict
            report.removed[utt] = f"{names[key]} ({value})"
            report.counts[key] += 1
        else:
            kept.append(utt)
    report.kept = len(kept)
    if not kept:
        raise DataDirError(Problem(str(src), None, f"all {report.total} utterances were filtered out "
                                   f"({report.summary(limits)}); nothing written",
                                   "check --fs (utt2num_samples counts samples at that rate) and the limits"))
    report.notes += data.select(kept).write(dest)
    with open(dest / FILTERED_OUT, "w", encoding="utf-8") as stream:
        stream.writelines(f"{utt} {reason}\n" for utt, reason in report.removed.items())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Drop utterances outside length limits.")
    parser.add_argument("--min_duration", type=float, default=Limits.min_duration, help="seconds (default 0.1)")
    parser.add_argument("--max_duration", type=float, default=Limits.max_duration, help="seconds (default 30)")
    parser.add_argument("--max_text_words", type=int, default=Limits.max_text_words,
                        help="most words in the transcript (default 500)")
    parser.add_argument("--fs", type=int, default=Limits.fs, help="sample rate of utt2num_samples (default 16000)")
    parser.add_argument("src")
    parser.add_argument("dest")
    args = parser.parse_args(argv)
    limits = Limits(args.min_duration, args.max_duration, args.max_text_words, args.fs)

    def body() -> int:
        report = filter_data_dir(args.src, args.dest, limits)
        for note in report.notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        print(f"{PROG}: {args.dest}: {report.summary(limits)} (list: {Path(args.dest) / FILTERED_OUT})")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
