"""The Kaldi data-dir contract: reading, checking and writing its files.

A data dir holds `wav.scp`, `text`, `utt2spk`, `spk2utt` and optional `segments`, `utt2num_samples`, `utt2dur`,
`reco2dur`, `video.scp`, `roi.scp`, ...: one `id value` line each, sorted by id in C byte order (`LC_ALL=C sort`), ids unique. Every tool in
speechllm.data reads and writes them through this module, so the rules live in one place. No torch, no numpy here:
other packages import it cheaply (`from speechllm.data.datadir import read_kv, write_kv`).
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

# Files keyed by utterance id. `wav.scp` joins them when there is no `segments` file.
UTT_FILES = ("text", "utt2spk", "segments", "utt2num_samples", "utt2dur", "utt2uniq", "utt2lang", "utt2category",
             "feats.scp", "utt2num_frames", "roi.scp")
# Files keyed by speaker id; `spk2utt` is always regenerated from `utt2spk`.
SPK_FILES = ("spk2utt", "spk2gender")
# Files keyed by recording id. `wav.scp` joins them when there is a `segments` file.
RECO_FILES = ("reco2dur", "reco2file_and_channel")
# Keyed as wav.scp is: the video of each recording (utterance without segments), e.g. LRS3's mp4 clips.
MEDIA_FILES = ("wav.scp", "video.scp")
KNOWN_FILES = MEDIA_FILES + UTT_FILES + SPK_FILES + RECO_FILES

FIX_DATA_DIR = "utils/fix_data_dir.sh"
# The fix of a media file (audio, video) that cannot be read.
DROP_UTTERANCE = "or drop the utterance (delete its line, then utils/fix_data_dir.sh on the data dir)"


def c_order(key: str) -> bytes:
    """Sort key matching `LC_ALL=C sort`: UTF-8 byte order."""
    return key.encode("utf-8", "surrogateescape")


def file_level(name: str, has_segments: bool) -> str | None:
    """'utt', 'spk' or 'reco': what the ids of data-dir file `name` are; None for files we do not know."""
    if name in MEDIA_FILES:
        return "reco" if has_segments else "utt"
    if name in UTT_FILES:
        return "utt"
    if name in SPK_FILES:
        return "spk"
    if name in RECO_FILES:
        return "reco"
    return None


# sclite reads the utterance id of a trn line from its last "(...)" and splits words on whitespace: an id (or the
# speaker id put in front of it) holding '(', ')' or any whitespace character is mis-scored without a word.
_SCLITE_UNSAFE = re.compile(r"[()\s]")


def sclite_unsafe(key: str) -> str | None:
    """What makes `key` unusable in sclite's '(id)' (e.g. "'(' at position 3"), or None if it is fine."""
    match = _SCLITE_UNSAFE.search(key)
    if match is None:
        return None
    char = match.group()
    shown = repr(char) if char in "()" else f"whitespace {char!r}"
    return f"{shown} at position {match.start() + 1}"


def format_seconds(seconds: float) -> str:
    """Times in segments/utt2dur: fixed point, microsecond precision, no trailing zeros."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


# ---------------------------------------------------------------------------------------------------------------
# Problems and errors: every message names the file, the line and how to fix it.

@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    fix: str = ""
    severity: str = "error"  # or "warning"
    kind: str = ""  # groups problems of one sort so long lists can be capped
    key: str = ""  # the id the line is about, where there is one

    def __str__(self) -> str:
        where = f"{self.file} line {self.line}" if self.line else self.file
        text = f"{where}: {self.message}" if where else self.message
        return f"{text}. Fix: {self.fix}" if self.fix else text


def format_problems(problems: Iterable[Problem], cap_per_kind: int = 10) -> list[str]:
    """One line per problem, at most `cap_per_kind` per (file, kind), then a count of the rest."""
    shown: dict[tuple[str, str, str], int] = {}
    lines: list[str] = []
    hidden: dict[tuple[str, str, str], int] = {}
    for problem in problems:
        group = (problem.severity, problem.file, problem.kind or problem.message)
        shown[group] = shown.get(group, 0) + 1
        if shown[group] <= cap_per_kind:
            lines.append(f"{problem.severity}: {problem}")
        else:
            hidden[group] = hidden.get(group, 0) + 1
    for (severity, file, kind), count in hidden.items():
        lines.append(f"{severity}: {file}: ... and {count} more problems like the above ({kind})")
    return lines


class DataDirError(Exception):
    """Bad input: carries the problems found, each naming file, line and fix."""

    def __init__(self, problems: Problem | str | list[Problem]):
        if isinstance(problems, (Problem, str)):
            problems = [problems]
        self.problems = [p if isinstance(p, Problem) else Problem("", None, p) for p in problems]
        super().__init__("\n".join(format_problems(self.problems)))


def die_on(problems: list[Problem]) -> None:
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise DataDirError(errors)


# ---------------------------------------------------------------------------------------------------------------
# Line format of each known file.

def _exactly(count: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        found = len(value.split())
        return None if found == count else f"expected {count} field(s) after the id, found {found}"
    return check


def _nonempty(value: str) -> str | None:
    return None if value else "nothing after the id"


def _positive_int(value: str) -> str | None:
    return None if re.fullmatch(r"[0-9]+", value) and int(value) > 0 else f"'{value}' is not a positive integer"


def parse_float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def _positive_float(value: str) -> str | None:
    number = parse_float(value)
    return None if number is not None and number > 0 else f"'{value}' is not a positive number of seconds"


def _segment(value: str) -> str | None:
    fields = value.split()
    if len(fields) != 3:
        return f"expected '<recording-id> <start> <end>' after the id, found {len(fields)} field(s)"
    start, end = parse_float(fields[1]), parse_float(fields[2])
    if start is None or end is None:
        return f"start '{fields[1]}' and end '{fields[2]}' must be numbers of seconds"
    if start < 0:
        return f"start time {fields[1]} is negative"
    if end <= start:
        return f"end time {fields[2]} is not after start time {fields[1]}"
    return None


def _any(value: str) -> str | None:
    return None


LINE_RULES: dict[str, tuple[str, Callable[[str], str | None]]] = {
    "text": ("<utt-id> <words...>", _any),  # empty transcripts are judged by validate, not by the parser
    "utt2spk": ("<utt-id> <speaker-id>", _exactly(1)),
    "spk2utt": ("<speaker-id> <utt-id> <utt-id>...", _nonempty),
    "wav.scp": ("<id> <path> | <id> <command> |", _nonempty),
    "segments": ("<utt-id> <recording-id> <start> <end>", _segment),
    "utt2num_samples": ("<utt-id> <number of samples>", _positive_int),
    "utt2num_frames": ("<utt-id> <number of frames>", _positive_int),
    "utt2dur": ("<utt-id> <seconds>", _positive_float),
    "reco2dur": ("<recording-id> <seconds>", _positive_float),
    "utt2uniq": ("<utt-id> <original-utt-id>", _exactly(1)),
    "utt2lang": ("<utt-id> <language>", _exactly(1)),
    "utt2category": ("<utt-id> <category>", _exactly(1)),
    "spk2gender": ("<speaker-id> m|f", _exactly(1)),
    "reco2file_and_channel": ("<recording-id> <file> <channel>", _exactly(2)),
    "feats.scp": ("<utt-id> <ark:offset>", _nonempty),
    "video.scp": ("<id> <video file>", _exactly(1)),
    "roi.scp": ("<utt-id> <lip-ROI .npy file>", _exactly(1)),
}


# ---------------------------------------------------------------------------------------------------------------
# Reading.

@dataclass(frozen=True)
class Entry:
    key: str
    value: str
    line: int


_KEY_VALUE = re.compile(r"([^ \t]+)[ \t]*(.*?)[ \t]*")


def fix_hint(source: str) -> str:
    """'utils/fix_data_dir.sh <the dir of this file>'."""
    return f"{FIX_DATA_DIR} {Path(source).parent}"


def parse_lines(raw_lines: Iterable[bytes], source: str, name: str) -> tuple[list[Entry], list[Problem]]:
    """Parse `id value` lines; malformed lines become problems (with line numbers) instead of entries.

    A line ending in CR still gives an entry (the CR is dropped) besides its problem, so fix_data_dir can repair it.
    """
    layout, check = LINE_RULES.get(name, ("<id> <value>", _any))
    entries: list[Entry] = []
    problems: list[Problem] = []

    def bad(lineno: int, message: str, fix: str, kind: str, key: str = "") -> None:
        problems.append(Problem(source, lineno, message, fix, kind=kind, key=key))

    for lineno, raw in enumerate(raw_lines, 1):
        try:
            line = raw.decode("utf-8").rstrip("\n")
        except UnicodeDecodeError as error:
            bad(lineno, f"is not valid UTF-8 ({error.reason} at byte {error.start})",
                f"convert the file to UTF-8, e.g. iconv -f LATIN1 -t UTF-8 {source}", "encoding")
            continue
        if line.endswith("\r"):
            bad(lineno, "ends with a carriage return (Windows line ending)",
                f"sed -i 's/\\r$//' {source}, or {fix_hint(source)}", "crlf")
            line = line.rstrip("\r")
        if not line.strip():
            bad(lineno, "is empty", f"delete the line ({fix_hint(source)} does)", "empty line")
            continue
        if line[0] in " \t":
            bad(lineno, "starts with whitespace; the id must be the first field",
                "remove the leading whitespace", "leading whitespace")
            continue
        match = _KEY_VALUE.fullmatch(line)
        assert match is not None  # the pattern accepts any line that starts with a non-blank
        key, value = match.group(1), match.group(2)
        reason = check(value)
        if reason:
            bad(lineno, f"malformed line for '{key}': {reason}; expected '{layout}'",
                f"correct or delete the line ({fix_hint(source)} deletes malformed lines)", "malformed", key)
            continue
        entries.append(Entry(key, value, lineno))
    return entries, problems


def read_entries(path: str | os.PathLike, name: str | None = None) -> tuple[list[Entry], list[Problem]]:
    """All well-formed lines of a file in file order, and the problems of the others."""
    path = Path(path)
    with open(path, "rb") as stream:
        return parse_lines(stream, str(path), name or path.name)


def duplicate_problems(entries: list[Entry], source: str) -> list[Problem]:
    first_line: dict[str, int] = {}
    problems = []
    for entry in entries:
        if entry.key in first_line:
            problems.append(Problem(
                source, entry.line, f"id '{entry.key}' repeats line {first_line[entry.key]}",
                f"keep one line per id: LC_ALL=C sort -k1,1 -u {source} -o {source}, or {fix_hint(source)}",
                kind="duplicate id"))
        else:
            first_line[entry.key] = entry.line
    return problems


def order_problems(entries: list[Entry], source: str) -> list[Problem]:
    problems = []
    for previous, entry in zip(entries, entries[1:]):
        if c_order(entry.key) < c_order(previous.key):
            problems.append(Problem(
                source, entry.line,
                f"id '{entry.key}' comes after '{previous.key}' (line {previous.line}): not sorted in C byte order",
                f"LC_ALL=C sort -k1,1 -u {source} -o {source}, or {fix_hint(source)}",
                kind="not sorted"))
    return problems


def read_kv(path: str | os.PathLike, name: str | None = None) -> dict[str, str]:
    """id -> value in file order. Raises DataDirError (file, line, fix) on malformed lines or repeated ids.

    `name` picks the line rules of a known data-dir file (default: the file's own name); unknown files only need
    an id on each line (an id alone means an empty value, as an empty transcript in `text`).
    """
    return read_kv_with_lines(path, name)[0]


def read_kv_with_lines(path: str | os.PathLike, name: str | None = None) -> tuple[dict[str, str], dict[str, int]]:
    """As read_kv, plus id -> line number, for messages that point back into the file."""
    entries, problems = read_entries(path, name)
    die_on(problems + duplicate_problems(entries, str(path)))
    return {e.key: e.value for e in entries}, {e.key: e.line for e in entries}


def read_lines_or_stdin(path: str) -> Iterator[bytes]:
    """Raw lines of a file, or of standard input for '-'."""
    if path == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as stream:
        yield from stream


# ---------------------------------------------------------------------------------------------------------------
# Writing.

def kv_lines(mapping: Mapping[str, str], sort: bool = True) -> Iterator[str]:
    keys = sorted(mapping, key=c_order) if sort else list(mapping)
    for key in keys:
        value = mapping[key]
        if not key or re.search(r"\s", key):
            raise ValueError(f"id {key!r} is empty or contains whitespace: Kaldi ids are single tokens")
        if "\n" in value or "\r" in value:
            raise ValueError(f"value of id {key!r} contains a line break")
        yield f"{key} {value}\n" if value else f"{key}\n"


def write_kv(path: str | os.PathLike, mapping: Mapping[str, str], sort: bool = True) -> None:
    """Write `id value` lines, sorted in C byte order unless sort=False; atomic (temp file, then rename)."""
    path = Path(path)
    lines = list(kv_lines(mapping, sort))
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.writelines(lines)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------------
# Speakers.

def spk2utt_from_utt2spk(utt2spk: Mapping[str, str]) -> dict[str, str]:
    """speaker -> 'utt1 utt2 ...': speakers in C order, utterances in utt2spk order (as Kaldi's .pl tool)."""
    utts: dict[str, list[str]] = {}
    for utt, spk in utt2spk.items():
        utts.setdefault(spk, []).append(utt)
    return {spk: " ".join(utts[spk]) for spk in sorted(utts, key=c_order)}


def utt2spk_from_spk2utt(spk2utt: Mapping[str, str], lines: Mapping[str, int] | None = None,
                         source: str = "spk2utt") -> dict[str, str]:
    """utterance -> speaker, in C order of utterance. An utterance listed under two speakers is an error."""
    utt2spk: dict[str, str] = {}
    problems = []
    for spk, utts in spk2utt.items():
        for utt in utts.split():
            if utt in utt2spk:
                problems.append(Problem(
                    source, (lines or {}).get(spk), f"utterance '{utt}' is listed under speakers "
                    f"'{utt2spk[utt]}' and '{spk}'", "give every utterance exactly one speaker", kind="two speakers"))
            else:
                utt2spk[utt] = spk
    die_on(problems)
    return {utt: utt2spk[utt] for utt in sorted(utt2spk, key=c_order)}


# ---------------------------------------------------------------------------------------------------------------
# A whole data dir in memory.

class DataDir:
    """The known files of a data dir: name -> (id -> value), with line numbers for messages."""

    def __init__(self, path: str | os.PathLike | None, files: dict[str, dict[str, str]],
                 lines: dict[str, dict[str, int]] | None = None):
        self.path = Path(path) if path is not None else None
        self.files = files
        self.lines = lines or {}

    @classmethod
    def read(cls, path: str | os.PathLike) -> "DataDir":
        """Read every known file present. Raises DataDirError on malformed lines or repeated ids.

        Sort order and cross-file consistency are validate's business: tools call validate.require_valid first.
        """
        path = Path(path)
        if not path.is_dir():
            raise DataDirError(Problem(str(path), None, "is not a directory", "give the path of a Kaldi data dir"))
        files, lines = {}, {}
        for name in KNOWN_FILES:
            if (path / name).is_file():
                files[name], lines[name] = read_kv_with_lines(path / name)
        return cls(path, files, lines)

    @property
    def has_segments(self) -> bool:
        return "segments" in self.files

    @property
    def utt_ids(self) -> list[str]:
        return list(self.files.get("utt2spk", {}))

    def level(self, name: str) -> str | None:
        return file_level(name, self.has_segments)

    def where(self, name: str, key: str) -> tuple[str, int | None]:
        """(file path, line number) of `key` in file `name`, for messages."""
        path = self.path / name if self.path else Path(name)
        return str(path), self.lines.get(name, {}).get(key)

    def recording_of(self, utt: str) -> str:
        return self.files["segments"][utt].split()[0] if self.has_segments else utt

    def select(self, utt_ids: Iterable[str]) -> "DataDir":
        """The data dir restricted to `utt_ids`: speakers and recordings follow (only those still needed)."""
        keep = set(utt_ids)
        speakers = {self.files["utt2spk"][u] for u in keep if u in self.files.get("utt2spk", {})}
        recordings = {self.recording_of(u) for u in keep} if self.has_segments else keep
        wanted = {"utt": keep, "spk": speakers, "reco": recordings}
        files = {}
        for name, entries in self.files.items():
            level = self.level(name)
            if name == "spk2utt" or level is None:
                continue
            files[name] = {k: v for k, v in entries.items() if k in wanted[level]}
        if "utt2spk" in files:
            files["spk2utt"] = spk2utt_from_utt2spk(files["utt2spk"])
        lines = {name: self.lines[name] for name in files if name in self.lines}
        return DataDir(self.path, files, lines)

    def files_as_written(self) -> dict[str, dict[str, str]]:
        """The files `write` writes: spk2utt regenerated from utt2spk in the order utt2spk is written (sorted), so
        that it lists each speaker's utterances as utt2spk_to_spk2utt.sh gives them for the written utt2spk."""
        files = dict(self.files)
        if "utt2spk" in files:
            utt2spk = files["utt2spk"]
            files["spk2utt"] = spk2utt_from_utt2spk({u: utt2spk[u] for u in sorted(utt2spk, key=c_order)})
        return files

    def write_changed(self, dest: str | os.PathLike) -> int:
        """As `write`, but only the files whose content differs are rewritten (each atomically), so that a rerun
        that changes nothing leaves every file and its time stamp alone; returns how many files were written."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        files = self.files_as_written()
        written = 0
        for name, mapping in files.items():
            text = "".join(kv_lines(mapping))
            path = dest / name
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                temp = path.with_name(f".{name}.tmp")
                temp.write_text(text, encoding="utf-8")
                os.replace(temp, path)
                written += 1
        for name in KNOWN_FILES:
            if name not in files and (dest / name).is_file():
                (dest / name).unlink()
        return written

    def write(self, dest: str | os.PathLike) -> list[str]:
        """Write all files sorted (spk2utt regenerated); remove known files of an older dir there.

        Returns notes on what was removed, for the caller to print.
        """
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        files = self.files_as_written()
        notes = []
        for name in KNOWN_FILES:
            if name in files:
                write_kv(dest / name, files[name])
            elif (dest / name).is_file():
                (dest / name).unlink()
                notes.append(f"removed {dest / name}, left from an earlier run (no such file in the new data)")
        return notes
