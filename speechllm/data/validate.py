"""utils/validate_data_dir.sh: check a Kaldi data dir and report every problem with file, line and fix.

    utils/validate_data_dir.sh [--no-text] [--no-spk-sort] [--allow-empty-text] [--no-media-check]
                               [--av-tolerance 0.2] [--fs 16000] data/x

`video.scp` (keyed as wav.scp is) and `roi.scp` (utterances) are checked as the other files (ids, order, sets) and
their files must exist. The tool also opens them (other tools' require_valid does not; --no-media-check skips it):
each video must be at 25 fps and each video or lip-ROI array as long as its audio (reco2dur, utt2dur, segments or
utt2num_samples at --fs) within --av-tolerance seconds; a lip-ROI array must be uint8 frames x 96 x 96.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from speechllm.data.cli import run_tool
from speechllm.data.datadir import (
    FIX_DATA_DIR, KNOWN_FILES, DataDirError, Entry, Problem, c_order, duplicate_problems, file_level,
    format_problems, format_seconds, order_problems, parse_float, read_entries, sclite_unsafe, spk2utt_from_utt2spk)

PROG = "utils/validate_data_dir.sh"


class Checker:
    """Collects problems of one data dir; each check method looks at one rule."""

    def __init__(self, path: Path, no_text: bool, no_spk_sort: bool, allow_empty_text: bool,
                 media: "MediaCheck | None" = None):
        self.path = path
        self.no_text = no_text
        self.no_spk_sort = no_spk_sort
        self.allow_empty_text = allow_empty_text
        self.media = media
        self.problems: list[Problem] = []
        self.entries: dict[str, list[Entry]] = {}  # well-formed lines of each file present

    def src(self, name: str) -> str:
        return str(self.path / name)

    def add(self, name: str, line: int | None, message: str, fix: str, kind: str, severity: str = "error") -> None:
        self.problems.append(Problem(self.src(name), line, message, fix, severity, kind))

    def fix_dir(self) -> str:
        return f"{FIX_DATA_DIR} {self.path}"

    def run(self) -> list[Problem]:
        if not self.path.is_dir():
            self.problems.append(Problem(str(self.path), None, "is not a directory", "give a Kaldi data dir"))
            return self.problems
        self.check_required_files()
        for name in KNOWN_FILES:
            if (self.path / name).is_file():
                self.read_file(name)
        self.check_ids_for_scoring()
        self.check_empty_transcripts()
        self.check_utterance_sets()
        self.check_speakers()
        self.check_segments()
        self.check_video_files()
        if self.media is not None and ("video.scp" in self.entries or "roi.scp" in self.entries):
            self.check_media()
        return self.problems

    def check_required_files(self) -> None:
        required = {
            "utt2spk": "create it ('<utt-id> <speaker-id>' lines; without speaker information map each utterance "
                       f"to itself: awk '{{print $1, $1}}' {self.src('text')} > {self.src('utt2spk')})",
            "spk2utt": f"utils/utt2spk_to_spk2utt.sh {self.src('utt2spk')} > {self.src('spk2utt')}",
            "wav.scp": "create it ('<utt-id> <audio path>' or '<utt-id> <command> |' lines)",
        }
        if not self.no_text:
            required["text"] = (f"create it ('<utt-id> <transcript>' lines), or pass --no-text to {PROG} for a "
                                 "dir without one")
        for name, fix in required.items():
            if not (self.path / name).is_file():
                self.add(name, None, "is missing", fix, "missing file")

    def read_file(self, name: str) -> None:
        entries, problems = read_entries(self.path / name)
        self.problems += problems
        self.problems += duplicate_problems(entries, self.src(name))
        self.problems += order_problems(entries, self.src(name))
        self.entries[name] = entries

    def first_lines(self, name: str) -> dict[str, Entry]:
        """id -> its first well-formed line in `name`."""
        found: dict[str, Entry] = {}
        for entry in self.entries.get(name, []):
            found.setdefault(entry.key, entry)
        return found

    def check_ids_for_scoring(self) -> None:
        """Utterance and speaker ids become sclite's '(speaker-utterance)': no '(', ')' or whitespace in them."""
        has_segments = "segments" in self.entries
        for name, entries in self.entries.items():
            level = file_level(name, has_segments)
            if level not in ("utt", "spk"):
                continue
            what = "utterance" if level == "utt" else "speaker"
            found = [(e, "id", e.key, sclite_unsafe(e.key)) for e in entries]
            if name == "utt2spk":
                found += [(e, "speaker", e.value, sclite_unsafe(e.value)) for e in entries]
            bad = [(entry, role, key, why) for entry, role, key, why in found if why]
            if not bad:
                continue
            entry, role, key, why = min(bad, key=lambda b: b[0].line)
            subject = f"{what} id" if role == "id" else "speaker id"
            more = f" ({len(bad) - 1} more id(s) like it in this file)" if len(bad) > 1 else ""
            self.add(name, entry.line, f"{subject} {key!r} contains {why}: sclite's trn lines end with "
                     f"'(speaker-utterance)', so scoring would misread it{more}",
                     "rename the ids without '(', ')' or whitespace (e.g. replace them with '_') in every file "
                     "of the dir", "id unusable by sclite")

    def check_empty_transcripts(self) -> None:
        if self.allow_empty_text:
            return
        for entry in self.entries.get("text", []):
            if not entry.value:
                self.add("text", entry.line, f"utterance '{entry.key}' has an empty transcript",
                         f"remove such utterances with {self.fix_dir()}, or pass --allow-empty-text to {PROG} if "
                         "empty references are intended", "empty transcript")

    def check_utterance_sets(self) -> None:
        """Every utterance-level file must hold exactly the utterances of utt2spk."""
        if "utt2spk" not in self.entries:
            return
        reference = self.first_lines("utt2spk")
        has_segments = "segments" in self.entries
        for name in self.entries:
            if name == "utt2spk" or file_level(name, has_segments) != "utt":
                continue
            present = self.first_lines(name)
            for key, entry in present.items():
                if key not in reference:
                    self.add(name, entry.line, f"utterance '{key}' is not in utt2spk",
                             f"add it to utt2spk, or drop it with {self.fix_dir()}", "not in utt2spk")
            for key, entry in reference.items():
                if key not in present:
                    self.add("utt2spk", entry.line, f"utterance '{key}' has no line in {name}",
                             f"add it to {name}, or drop it with {self.fix_dir()}", f"missing from {name}")

    def check_speakers(self) -> None:
        if "utt2spk" not in self.entries:
            return
        utt2spk = {key: e.value for key, e in self.first_lines("utt2spk").items()}
        if "spk2utt" in self.entries:
            self.compare_spk2utt(spk2utt_from_utt2spk(utt2spk))
        if not self.no_spk_sort:
            self.check_sorted_by_speaker()
        self.warn_speaker_prefix()
        if "spk2gender" in self.entries:
            speakers = set(utt2spk.values())
            for key, entry in self.first_lines("spk2gender").items():
                if key not in speakers:
                    self.add("spk2gender", entry.line, f"speaker '{key}' has no utterance in utt2spk",
                             f"remove the line, or run {self.fix_dir()}", "unknown speaker")

    def compare_spk2utt(self, expected: dict[str, str]) -> None:
        regenerate = f"utils/utt2spk_to_spk2utt.sh {self.src('utt2spk')} > {self.src('spk2utt')}"
        present = self.first_lines("spk2utt")
        for spk, entry in present.items():
            if spk not in expected:
                self.add("spk2utt", entry.line, f"speaker '{spk}' has no utterance in utt2spk", regenerate,
                         "disagrees with utt2spk")
            elif entry.value.split() != expected[spk].split():
                self.add("spk2utt", entry.line, f"speaker '{spk}' lists '{entry.value}' but utt2spk gives "
                         f"'{expected[spk]}'", regenerate, "disagrees with utt2spk")
        for spk in expected:
            if spk not in present:
                self.add("spk2utt", None, f"speaker '{spk}' of utt2spk is missing", regenerate,
                         "disagrees with utt2spk")

    def check_sorted_by_speaker(self) -> None:
        """Kaldi requires utt2spk sorted by speaker as well as by utterance (speaker-prefixed ids make it so)."""
        # Compared against the utterance order, not the file order: an unsorted file is reported on its own.
        by_utt = sorted(self.entries["utt2spk"], key=lambda e: c_order(e.key))
        by_speaker = sorted(by_utt, key=lambda e: (c_order(e.value), c_order(e.key)))
        for in_order, wanted in zip(by_utt, by_speaker):
            if in_order is not wanted:
                self.add("utt2spk", in_order.line,
                         f"not sorted by speaker as well as by utterance: '{in_order.key}' (speaker "
                         f"'{in_order.value}') sorts before an utterance of speaker '{wanted.value}'",
                         "make speaker ids prefixes of utterance ids (e.g. spk1-utt1), or pass --no-spk-sort to "
                         f"{PROG} if your tools do not need it", "not sorted by speaker")
                return

    def warn_speaker_prefix(self) -> None:
        for entry in self.entries["utt2spk"]:
            if not entry.key.startswith(entry.value):
                self.add("utt2spk", entry.line, f"utterance id '{entry.key}' does not start with its speaker id "
                         f"'{entry.value}'", "Kaldi recommends speaker-id prefixes (e.g. spk1-utt1) so that sorting "
                         "by utterance also groups speakers", "no speaker prefix", severity="warning")

    def check_segments(self) -> None:
        if "segments" not in self.entries or "wav.scp" not in self.entries:
            return
        recordings = self.first_lines("wav.scp")
        used = set()
        for entry in self.entries["segments"]:
            recording = entry.value.split()[0]
            used.add(recording)
            if recording not in recordings:
                self.add("segments", entry.line, f"utterance '{entry.key}' refers to recording '{recording}', "
                         "which is not in wav.scp", f"add the recording to wav.scp, or drop the utterance with "
                         f"{self.fix_dir()}", "unknown recording")
        for key, entry in recordings.items():
            if key not in used:
                self.add("wav.scp", entry.line, f"recording '{key}' has no segment", f"{self.fix_dir()} removes "
                         "unused recordings", "unused recording", severity="warning")
        for name in self.entries:
            if file_level(name, True) == "reco" and name != "wav.scp":
                for key, entry in self.first_lines(name).items():
                    if key not in recordings:
                        self.add(name, entry.line, f"recording '{key}' is not in wav.scp",
                                 f"remove the line, or run {self.fix_dir()}", "unknown recording")


    # -- video.scp and roi.scp ------------------------------------------------------------------------------------

    def check_video_files(self) -> None:
        """video.scp covers wav.scp's ids (other direction: check_utterance_sets / check_segments); both lists'
        files exist."""
        if "video.scp" in self.entries and "wav.scp" in self.entries:
            videos = self.first_lines("video.scp")
            what = "recording" if "segments" in self.entries else "utterance"
            for key, entry in self.first_lines("wav.scp").items():
                if key not in videos:
                    self.add("wav.scp", entry.line, f"{what} '{key}' has no line in video.scp",
                             f"add its video to video.scp, or drop its utterance(s) with {self.fix_dir()}",
                             "missing from video.scp")
        for name, what in (("video.scp", "video file"), ("roi.scp", "lip-ROI file")):
            for entry in self.entries.get(name, []):
                if not Path(entry.value).is_file():
                    fix = (f"correct the path, or drop the utterance with {self.fix_dir()}" if name == "video.scp"
                           else "rerun utils/extract_lip_roi.sh, or correct the path")
                    self.add(name, entry.line, f"{what} '{entry.value}' of '{entry.key}' does not exist", fix,
                             "missing file")

    def audio_seconds(self) -> tuple[dict[str, float], dict[str, float], str, str]:
        """Audio durations keyed as video.scp is and by utterance, and the files they come from."""
        assert self.media is not None

        def seconds(name: str) -> dict[str, float]:
            found = {key: parse_float(e.value) for key, e in self.first_lines(name).items()}
            return {key: value for key, value in found.items() if value is not None}

        if "segments" in self.entries:
            lengths = {}
            for key, entry in self.first_lines("segments").items():
                _, start, end = entry.value.split()
                lengths[key] = float(end) - float(start)
            return seconds("reco2dur"), lengths, "reco2dur", "segments"
        if "utt2dur" in self.entries:
            durations = seconds("utt2dur")
            return durations, durations, "utt2dur", "utt2dur"
        durations = {key: int(e.value) / self.media.fs for key, e in self.first_lines("utt2num_samples").items()}
        source = f"utt2num_samples at {self.media.fs} Hz"
        return durations, durations, source, source

    def check_media(self) -> None:
        from speechllm.data.video import ROI_FPS, VideoError, check_roi, probe_video
        assert self.media is not None
        tolerance = self.media.av_tolerance
        by_key, by_utt, key_source, utt_source = self.audio_seconds()
        kind = "recording" if "segments" in self.entries else "utterance"
        for entry in self.entries.get("video.scp", []):
            if not Path(entry.value).is_file():
                continue  # reported as missing
            try:
                info = probe_video(entry.value)
            except VideoError as error:
                self.add("video.scp", entry.line, f"{kind} '{entry.key}': {error.message}", error.fix, "bad video")
                continue
            if abs(info.fps - ROI_FPS) > 0.01:
                self.add("video.scp", entry.line, f"{kind} '{entry.key}': video '{entry.value}' has {info.fps:g} "
                         f"frames per second, not {ROI_FPS}", "convert it (ffmpeg -i IN -r 25 OUT.mp4), or extract "
                         "its lip ROIs with utils/extract_lip_roi.sh --resample_video true (nearest frame in time)",
                         "frame rate")
            self.compare_lengths("video.scp", entry, info.duration, by_key.get(entry.key), key_source, tolerance)
        for entry in self.entries.get("roi.scp", []):
            if not Path(entry.value).is_file():
                continue
            try:
                frames = check_roi(entry.value)
            except VideoError as error:
                self.add("roi.scp", entry.line, f"utterance '{entry.key}': {error.message}", error.fix, "bad lip ROI")
                continue
            self.compare_lengths("roi.scp", entry, frames / ROI_FPS, by_utt.get(entry.key), utt_source, tolerance)

    def compare_lengths(self, name: str, entry: Entry, video: float, audio: float | None, source: str,
                        tolerance: float) -> None:
        if audio is None or abs(video - audio) <= tolerance:
            return
        self.add(name, entry.line, f"'{entry.key}': the video lasts {format_seconds(round(video, 3))} s but the "
                 f"audio {format_seconds(round(audio, 3))} s ({source}), more than the tolerance of "
                 f"{format_seconds(tolerance)} s apart", "check that the video and audio are of the same recording "
                 f"(and segment), or drop the utterance with {self.fix_dir()}; --av-tolerance sets the tolerance",
                 "audio and video lengths")


@dataclass(frozen=True)
class MediaCheck:
    """Open videos and lip-ROI arrays: frame rate, and length against the audio within `av_tolerance` seconds
    (utt2num_samples read at `fs`)."""
    av_tolerance: float = 0.2
    fs: int = 16000


def validate_data_dir(path: str | Path, no_text: bool = False, no_spk_sort: bool = False,
                      allow_empty_text: bool = False, media: MediaCheck | None = None) -> list[Problem]:
    """All problems of data dir `path` (errors and warnings), in file order; `media` opens the videos and lip-ROI
    arrays too."""
    return Checker(Path(path), no_text, no_spk_sort, allow_empty_text, media).run()


def require_valid(path: str | Path) -> None:
    """Raise DataDirError unless `path` is a valid data dir, as the other tools need (text optional, empty
    transcripts and unprefixed utterance ids allowed: those are the concern of training and scoring)."""
    path = Path(path)
    problems = validate_data_dir(path, no_text=not (path / "text").is_file(), no_spk_sort=True,
                                 allow_empty_text=True)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        errors.append(Problem(str(path), None, "is not a valid data dir (problems above)",
                              f"{FIX_DATA_DIR} {path} repairs most of them; check with {PROG} {path}"))
        raise DataDirError(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Check a Kaldi data dir.")
    parser.add_argument("--no-text", action="store_true", help="the dir need not have a text file")
    parser.add_argument("--no-spk-sort", action="store_true",
                        help="do not require utt2spk to be sorted by speaker as well as by utterance")
    parser.add_argument("--allow-empty-text", action="store_true", help="empty transcripts are not errors")
    parser.add_argument("--no-media-check", action="store_true",
                        help="do not open the files of video.scp and roi.scp (frame rate, length against the audio)")
    parser.add_argument("--av-tolerance", type=float, default=0.2,
                        help="seconds by which a video or lip-ROI array may differ from its audio (default 0.2)")
    parser.add_argument("--fs", type=int, default=16000,
                        help="sample rate of utt2num_samples, for audio durations without utt2dur (default 16000)")
    parser.add_argument("data_dir")
    args = parser.parse_args(argv)
    media = None if args.no_media_check else MediaCheck(args.av_tolerance, args.fs)

    def body() -> int:
        problems = validate_data_dir(args.data_dir, args.no_text, args.no_spk_sort, args.allow_empty_text, media)
        for line in format_problems(problems):
            print(line, file=sys.stderr)
        errors = sum(p.severity == "error" for p in problems)
        warnings = len(problems) - errors
        if errors:
            print(f"{PROG}: {args.data_dir}: {errors} error(s), {warnings} warning(s)", file=sys.stderr)
            return 1
        print(f"{PROG}: Successfully validated data-directory {args.data_dir}"
              + (f" ({warnings} warning(s))" if warnings else ""))
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
