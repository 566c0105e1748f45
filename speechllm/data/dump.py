"""Dump one data dir (a part, in utils/dump_audio.sh) to one mono 16-bit audio file per utterance.

    python3 -m speechllm.data.dump [--fs 16000] [--audio_format flac] [--resample false] [--channel -1]
        [--orig_data_dir data/x] --audio_dir dump/raw/x/data data/x/part dump/raw/x/part_out

Reads every wav.scp entry (cutting segments when there is a segments file), checks it (readable, complete, not
empty, no NaN, sample rate == --fs unless --resample true, mono unless --channel N), writes
<audio_dir>/<utt>.<format>, and a data dir at the output path with the new wav.scp, utt2num_samples and the
utterance and speaker files of the input. Problems name the file and line of --orig_data_dir (the dir the user
gave, of which the input is a part). An utterance whose file exists with the length recorded when it was written
under the same settings is not redone, so a failed run can be resumed.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechllm.data.audio import (
    DROP_UTTERANCE, AudioError, check_finite, conform_rate, pick_channel, read_scp_value, truncation_problem,
    write_audio)
from speechllm.data.cli import parse_bool, run_tool
from speechllm.data.datadir import (
    DataDir, DataDirError, Problem, c_order, format_problems, format_seconds, read_kv_with_lines)
from speechllm.data.progress import Progress

PROG = "python3 -m speechllm.data.dump"
TAG = "speechllm.data.dump"  # start of the comment stored in each written file, for resuming
MAX_OVERSHOOT = 0.5  # seconds a segment may run past the end of its recording (cut short), as Kaldi's default
NOT_CARRIED = ("wav.scp", "segments", "utt2num_samples", "utt2dur", "feats.scp", "utt2num_frames")
DONE = "done:"  # starts the last log line of a part that succeeded


@dataclass(frozen=True)
class Settings:
    fs: int = 16000
    audio_format: str = "flac"
    resample: bool = False
    channel: int = -1

    def signature(self, value: str, segment: tuple[float, float] | None) -> str:
        """What an output file depends on (the resample flag does not change a file that succeeds)."""
        # --channel -1 writes only mono sources, which --channel 0 writes alike: rerunning with --channel 0 to get
        # past multi-channel files keeps the rest.
        key = f"{value}\n{segment}\n{self.fs}\n{max(self.channel, 0)}\n{self.audio_format}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Item:
    utt: str
    recording: str
    value: str  # the wav.scp entry
    segment: tuple[float, float] | None


@dataclass
class PartResult:
    num_samples: dict[str, int] = field(default_factory=dict)
    reused: int = 0
    problems: list[Problem] = field(default_factory=list)
    clipped: dict[str, int] = field(default_factory=dict)


def plan(data: DataDir) -> list[Item]:
    """One item per utterance, ordered by recording and start so each recording is read once."""
    wav = data.files["wav.scp"]
    items = []
    for utt in data.utt_ids:
        if data.has_segments:
            recording, start, end = data.files["segments"][utt].split()
            items.append(Item(utt, recording, wav[recording], (float(start), float(end))))
        else:
            items.append(Item(utt, utt, wav[utt], None))
    return sorted(items, key=lambda i: (c_order(i.recording), i.segment or (0.0, 0.0), c_order(i.utt)))


def reusable_length(path: Path, signature: str) -> int | None:
    """Length of an earlier output written from the same entry and settings, if complete; else None.

    Complete: the length recorded when it was written matches the header, and the last sample can be read (a cut
    FLAC keeps its header; a cut WAV is caught by its data-chunk size)."""
    if not path.is_file() or truncation_problem(str(path)):
        return None
    try:
        with sf.SoundFile(path) as stream:
            recorded, frames = stream.comment.split(), stream.frames
            if recorded != [TAG, signature, str(frames)] or frames == 0:
                return None
            stream.seek(frames - 1)
            return frames if len(stream.read(1)) == 1 else None
    except (sf.SoundFileError, RuntimeError):
        return None


def load_recording(value: str, settings: Settings) -> np.ndarray:
    """The checked mono samples of a wav.scp entry at --fs."""
    audio = read_scp_value(value)
    if len(audio.samples) == 0:
        raise AudioError("the audio is empty (0 samples)", f"regenerate it, {DROP_UTTERANCE}")
    check_finite(audio)
    return conform_rate(pick_channel(audio, settings.channel), audio.fs, settings.fs, settings.resample)


def cut_segment(samples: np.ndarray, segment: tuple[float, float], fs: int) -> np.ndarray:
    start, end = segment
    first, last = round(start * fs), round(end * fs)
    duration = len(samples) / fs
    fix = f"correct the times in segments, {DROP_UTTERANCE}"
    if first >= len(samples) or last > len(samples) + round(MAX_OVERSHOOT * fs):
        raise AudioError(f"segment {format_seconds(start)}-{format_seconds(end)} s runs past the end of the "
                         f"recording ({format_seconds(duration)} s)", fix)
    if last <= first:
        raise AudioError(f"segment {format_seconds(start)}-{format_seconds(end)} s holds no sample at {fs} Hz", fix)
    return samples[first:min(last, len(samples))]


class RecordingCache:
    """The last recording read (segments of one recording come together in plan order), or its error."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.key: str | None = None
        self.samples: np.ndarray | None = None
        self.error: AudioError | None = None

    def get(self, item: Item) -> np.ndarray:
        if item.recording != self.key:
            self.key, self.samples, self.error = item.recording, None, None
            try:
                self.samples = load_recording(item.value, self.settings)
            except AudioError as error:
                self.error = error
        if self.error:
            raise self.error
        assert self.samples is not None
        return self.samples


def recording_problems(failed: dict[str, tuple[AudioError, list[str]]], data: DataDir, lines: dict[str, int],
                       wav_scp: str) -> list[Problem]:
    """One problem per failed wav.scp entry, naming the utterances it holds back."""
    problems = []
    for recording, (error, utts) in failed.items():
        if data.has_segments:
            subject = f"recording '{recording}' ({len(utts)} utterance(s), e.g. '{utts[0]}')"
        else:
            subject = f"utterance '{recording}'"
        problems.append(Problem(wav_scp, lines.get(recording), f"{subject}: {error.message}", error.fix))
    return problems


def dump_part(in_dir: str | Path, out_dir: str | Path, audio_dir: str | Path, settings: Settings,
              orig_dir: str | Path | None = None) -> PartResult:
    in_dir, out_dir, audio_dir = Path(in_dir), Path(out_dir), Path(audio_dir)
    orig_dir = Path(orig_dir) if orig_dir is not None else in_dir
    data = DataDir.read(in_dir)
    check_file_names(data)
    lines = {name: read_kv_with_lines(orig_dir / name)[1] for name in ("wav.scp", "segments")
             if (orig_dir / name).is_file()}
    audio_dir.mkdir(parents=True, exist_ok=True)
    result = PartResult()
    failed: dict[str, tuple[AudioError, list[str]]] = {}
    cache = RecordingCache(settings)
    items = plan(data)
    progress = Progress(len(items), f"dump {in_dir}")
    for item in progress.iterate(items):
        path = audio_dir / f"{item.utt}.{settings.audio_format}"
        signature = settings.signature(item.value, item.segment)
        length = reusable_length(path, signature)
        if length:
            result.num_samples[item.utt], result.reused = length, result.reused + 1
            continue
        try:
            samples = cache.get(item)
        except AudioError as error:
            failed.setdefault(item.recording, (error, []))[1].append(item.utt)
            continue
        if item.segment:
            try:
                samples = cut_segment(samples, item.segment, settings.fs)
            except AudioError as error:
                result.problems.append(Problem(str(orig_dir / "segments"), lines.get("segments", {}).get(item.utt),
                                               f"utterance '{item.utt}': {error.message}", error.fix))
                continue
        clipped = write_audio(path, samples, settings.fs, settings.audio_format,
                              comment=f"{TAG} {signature} {len(samples)}")
        if clipped:
            result.clipped[item.utt] = clipped
        result.num_samples[item.utt] = len(samples)
    progress.close()
    result.problems = recording_problems(failed, data, lines.get("wav.scp", {}), str(orig_dir / "wav.scp")) \
        + result.problems
    if not result.problems:
        write_part_dir(data, result, audio_dir, settings, out_dir)
    return result


def check_file_names(data: DataDir) -> None:
    bad = [u for u in data.utt_ids if "/" in u or u in (".", "..")]
    if bad:
        file, line = data.where("utt2spk", bad[0])
        raise DataDirError(Problem(file, line, f"{len(bad)} utterance id(s) cannot name a file (e.g. '{bad[0]}')",
                                   "rename them without '/'"))


def write_part_dir(data: DataDir, result: PartResult, audio_dir: Path, settings: Settings, out_dir: Path) -> None:
    files = {name: entries for name, entries in data.files.items()
             if data.level(name) in ("utt", "spk") and name not in NOT_CARRIED}
    files["wav.scp"] = {utt: str(audio_dir / f"{utt}.{settings.audio_format}") for utt in result.num_samples}
    files["utt2num_samples"] = {utt: str(n) for utt, n in result.num_samples.items()}
    DataDir(None, files).write(out_dir)


def add_audio_options(parser: argparse.ArgumentParser) -> None:
    """The output options, shared with utils/dump_audio.sh (ESPnet's names)."""
    parser.add_argument("--fs", type=int, default=16000, help="sample rate of the output (default 16000)")
    parser.add_argument("--audio_format", choices=("flac", "wav"), default="flac")
    parser.add_argument("--resample", type=parse_bool, default=False,
                        help="true: resample audio at another rate to --fs; false (default): such audio is an error")
    parser.add_argument("--channel", type=int, default=-1,
                        help="channel to keep of multi-channel audio (0-based); -1 (default): multi-channel is an "
                             "error")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(args.fs, args.audio_format, args.resample, args.channel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Dump the audio of one data dir (a part).")
    add_audio_options(parser)
    parser.add_argument("--orig_data_dir", help="the data dir whose lines problems refer to (default: data_dir)")
    parser.add_argument("--audio_dir", required=True, help="where the audio files go")
    parser.add_argument("data_dir")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    settings = settings_from(args)

    def body() -> int:
        result = dump_part(args.data_dir, args.out_dir, args.audio_dir, settings, args.orig_data_dir)
        for utt, count in result.clipped.items():
            print(f"warning: utterance '{utt}': {count} samples beyond [-1, 1] were clipped", file=sys.stderr)
        for line in format_problems(result.problems, cap_per_kind=1000):
            print(line, file=sys.stderr)
        written = len(result.num_samples) - result.reused
        status = f"{written} written, {result.reused} reused from an earlier run"
        if result.problems:
            print(f"{PROG}: {args.data_dir}: {status}; {len(result.problems)} problem(s), so no part data dir",
                  file=sys.stderr)
            return 1
        print(f"{DONE} {args.data_dir}: {status}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
