"""utils/make_snr_sets.sh: copies of a test set with noise mixed in at chosen signal-to-noise ratios.

    utils/make_snr_sets.sh [--snrs "clean 10 5 0 -5"] [--seed 0] [--snr_over whole] [--babble_talkers 5]
                           [--fs 16000] [--data_out DIR] data/test (noise.scp|babble) dump/snr

For each SNR N of --snrs, the data dir <data_out>/<set>_snr<N> (e.g. data/test_snr5, data/test_snr-5; <data_out>
is the source's parent unless given) holds the source's utterances with noise added at N dB, its wavs written to
dump/snr/<set>_snr<N>/wav/<utt>.wav (16-bit) and one line per utterance in dump/snr/<set>_snr<N>/mix_report.txt:
`utt requested_db measured_db noise_gain output_scale noise`. `clean` gives <set>_clean, the source's files as
they are. Every other file of the data dir (text, utt2spk, roi.scp, video.scp, utt2num_samples, ...) is carried
over unchanged: the mixture is as long as the speech, so videos and lip ROIs still match it.

The noise: `noise.scp` is a wav.scp of noise recordings (any wav.scp value; resampled to --fs); each utterance gets
one recording, from a random point, looped if shorter. `babble` sums --babble_talkers other utterances of the same
set (other speakers where the set has enough), each at the same level, from random points, looped. The choice is
random but fixed by --seed and the utterance id, and the same for every SNR: only the noise's level differs
between <set>_snr10 and <set>_snr0.

The SNR: noise power over the utterance against the speech power over the whole utterance (--snr_over whole, the
default, as AV-HuBERT and auto_avsr mix their noisy LRS3 test sets), or over its active part (--snr_over active:
the 20 ms frames within 30 dB of its loudest frame, so that leading and trailing silence do not count). A mixture
that would clip is scaled down as a whole (speech and noise alike, so the SNR stays), recorded in the report.

A rerun with the same settings rewrites nothing (each wav carries a signature of its inputs and settings).
"""
from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from speechllm.data.audio import AudioError, pick_channel, read_scp_value, resample, truncation_problem, write_audio
from speechllm.data.cli import run_tool
from speechllm.data.datadir import DataDir, DataDirError, Problem, kv_lines, read_kv_with_lines
from speechllm.data.dump import check_file_names
from speechllm.data.validate import require_valid

PROG = "utils/make_snr_sets.sh"
TAG = "speechllm.data.snr_mix.v1"  # start of the comment stored in each written wav, for reruns
BABBLE = "babble"
CLEAN = "clean"
FRAME_S = 0.02  # frames of the active-speech measure
ACTIVE_RANGE_DB = 30.0  # a frame within this of the loudest frame is active speech
PEAK_LIMIT = 0.99  # largest sample of a written mixture (full scale 1.0)
SNR_EXAMPLE = 'e.g. --snrs "clean 10 5 0 -5"'
# Files that would no longer describe the mixed audio: refused, with what to do instead.
REFUSED = {"segments": "dump the audio first (utils/dump_audio.sh writes one file per utterance)",
           "feats.scp": "mix the audio data dir, before features are dumped",
           "utt2num_frames": "mix the audio data dir, before features are dumped"}


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    snr_over: str = "whole"  # or "active"
    babble_talkers: int = 5
    fs: int = 16000


def parse_snrs(text: str) -> list[str]:
    """'clean 10 5 0 -5' (spaces or commas) -> ['clean', '10', '5', '0', '-5']: 'clean' or finite numbers of dB,
    written as they will name the data dirs."""
    items = [item for item in text.replace(",", " ").split() if item]
    if not items:
        raise DataDirError(Problem("--snrs", None, "is empty", f"give the SNRs in dB, {SNR_EXAMPLE}"))
    names = []
    for item in items:
        if item == CLEAN:
            names.append(CLEAN)
            continue
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise DataDirError(Problem("--snrs", None, f"'{item}' is neither a number of dB nor '{CLEAN}'",
                                       f"give numbers such as 10 or -5, {SNR_EXAMPLE}"))
        names.append(f"{value:g}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataDirError(Problem("--snrs", None, f"names {repeated} more than once", "give each SNR once"))
    return names


def set_name(source_name: str, snr: str) -> str:
    return f"{source_name}_{CLEAN}" if snr == CLEAN else f"{source_name}_snr{snr}"


def stable_seed(*parts) -> int:
    """A 64-bit seed from strings, the same in every process (unlike Python's hash())."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little")


def speech_power(samples: np.ndarray, fs: int, over: str) -> float:
    """Mean power of the whole utterance, or of its active frames (within ACTIVE_RANGE_DB of the loudest)."""
    if over == "whole":
        return float(np.mean(np.square(samples)))
    frame = max(1, round(FRAME_S * fs))
    count = max(1, len(samples) // frame)
    energies = np.mean(np.square(samples[:count * frame].reshape(count, frame)), axis=1)
    active = energies >= energies.max() * 10 ** (-ACTIVE_RANGE_DB / 10)
    return float(np.mean(energies[active]))


def looped(recording: np.ndarray, start: int, length: int) -> np.ndarray:
    """`length` samples of `recording` from `start`, wrapping around its end."""
    return np.take(recording, start + np.arange(length), mode="wrap")


class NoiseSource:
    """The noise of each utterance: one recording of a noise list, or babble of the set's other utterances."""

    def __init__(self, spec: str, data: DataDir, speech: dict[str, np.ndarray], settings: Settings):
        self.settings = settings
        self.babble = spec == BABBLE
        self.speech = speech
        self.speakers = data.files["utt2spk"]
        if self.babble:
            if settings.babble_talkers < 1:
                raise DataDirError(Problem("--babble_talkers", None, f"{settings.babble_talkers} is below 1",
                                           "give the number of talkers summed into the babble, e.g. 5"))
            if len(speech) <= settings.babble_talkers:
                raise DataDirError(Problem(str(data.path), None, f"has {len(speech)} utterance(s): babble of "
                                           f"{settings.babble_talkers} other talkers needs at least "
                                           f"{settings.babble_talkers + 1}", "lower --babble_talkers, or give a "
                                           "noise list (a wav.scp of noise recordings) instead of babble"))
            self.recordings = {}
        else:
            self.recordings = self.load_noise_list(spec)
        self.description = (f"babble of {settings.babble_talkers} talkers" if self.babble
                            else f"{len(self.recordings)} recording(s) of {spec}")

    def load_noise_list(self, path: str) -> dict[str, np.ndarray]:
        if not os.path.isfile(path):
            raise DataDirError(Problem(path, None, "does not exist", f"give a wav.scp of noise recordings, or "
                                       f"'{BABBLE}' to mix in other utterances of the set"))
        entries, lines = read_kv_with_lines(path, "wav.scp")
        if not entries:
            raise DataDirError(Problem(path, None, "lists no recording", "give one 'id path' line per noise "
                                       f"recording, or '{BABBLE}'"))
        recordings = {}
        for noise_id, value in entries.items():
            try:
                audio = read_scp_value(value)
                samples = pick_channel(audio, 0)  # the first channel of a multi-channel recording
            except AudioError as error:
                raise DataDirError(Problem(path, lines.get(noise_id), f"noise '{noise_id}': {error.message}",
                                           "correct the path on that line of the noise list, or delete the "
                                           "line")) from None
            if audio.fs != self.settings.fs:
                samples = resample(samples, audio.fs, self.settings.fs)
            if not np.any(samples):
                raise DataDirError(Problem(path, lines.get(noise_id), f"noise '{noise_id}' is silent (all zeros)",
                                           "remove its line or give another recording"))
            recordings[noise_id] = samples
        return recordings

    def draw(self, utt: str, length: int) -> tuple[np.ndarray, str]:
        """The noise for `utt` (length samples, before scaling to the SNR) and what it is made of."""
        rng = np.random.default_rng(stable_seed(TAG, self.settings.seed, utt))
        if not self.babble:
            noise_id = sorted(self.recordings)[rng.integers(len(self.recordings))]
            recording = self.recordings[noise_id]
            start = int(rng.integers(len(recording)))
            return looped(recording, start, length), f"{noise_id}@{start}"
        others = sorted(u for u in self.speech if u != utt and self.speakers[u] != self.speakers[utt])
        if len(others) < self.settings.babble_talkers:  # too few other speakers: any other utterance
            others = sorted(u for u in self.speech if u != utt)
        talkers = [others[i] for i in rng.choice(len(others), self.settings.babble_talkers, replace=False)]
        babble = np.zeros(length)
        for talker in talkers:
            voice = self.speech[talker]
            part = looped(voice, int(rng.integers(len(voice))), length)
            babble += part / max(np.sqrt(np.mean(np.square(part))), 1e-9)
        return babble, "+".join(talkers)


def read_speech(data: DataDir, fs: int) -> dict[str, np.ndarray]:
    speech = {}
    for utt in data.utt_ids:
        file, line = data.where("wav.scp", utt)
        try:
            audio = read_scp_value(data.files["wav.scp"][utt])
            samples = pick_channel(audio, -1)
        except AudioError as error:
            raise DataDirError(Problem(file, line, f"utterance '{utt}': {error.message}", error.fix)) from None
        if audio.fs != fs:
            raise DataDirError(Problem(file, line, f"utterance '{utt}' has sample rate {audio.fs} Hz, not --fs {fs}",
                                       f"pass --fs {audio.fs}, or dump the audio at {fs} Hz first "
                                       f"(utils/dump_audio.sh --fs {fs} --resample true)"))
        if not np.any(samples):
            raise DataDirError(Problem(file, line, f"utterance '{utt}' is silent (all zeros): no SNR can be set",
                                       "drop the utterance (delete its line, then utils/fix_data_dir.sh)"))
        speech[utt] = samples
    return speech


def signature(entry: str, snr: str, settings: Settings, noise_spec: str) -> str:
    text = f"{entry}|{snr}|{settings}|{noise_spec}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def reusable(path: Path, tag: str) -> bool:
    """An earlier output written from the same inputs and settings, complete."""
    if not path.is_file() or truncation_problem(str(path)):
        return False
    try:
        with sf.SoundFile(path) as stream:
            return stream.comment == tag and stream.frames > 0
    except (sf.SoundFileError, RuntimeError):
        return False


def mix_one(speech: np.ndarray, noise: np.ndarray, snr_db: float, settings: Settings):
    """(mixture, noise gain, output scale, measured SNR in dB) for `snr_db`."""
    power = speech_power(speech, settings.fs, settings.snr_over)
    noise_power = float(np.mean(np.square(noise)))
    gain = math.sqrt(power / (noise_power * 10 ** (snr_db / 10)))
    mixture = speech + gain * noise
    peak = float(np.max(np.abs(mixture)))
    scale = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    measured = 10 * math.log10(power / float(np.mean(np.square(gain * noise))))
    return mixture * scale, gain, scale, measured


def make_snr_sets(src: str | Path, noise_spec: str, dump_dir: str | Path, snrs: list[str],
                  settings: Settings = Settings(), data_out: str | Path | None = None) -> list[str]:
    """Write the data dirs and wavs; returns one summary line per set."""
    src = Path(src)
    if settings.snr_over not in ("whole", "active"):
        raise DataDirError(Problem("--snr_over", None, f"'{settings.snr_over}' is neither whole nor active",
                                   "give --snr_over whole (the speech power over the whole utterance) or active"))
    require_valid(src)
    data = DataDir.read(src)
    refused = sorted(set(data.files) & set(REFUSED))
    if refused:
        raise DataDirError(Problem(str(src / refused[0]), None, "exists: the mixed audio would no longer match it",
                                   REFUSED[refused[0]]))
    check_file_names(data)
    data_out = Path(data_out) if data_out is not None else src.parent
    summaries = []
    noisy = [snr for snr in snrs if snr != CLEAN]
    speech = read_speech(data, settings.fs) if noisy else {}
    noise = NoiseSource(noise_spec, data, speech, settings) if noisy else None
    for snr in snrs:
        name = set_name(src.name, snr)
        if snr == CLEAN:
            written = DataDir(data_out / name, data.files).write_changed(data_out / name)
            summaries.append(f"{data_out / name}: the {len(data.utt_ids)} utterances of {src} as they are "
                             f"({written} files written)")
            continue
        wav_dir = Path(dump_dir) / name / "wav"
        wav_dir.mkdir(parents=True, exist_ok=True)
        files = {file: dict(entries) for file, entries in data.files.items() if file != "spk2utt"}
        report, reused, scaled, measured_all = {}, 0, 0, []
        for utt in data.utt_ids:
            samples = speech[utt]
            noise_samples, what = noise.draw(utt, len(samples))
            mixture, gain, scale, measured = mix_one(samples, noise_samples, float(snr), settings)
            path = wav_dir / f"{utt}.wav"
            tag = f"{TAG} {signature(data.files['wav.scp'][utt], snr, settings, noise_spec)}"
            if reusable(path, tag):
                reused += 1
            else:
                write_audio(path, mixture, settings.fs, "wav", comment=tag)
            files["wav.scp"][utt] = str(path)
            report[utt] = f"{snr} {measured:.3f} {gain:.6g} {scale:.6g} {what}"
            scaled += scale < 1.0
            measured_all.append(measured)
        report_path = Path(dump_dir) / name / "mix_report.txt"
        report_text = "".join(kv_lines(report))
        if not report_path.is_file() or report_path.read_text() != report_text:
            report_path.write_text(report_text)
        written_files = DataDir(data_out / name, files).write_changed(data_out / name)
        summaries.append(
            f"{data_out / name}: {len(report)} utterances with {noise.description} at {snr} dB (speech power over "
            f"the {settings.snr_over} utterance{'' if settings.snr_over == 'whole' else ' part'}; measured "
            f"{round(min(measured_all), 2) + 0.0:.2f} to {round(max(measured_all), 2) + 0.0:.2f} dB): "
            f"{len(report) - reused} wavs written, {reused} reused in {wav_dir}; {scaled} scaled down against clipping; {written_files} data-dir files "
            f"written")
    return summaries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--snrs", default="clean 10 5 0 -5",
                        help="SNRs in dB and/or 'clean', separated by spaces or commas (default: clean 10 5 0 -5)")
    parser.add_argument("--seed", type=int, default=0, help="fixes each utterance's noise (default 0)")
    parser.add_argument("--snr_over", default="whole", choices=("whole", "active"),
                        help="speech power over the whole utterance or its active frames (default whole)")
    parser.add_argument("--babble_talkers", type=int, default=5, help="utterances summed into babble (default 5)")
    parser.add_argument("--fs", type=int, default=16000, help="sample rate of the data dir's audio (default 16000)")
    parser.add_argument("--data_out", help="where the new data dirs go (default: beside the source data dir)")
    parser.add_argument("src", help="the data dir to mix noise into, e.g. data/test")
    parser.add_argument("noise", help=f"a wav.scp of noise recordings, or '{BABBLE}'")
    parser.add_argument("dump_dir", help="where the mixed wavs go, e.g. dump/snr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)

    def body() -> int:
        snrs = parse_snrs(args.snrs)
        settings = Settings(args.seed, args.snr_over, args.babble_talkers, args.fs)
        for line in make_snr_sets(args.src, args.noise, args.dump_dir, snrs, settings, args.data_out):
            print(f"{PROG}: {line}")
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
