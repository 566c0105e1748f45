"""utils/fix_data_dir.sh: make a data dir valid by sorting and by dropping what cannot be kept, with a report.

    utils/fix_data_dir.sh [--allow-empty-text] data/x

Sorts every file (C byte order), keeps the first line of a repeated id, drops malformed lines, utterances missing
from any utterance-level file, utterances whose recording is missing, empty transcripts (unless
--allow-empty-text), and recordings/speakers left without utterances; regenerates spk2utt. The original files go to
data/x/.backup/, and data/x/.backup/removed.txt lists every removed id with its reason. Running it again is harmless: a
dir that needs no change is left alone (files and backup), and a later run that does change something keeps the
first backup and puts its own originals in data/x/.backup.2/ (then .backup.3/, ...).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import (
    KNOWN_FILES, DataDir, DataDirError, Problem, c_order, file_level, format_problems, kv_lines, order_problems,
    read_entries)
from speechllm.data.validate import validate_data_dir

PROG = "utils/fix_data_dir.sh"
BACKUP = ".backup"


@dataclass
class FixReport:
    total: int = 0  # utterances seen in any utterance-level file
    kept: int = 0
    removed: list[tuple[str, str]] = field(default_factory=list)  # (id, reason), written to removed.txt
    utt_reasons: Counter = field(default_factory=Counter)  # why utterances went: reason -> count
    line_reasons: Counter = field(default_factory=Counter)  # lines, recordings, speakers dropped
    sorted_files: list[str] = field(default_factory=list)
    crlf_files: list[str] = field(default_factory=list)
    backup: Path | None = None  # where this run put the originals; None: nothing needed changing

    def summary(self, path: Path) -> list[str]:
        if self.backup is None:
            return [f"{path}: nothing to fix: all {self.kept} utterances kept, files already sorted and consistent; "
                    "nothing written (backups left as they were)"]
        removed = self.total - self.kept
        first = f"{path}: kept {self.kept} of {self.total} utterances"
        if removed:
            first += f"; removed {removed}: " + ", ".join(f"{n} {why}" for why, n in self.utt_reasons.most_common())
        lines = [first]
        other = [f"{n} {why}" for why, n in self.line_reasons.most_common()]
        if other:
            lines.append("also dropped " + ", ".join(other))
        if self.sorted_files:
            lines.append("sorted (LC_ALL=C): " + ", ".join(self.sorted_files))
        if self.crlf_files:
            lines.append("removed Windows line endings from: " + ", ".join(self.crlf_files))
        lines.append(f"originals in {self.backup}/, removed ids with reasons in {self.backup / 'removed.txt'}")
        return lines


def read_leniently(path: Path, name: str, report: FixReport) -> dict[str, str]:
    """First line of each id; what is dropped goes into the report."""
    entries, problems = read_entries(path / name)
    for problem in problems:
        if problem.kind == "crlf":
            if name not in report.crlf_files:
                report.crlf_files.append(name)
            continue
        report.removed.append((problem.key or "-", f"{name} line {problem.line}: {problem.message}"))
        report.line_reasons[f"{problem.kind} line(s) in {name}"] += 1
    if order_problems(entries, str(path / name)):
        report.sorted_files.append(name)
    values: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for entry in entries:
        if entry.key in values:
            report.removed.append((entry.key, f"{name} line {entry.line}: repeats line {first_line[entry.key]} "
                                              "(kept the first)"))
            report.line_reasons[f"repeated id line(s) in {name}"] += 1
        else:
            values[entry.key] = entry.value
            first_line[entry.key] = entry.line
    return values


def reason_to_drop(utt: str, files: dict[str, dict[str, str]], utt_files: list[str],
                   allow_empty_text: bool) -> str:
    """Why `utt` cannot stay (e.g. 'not in wav.scp/text', 'empty transcript'), or '' if it can."""
    missing = [name for name in utt_files if utt not in files[name]]
    reasons = [f"not in {'/'.join(missing)}"] if missing else []
    if "segments" in files and utt in files["segments"]:
        recording = files["segments"][utt].split()[0]
        if recording not in files["wav.scp"]:
            reasons.append("recording not in wav.scp")
    if not allow_empty_text and files.get("text", {}).get(utt) == "":
        reasons.append("empty transcript")
    return "; ".join(reasons)


def note_dropped_keys(before: DataDir, after: DataDir, report: FixReport) -> None:
    """Recordings and speakers that lost all their utterances."""
    for name, entries in before.files.items():
        level = before.level(name)
        if level in ("spk", "reco") and name != "spk2utt":
            for key in entries:
                if key not in after.files[name]:
                    what = "speaker" if level == "spk" else "recording"
                    report.removed.append((key, f"{name}: {what} has no utterance left"))
                    report.line_reasons[f"{what}(s) without utterances in {name}"] += 1


def fix_data_dir(path: str | Path, allow_empty_text: bool = False) -> FixReport:
    path = Path(path)
    for name in ("utt2spk", "wav.scp"):
        if not (path / name).is_file():
            raise DataDirError(Problem(str(path / name), None, "is missing: fix_data_dir cannot invent it",
                                       f"create it; check with utils/validate_data_dir.sh {path}"))
    report = FixReport()
    present = [name for name in KNOWN_FILES if (path / name).is_file()]
    # spk2utt is regenerated from utt2spk, so its own lines do not matter.
    files = {name: read_leniently(path, name, report) for name in present if name != "spk2utt"}
    has_segments = "segments" in files
    utt_files = [name for name in files if file_level(name, has_segments) == "utt"]
    every_utt = sorted({utt for name in utt_files for utt in files[name]}, key=c_order)
    kept = []
    for utt in every_utt:
        reason = reason_to_drop(utt, files, utt_files, allow_empty_text)
        if reason:
            report.removed.append((utt, reason))
            report.utt_reasons[reason] += 1
        else:
            kept.append(utt)
    report.total, report.kept = len(every_utt), len(kept)
    if not kept:
        raise DataDirError(Problem(str(path), None, f"none of its {len(every_utt)} utterances is in every file "
                                   "(nothing written)", "check that the files use the same utterance ids"))
    before = DataDir(path, files)
    after = before.select(kept)
    note_dropped_keys(before, after, report)
    if not report.removed and already_written(path, after, present):
        return report  # idempotent: a second run changes nothing, not even the backup of the first
    backup = new_backup_dir(path)
    for name in present:
        shutil.copy2(path / name, backup / name)
    after.write(path)
    with open(backup / "removed.txt", "w", encoding="utf-8") as stream:
        stream.writelines(f"{key} {reason}\n" for key, reason in report.removed)
    report.backup = backup
    return report


def already_written(path: Path, data: DataDir, present: list[str]) -> bool:
    """Whether `data.write(path)` would leave every file of `path` byte for byte as it is."""
    files = data.files_as_written()
    if set(files) != set(present):
        return False
    for name, entries in files.items():
        if (path / name).read_bytes() != "".join(kv_lines(entries)).encode("utf-8"):
            return False
    return True


def new_backup_dir(path: Path) -> Path:
    """data/x/.backup for the first run that changes something, then .backup.2, .backup.3, ...: never overwritten."""
    backup, number = path / BACKUP, 1
    while backup.exists():
        number += 1
        backup = path / f"{BACKUP}.{number}"
    backup.mkdir()
    return backup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Sort a data dir and drop what cannot be kept.")
    parser.add_argument("--allow-empty-text", action="store_true", help="keep utterances with empty transcripts")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)

    def body() -> int:
        path = Path(args.data_dir)
        report = fix_data_dir(path, args.allow_empty_text)
        for line in report.summary(path):
            print(f"{PROG}: {line}")
        remaining = validate_data_dir(path, no_text=not (path / "text").is_file(),
                                      allow_empty_text=args.allow_empty_text)
        # What fixing cannot repair (e.g. utterance ids without speaker prefix) is shown, not fatal: as Kaldi.
        for line in format_problems(remaining):
            print(f"{PROG}: left for you: {line}", file=sys.stderr)
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
