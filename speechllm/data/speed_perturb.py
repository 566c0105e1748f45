"""utils/perturb_data_dir_speed.sh: a speed-perturbed copy of a data dir, Kaldi style.

    utils/perturb_data_dir_speed.sh 0.9 data/x data/x_sp0.9
    utils/perturb_data_dir_speed.sh --factors "0.9 1.0 1.1" data/x data/x_sp    # all copies in one dir

Utterance, speaker and recording ids get the prefix `sp0.9-` (factor 1.0 keeps the original ids, as ESPnet does),
utt2uniq maps each copy to its original, segment times and durations scale by 1/factor. The audio is not written
here: each wav.scp entry becomes the pipe `python3 -m speechllm.data.speed 0.9 <entry> |`, which any wav.scp reader
can run and which utils/dump_audio.sh applies in-process (resampling with scipy's polyphase filter: tempo and pitch
change together, as sox `speed`).
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

from speechllm.data.audio import parse_speed_factor, perturbed_length, speed_pipe
from speechllm.data.cli import run_tool
from speechllm.data.combine import merge_data_dirs
from speechllm.data.datadir import DataDir, DataDirError, Problem, format_seconds
from speechllm.data.validate import require_valid

PROG = "utils/perturb_data_dir_speed.sh"
# Describe the unperturbed audio, or video the speed pipe does not change: cannot be carried over.
UNPERTURBED_ONLY = ("feats.scp", "utt2num_frames", "video.scp", "roi.scp")


def perturbed_value(name: str, value: str, prefix: str, factor: Fraction, factor_text: str) -> str:
    """The value of a line of file `name` in the perturbed copy."""
    if name == "utt2spk":
        return prefix + value
    if name == "wav.scp":
        return speed_pipe(factor_text, value)
    if name == "segments":
        recording, start, end = value.split()
        return f"{prefix}{recording} {format_seconds(float(start) / factor)} {format_seconds(float(end) / factor)}"
    if name in ("utt2dur", "reco2dur"):
        return format_seconds(float(value) / factor)
    if name == "utt2num_samples":
        return str(perturbed_length(int(value), factor))
    return value  # text, utt2uniq (still the original's), utt2lang, spk2gender, ...


def perturb_data_dir(data: DataDir, factor_text: str) -> tuple[DataDir, list[str]]:
    """The perturbed copy (in memory) and notes on files left out."""
    try:
        factor = parse_speed_factor(factor_text)
    except ValueError as error:
        raise DataDirError(Problem(PROG, None, str(error), "give factors such as 0.9 1.0 1.1")) from None
    if factor == 1:  # the original, with utt2uniq as the perturbed copies have
        files = {name: entries for name, entries in data.files.items() if name != "spk2utt"}
        files.setdefault("utt2uniq", {utt: utt for utt in data.utt_ids})
        return DataDir(data.path, files, data.lines), []
    prefix = f"sp{factor_text}-"
    files: dict[str, dict[str, str]] = {}
    notes = []
    for name, entries in data.files.items():
        if name == "spk2utt":
            continue  # regenerated from utt2spk when written
        if name in UNPERTURBED_ONLY or (name == "utt2num_samples" and data.has_segments):
            notes.append(f"{name} left out of the sp{factor_text} copy: it describes the unperturbed audio "
                         "(utils/dump_audio.sh writes utt2num_samples anew)")
            continue
        files[name] = {prefix + key: perturbed_value(name, value, prefix, factor, factor_text)
                       for key, value in entries.items()}
    files.setdefault("utt2uniq", {prefix + utt: utt for utt in data.utt_ids})
    return DataDir(None, files), notes


def perturb_speed(src: str | Path, dest: str | Path, factor_texts: list[str]) -> tuple[DataDir, list[str]]:
    """Write to `dest` the copies of `src` at each factor, merged; returns the result and notes."""
    if Path(src).resolve() == Path(dest).resolve():
        raise DataDirError(Problem(str(dest), None, "is also the source", "write the perturbed copy to a new dir"))
    repeated = sorted({f for f in factor_texts if factor_texts.count(f) > 1})
    if repeated:
        raise DataDirError(Problem(PROG, None, f"factor(s) {' '.join(repeated)} given twice", "list each once"))
    require_valid(src)
    data = DataDir.read(src)
    copies, notes = [], []
    for factor_text in factor_texts:
        copy, copy_notes = perturb_data_dir(data, factor_text)
        copies.append(copy)
        notes += copy_notes
    merged, merge_notes = merge_data_dirs(copies)
    return merged, notes + merge_notes + merged.write(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Speed-perturb a data dir (Kaldi conventions).",
                                     usage=f"{PROG} [--factors 'F1 F2 ...'] [FACTOR] data/src data/dest")
    parser.add_argument("--factors", help="several factors, all copies in one dir, e.g. \"0.9 1.0 1.1\"")
    parser.add_argument("args", nargs="+", metavar="FACTOR data/src data/dest")
    args = parser.parse_args(argv)
    if args.factors is not None and len(args.args) == 2:
        factors, (src, dest) = args.factors.split(), args.args
    elif args.factors is None and len(args.args) == 3:
        factors, src, dest = [args.args[0]], args.args[1], args.args[2]
    else:
        parser.error("give FACTOR data/src data/dest, or --factors \"F1 F2 ...\" data/src data/dest")
    if not factors:
        parser.error("--factors is empty")

    def body() -> int:
        merged, notes = perturb_speed(src, dest, factors)
        for note in notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        print(f"{PROG}: wrote {dest}: {len(merged.utt_ids)} utterances (factors {' '.join(factors)}); the audio "
              "changes speed when read (wav.scp pipes through python3 -m speechllm.data.speed), e.g. by "
              "utils/dump_audio.sh")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
