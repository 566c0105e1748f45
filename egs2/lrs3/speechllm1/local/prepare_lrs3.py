#!/usr/bin/env python3
"""Convert LRS3 (https://mmai.io/datasets/lip_reading/) into Kaldi data dirs data/{train,valid,test}.

    python3 local/prepare_lrs3.py [--max_segment_seconds 15] [--valid_utts 1200] [--expect_test_utts 1321] \
        [--nj 4] [--audio_dir data/lrs3_audio] /corpora/LRS3 data

LRS3 holds ``{pretrain,trainval,test}/<spk>/<clip>.mp4`` (25 fps video with a 16 kHz audio track; <spk> is the
11-character YouTube id of the talk, <clip> a 5-digit number) and beside each a ``<clip>.txt``:

    Text:  SO I THINK IT'S REALLY IMPORTANT
    Conf:  3

    WORD START END ASDSCORE
    SO 0.11 0.27 5.1
    ...

(times in seconds from the start of the clip). Utterance ids are ``<spk>_<clip>`` for trainval and test and
``<spk>_<clip>_<seg>`` (two digits, always) for pretrain, whose clips (up to minutes long) are cut by the word
times into segments of at most --max_segment_seconds of words plus up to 0.25 s either side (a cut falls between
two words, never closer to either than half their gap). The speaker is <spk>. Each clip's audio track is written
once to ``<audio_dir>/<subset>/<spk>/<clip>.flac`` (16-bit, at its own rate; an existing file is kept, so a rerun
resumes); every data dir has ``segments`` over those recordings (a whole trainval/test clip is one segment),
``wav.scp``, ``video.scp`` (the mp4s), ``reco2dur``, ``text``, ``utt2spk``, ``spk2utt``. Recording ids are
``<subset>-<spk>_<clip>`` (pretrain and trainval reuse clip numbers).

data/valid holds the trainval utterances of speakers drawn at random (--seed) until --valid_utts are reached; those
speakers' pretrain and trainval clips stay out of data/train (their pretrain clips overlap their trainval clips), so
valid speakers are unseen in training. data/test is the test set (1,321 utterances in LRS3; another count is an error
unless --expect_test_utts says so). Non-speech markers in braces (e.g. {LG}) are removed from the texts; an
utterance left without words is removed; both are counted, and removed utterances are listed with the reason in
<data>/lrs3_removed.txt. A clip without its .txt (or the reverse), a malformed .txt or an unreadable mp4 stops the
conversion with every such problem listed (file, line, fix): they mean a damaged or partial download.
"""
from __future__ import annotations

import argparse
import random
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile

from speechllm.data.audio import AudioError, pick_channel, write_audio
from speechllm.data.datadir import (
    DataDir, DataDirError, Problem, c_order, format_problems, format_seconds, write_kv)
from speechllm.data.video import VideoError, read_video_audio

SUBSETS = ("pretrain", "trainval", "test")
TABLE_HEADER = "WORD START END ASDSCORE"
SEGMENT_PAD = 0.25  # seconds of context kept either side of a pretrain segment's words
NON_SPEECH = re.compile(r"^\{.*\}$")
REMOVED_LIST = "lrs3_removed.txt"
REDOWNLOAD = "re-extract this clip from the LRS3 archive (the download is damaged or partial)"


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Clip:
    subset: str
    speaker: str
    name: str
    video: Path

    @property
    def recording(self) -> str:
        return f"{self.subset}-{self.speaker}_{self.name}"

    @property
    def utt_prefix(self) -> str:
        return f"{self.speaker}_{self.name}"


@dataclass(frozen=True)
class Segment:
    utt: str
    start: float
    end: float
    text: str


def parse_transcript(path: Path, problems: list[Problem]) -> tuple[str, list[Word]] | None:
    """(the Text: line's words, the word table) of an LRS3 .txt; None (with problems) when malformed."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines or not lines[0].startswith("Text:"):
        problems.append(Problem(str(path), 1, "does not start with a 'Text:  WORDS' line", REDOWNLOAD,
                                kind="no Text line"))
        return None
    text = lines[0][len("Text:"):].strip()
    words: list[Word] = []
    header = next((number for number, line in enumerate(lines) if line.strip() == TABLE_HEADER), None)
    if header is not None:
        for number, line in enumerate(lines[header + 1:], header + 2):
            if not line.strip():
                continue
            fields = line.split()
            try:
                if len(fields) != 4:
                    raise ValueError
                word = Word(fields[0], float(fields[1]), float(fields[2]))
                float(fields[3])
            except ValueError:
                problems.append(Problem(str(path), number, f"'{line}' is not a '{TABLE_HEADER}' row", REDOWNLOAD,
                                        kind="bad word row"))
                return None
            if word.end < word.start or (words and word.start < words[-1].start):
                problems.append(Problem(str(path), number, f"word '{word.word}' has times {fields[1]}-{fields[2]}, "
                                        "not after the previous word", REDOWNLOAD, kind="bad word times"))
                return None
            words.append(word)
    return text, words


def clean_words(words: list[str]) -> tuple[list[str], int]:
    """The words without non-speech markers such as {LG}, and how many were removed."""
    kept = [word for word in words if not NON_SPEECH.match(word)]
    return kept, len(words) - len(kept)


def split_by_words(words: list[Word], duration: float, max_seconds: float) -> list[tuple[float, float, list[Word]]]:
    """(start, end, words) of consecutive segments, each spanning at most max_seconds of words (a single longer word
    is a segment of its own), cut between words; times padded by SEGMENT_PAD but never past the middle of a gap."""
    groups: list[list[Word]] = []
    for word in words:
        if groups and word.end - groups[-1][0].start <= max_seconds:
            groups[-1].append(word)
        else:
            groups.append([word])
    segments = []
    for index, group in enumerate(groups):
        before = (groups[index - 1][-1].end + group[0].start) / 2 if index else 0.0
        after = (group[-1].end + groups[index + 1][0].start) / 2 if index + 1 < len(groups) else duration
        start = max(before, group[0].start - SEGMENT_PAD, 0.0)
        end = min(after, group[-1].end + SEGMENT_PAD, duration)
        segments.append((start, end, group))
    return segments


def find_clips(root: Path, problems: list[Problem]) -> list[Clip]:
    clips = []
    for subset in SUBSETS:
        folder = root / subset
        if not folder.is_dir():
            problems.append(Problem(str(folder), None, "is missing", f"extract LRS3's {subset} archive into {root} "
                                    "(it must hold pretrain/, trainval/ and test/)", kind="missing subset"))
            continue
        videos = {p.with_suffix("") for p in folder.glob("*/*.mp4")}
        texts = {p.with_suffix("") for p in folder.glob("*/*.txt")}
        for stem in sorted(texts - videos):
            problems.append(Problem(f"{stem}.txt", None, "has no .mp4 beside it", REDOWNLOAD, kind="no video"))
        for stem in sorted(videos - texts):
            problems.append(Problem(f"{stem}.mp4", None, "has no .txt beside it", REDOWNLOAD, kind="no transcript"))
        for stem in sorted(videos & texts):
            clips.append(Clip(subset, stem.parent.name, stem.name, stem.with_suffix(".mp4")))
    return clips


def extract_audio(job: tuple[Path, Path]) -> tuple[float | None, str, str]:
    """Write a clip's audio track as 16-bit flac (kept if already there): (seconds, '', '') or (None, why, fix)."""
    video, flac = job
    if flac.is_file():
        try:
            info = soundfile.info(str(flac))
            return info.frames / info.samplerate, "", ""
        except RuntimeError:
            pass  # unreadable: written anew
    try:
        audio = read_video_audio(str(video))
        samples = pick_channel(audio, -1)
    except (VideoError, AudioError) as error:
        return None, error.message, error.fix
    flac.parent.mkdir(parents=True, exist_ok=True)
    write_audio(flac, samples, audio.fs, "flac")
    return len(samples) / audio.fs, "", ""


def prepare(root: Path, out: Path, audio_dir: Path, max_seconds: float, valid_utts: int, expect_test: int,
            seed: int, nj: int) -> dict[str, DataDir]:
    problems: list[Problem] = []
    clips = find_clips(root, problems)
    transcripts = {clip: parse_transcript(clip.video.with_suffix(".txt"), problems) for clip in clips}
    if problems:
        raise DataDirError(problems)
    flacs = {clip: audio_dir / clip.subset / clip.speaker / f"{clip.name}.flac" for clip in clips}
    with ProcessPoolExecutor(max(1, nj)) as pool:
        results = list(pool.map(extract_audio, [(clip.video, flacs[clip]) for clip in clips], chunksize=16))
    durations = {}
    for clip, (seconds, why, fix) in zip(clips, results):
        if seconds is None:
            problems.append(Problem(str(clip.video), None, why, fix, kind="bad video"))
        else:
            durations[clip] = seconds
    if problems:
        raise DataDirError(problems)

    segments: dict[Clip, list[Segment]] = {}
    markers, removed = 0, {}
    for clip in clips:
        text, words = transcripts[clip]
        if clip.subset == "pretrain":
            pieces = split_by_words(words, durations[clip], max_seconds) if words else \
                [(0.0, durations[clip], [Word(w, 0.0, 0.0) for w in text.split()])]
            candidates = [(f"{clip.utt_prefix}_{index:02d}", start, end, [w.word for w in group])
                          for index, (start, end, group) in enumerate(pieces)]
        else:
            candidates = [(clip.utt_prefix, 0.0, durations[clip], text.split())]
        segments[clip] = []
        for utt, start, end, raw in candidates:
            kept, count = clean_words(raw)
            markers += count
            if not kept:
                removed[utt] = (f"no words left ({' '.join(raw) or 'empty transcript'}) in "
                                f"{clip.video.with_suffix('.txt')}")
                continue
            segments[clip].append(Segment(utt, start, end, " ".join(kept)))

    test_count = sum(len(segments[c]) for c in clips if c.subset == "test")
    if expect_test and test_count != expect_test:
        raise DataDirError(Problem(str(root / "test"), None, f"gives {test_count} test utterances, not "
                                   f"{expect_test}: a partial or damaged extraction",
                                   "re-extract LRS3's test archive (1,321 clips), or pass --expect_test_utts "
                                   f"{test_count} if this test set is intended"))
    valid_speakers = draw_valid_speakers([c for c in clips if c.subset == "trainval"], segments, valid_utts, seed)
    sets = {
        "train": [c for c in clips if c.subset != "test" and c.speaker not in valid_speakers],
        "valid": [c for c in clips if c.subset == "trainval" and c.speaker in valid_speakers],
        "test": [c for c in clips if c.subset == "test"],
    }
    dirs = {}
    for name, members in sets.items():
        dirs[name] = data_dir(members, segments, durations, flacs)
        for note in dirs[name].write(out / name):
            print(f"note: {note}", file=sys.stderr)
    write_kv(out / REMOVED_LIST, removed)
    counts = ", ".join(f"{name} {len(d.utt_ids)}" for name, d in dirs.items())
    print(f"LRS3 {root}: {len(clips)} clips -> utterances: {counts} ({len(valid_speakers)} valid speakers held out "
          f"of train); {markers} non-speech marker(s) removed from texts; {len(removed)} utterance(s) removed "
          f"(listed in {out / REMOVED_LIST})")
    return dirs


def draw_valid_speakers(trainval: list[Clip], segments: dict[Clip, list[Segment]], wanted: int, seed: int
                        ) -> set[str]:
    utts_of: dict[str, int] = {}
    for clip in trainval:
        utts_of[clip.speaker] = utts_of.get(clip.speaker, 0) + len(segments[clip])
    speakers = sorted(utts_of, key=c_order)
    random.Random(seed).shuffle(speakers)
    chosen, count = set(), 0
    for speaker in speakers:
        if count >= wanted:
            break
        chosen.add(speaker)
        count += utts_of[speaker]
    return chosen


def data_dir(clips: list[Clip], segments: dict[Clip, list[Segment]], durations: dict[Clip, float],
             flacs: dict[Clip, Path]) -> DataDir:
    files: dict[str, dict[str, str]] = {name: {} for name in
                                        ("wav.scp", "video.scp", "reco2dur", "segments", "text", "utt2spk")}
    for clip in clips:
        if not segments[clip]:
            continue
        files["wav.scp"][clip.recording] = str(flacs[clip].resolve())
        files["video.scp"][clip.recording] = str(clip.video.resolve())
        files["reco2dur"][clip.recording] = format_seconds(durations[clip])
        for segment in segments[clip]:
            files["segments"][segment.utt] = (f"{clip.recording} {format_seconds(segment.start)} "
                                              f"{format_seconds(segment.end)}")
            files["text"][segment.utt] = segment.text
            files["utt2spk"][segment.utt] = clip.speaker
    return DataDir(None, files)  # written sorted, spk2utt made from utt2spk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max_segment_seconds", type=float, default=15.0,
                        help="longest span of words in a pretrain segment (default 15)")
    parser.add_argument("--valid_utts", type=int, default=1200,
                        help="at least this many trainval utterances (whole speakers) go to data/valid (default 1200)")
    parser.add_argument("--expect_test_utts", type=int, default=1321,
                        help="the number of test utterances required (default 1321, LRS3's; 0: any)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw of valid speakers")
    parser.add_argument("--nj", type=int, default=4, help="processes extracting the audio (default 4)")
    parser.add_argument("--audio_dir", help="where the clips' audio goes (default <data>/lrs3_audio)")
    parser.add_argument("lrs3_root", help="the folder holding pretrain/, trainval/ and test/")
    parser.add_argument("data", help="where data/{train,valid,test} go (e.g. data)")
    args = parser.parse_args(argv)
    if args.max_segment_seconds <= 0:
        parser.error("--max_segment_seconds must be positive")
    out = Path(args.data)
    try:
        prepare(Path(args.lrs3_root), out, Path(args.audio_dir) if args.audio_dir else out / "lrs3_audio",
                args.max_segment_seconds, args.valid_utts, args.expect_test_utts, args.seed, args.nj)
    except DataDirError as error:
        for line in format_problems(error.problems):
            print(f"{sys.argv[0]}: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
