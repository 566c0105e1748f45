"""utils/add_nonspeech.sh: a copy of a data dir with non-speech utterances (empty transcripts) mixed in.

    utils/add_nonspeech.sh [--share 0.1] [--silence_share 0.2] [--seed 0] [--min_seconds 1] [--fs 16000]
                           noise.scp data/src data/dest

Against the insertions a speech LLM makes on audio without speech (Pham et al., arXiv 2406.17272): the new
utterances are segments of the recordings of ``noise.scp`` (a wav.scp of noise, music, babble...; any format a
wav.scp value may take) and, for ``--silence_share`` of them, near-silence (Gaussian noise at -60 dBFS), each with an
empty transcript, so that the model learns to answer them with EOS alone. Their lengths are drawn from the speech
utterances' lengths (``utt2num_samples``, which utils/dump_audio.sh writes), cut to ``--min_seconds`` and the noise
recording's length. They make up ``--share`` of the output's utterances, written as flac files under
``data/dest/nonspeech_audio``, with speaker ``nonspeech`` and ids ``nonspeech-<source>-<n>``; scoring counts the
insertions on every utterance with an empty reference. (No ``utt2category``: ESPnet's training would batch by it.)
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from speechllm.data.audio import AudioError, pick_channel, read_scp_value, resample, write_audio
from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, read_kv
from speechllm.data.validate import require_valid

PROG = "utils/add_nonspeech.sh"
SPEAKER = "nonspeech"
SILENCE_DBFS = -60.0
# Files of a speech data dir that the new utterances get a line in; any other per-utterance file is refused.
FILLED = ("wav.scp", "text", "utt2spk", "segments", "utt2num_samples", "utt2dur", "utt2uniq")


def nonspeech_count(speech: int, share: float) -> int:
    """How many non-speech utterances make up ``share`` of the output (speech + non-speech)."""
    return round(share * speech / (1.0 - share))


def add_nonspeech(noise_scp: str, src: str | Path, dest: str | Path, share: float = 0.1,
                  silence_share: float = 0.2, seed: int = 0, min_seconds: float = 1.0,
                  fs: int = 16000) -> tuple[int, int, int, list[str]]:
    """Write ``dest``; returns (speech utterances, from noise, silence, notes)."""
    if not 0.0 <= share < 1.0:
        raise DataDirError(Problem(PROG, None, f"--share {share} is not in [0, 1)", "give the non-speech share of "
                                   "the output, e.g. 0.1"))
    if not 0.0 <= silence_share <= 1.0:
        raise DataDirError(Problem(PROG, None, f"--silence_share {silence_share} is not in [0, 1]",
                                   "give the share of near-silence among the non-speech utterances, e.g. 0.2"))
    if Path(src).resolve() == Path(dest).resolve():
        raise DataDirError(Problem(str(dest), None, "is also the source", "write the mixed set to a new dir"))
    require_valid(src)
    data = DataDir.read(src)
    other = sorted(name for name in data.files if name not in FILLED + ("spk2utt", "spk2gender", "reco2dur"))
    if other:
        raise DataDirError(Problem(str(src), None, f"has {other}, which the non-speech utterances would lack",
                                   f"run {PROG} on the audio data dir (before features are dumped)"))
    if "utt2num_samples" not in data.files:
        raise DataDirError(Problem(str(Path(src) / "utt2num_samples"), None, "does not exist: the non-speech "
                                   "lengths are drawn from the speech lengths", "dump the audio first "
                                   "(utils/dump_audio.sh writes it)"))
    noises = read_kv(noise_scp, "wav.scp")
    count = nonspeech_count(len(data.utt_ids), share)
    silences = round(silence_share * count) if noises else count
    if count > silences and not noises:
        raise DataDirError(Problem(noise_scp, None, "lists no recording", "give a wav.scp of noise or music"))
    rng = random.Random(seed)
    lengths = [int(n) for n in data.files["utt2num_samples"].values()]
    min_samples = int(min_seconds * fs)
    audio_dir = Path(dest) / "nonspeech_audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, np.ndarray] = {}
    files = {name: dict(entries) for name, entries in data.files.items()}
    noise_ids = sorted(noises)
    rng.shuffle(noise_ids)
    for n in range(count):
        length = max(min_samples, rng.choice(lengths))
        if n < silences:
            source = "silence"
            samples = np.random.default_rng(seed * 100003 + n).normal(0.0, 10 ** (SILENCE_DBFS / 20), length)
        else:
            source = noise_ids[(n - silences) % len(noise_ids)]
            if source not in loaded:
                try:
                    audio = read_scp_value(noises[source])
                    samples = pick_channel(audio, 0)  # the first channel of a multi-channel recording
                except AudioError as error:
                    raise DataDirError(Problem(noise_scp, None, f"recording '{source}': {error.message}",
                                               error.fix)) from None
                loaded[source] = resample(samples, audio.fs, fs) if audio.fs != fs else samples
            recording = loaded[source]
            length = min(length, len(recording))
            start = rng.randrange(len(recording) - length + 1)
            samples = recording[start:start + length]
        utt = f"{SPEAKER}-{source}-{n:05d}"
        path = audio_dir / f"{utt}.flac"
        write_audio(path, samples.astype(np.float32), fs, "flac")
        files["utt2spk"][utt] = SPEAKER
        files["text"][utt] = ""
        files["utt2num_samples"][utt] = str(len(samples))
        if "utt2dur" in files:
            files["utt2dur"][utt] = f"{len(samples) / fs:.3f}"
        if "utt2uniq" in files:
            files["utt2uniq"][utt] = utt
        if data.has_segments:  # the new recording is the utterance
            files["wav.scp"][utt] = str(path)
            files["segments"][utt] = f"{utt} 0 {len(samples) / fs:.3f}"
            if "reco2dur" in files:
                files["reco2dur"][utt] = f"{len(samples) / fs:.3f}"
        else:
            files["wav.scp"][utt] = str(path)
    notes = DataDir(dest, files).write(dest)
    require_valid(dest)
    return len(data.utt_ids), count - silences, silences, notes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--share", type=float, default=0.1, help="share of the output that is non-speech (0.1)")
    parser.add_argument("--silence_share", type=float, default=0.2,
                        help="share of the non-speech utterances that are near-silence (0.2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--min_seconds", type=float, default=1.0, help="shortest non-speech utterance (1.0 s)")
    parser.add_argument("--fs", type=int, default=16000, help="sample rate of the data dir's audio (16000)")
    parser.add_argument("noise_scp", help="wav.scp of noise, music or babble recordings")
    parser.add_argument("src")
    parser.add_argument("dest")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def body() -> int:
        speech, noise, silence, notes = add_nonspeech(args.noise_scp, args.src, args.dest, args.share,
                                                      args.silence_share, args.seed, args.min_seconds, args.fs)
        for note in notes:
            print(f"{PROG}: note: {note}", file=sys.stderr)
        print(f"{PROG}: {args.dest}: {speech} speech utterances and {noise + silence} non-speech "
              f"({noise} cut from {args.noise_scp}, {silence} near-silence): share {args.share:g}", file=sys.stderr)
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
