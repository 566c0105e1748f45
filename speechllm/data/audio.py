"""Audio behind wav.scp entries: reading (files, `cmd |` pipes, Kaldi ark), checks, speed change, resampling.

Every failure is an AudioError saying what is wrong and how to fix it; callers add the data-dir file and line.
Samples are float64 in [-1, 1], shaped (frames, channels) until a channel is picked.
"""
from __future__ import annotations

import io
import os
import re
import shlex
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf

from speechllm.data.datadir import DROP_UTTERANCE

# The wav.scp pipe that applies a speed factor (see speechllm.data.speed); dump recognises it and applies the
# factor in-process, which avoids starting a Python per utterance.
SPEED_COMMAND = "python3 -m speechllm.data.speed"
_SPEED_PIPE = re.compile(r"(?:(?P<inner>.*\|)\s+)?python3 -m speechllm\.data\.speed (?P<factor>\S+) (?P<src>.+?)\s*\|")
_ARK_ENTRY = re.compile(r"(?P<ark>.+):(?P<offset>[0-9]+)")


class AudioError(Exception):
    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass
class Audio:
    samples: np.ndarray  # (frames, channels), float64
    fs: int


# ---------------------------------------------------------------------------------------------------------------
# Speed factors and resampling.

def parse_speed_factor(text: str) -> Fraction:
    """'0.9' -> 9/10. Factors must be small ratios (denominator <= 1000) so polyphase resampling stays cheap."""
    try:
        exact = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"speed factor '{text}' is not a number (e.g. 0.9 or 1.1)") from None
    factor = exact.limit_denominator(1000)
    if factor <= 0 or factor != exact:
        raise ValueError(f"speed factor '{text}' must be a positive number with at most 3 decimals (e.g. 0.9)")
    return factor


def _resample_poly(samples: np.ndarray, up: int, down: int) -> np.ndarray:
    from scipy.signal import resample_poly  # imported here: scipy.signal takes a while to import
    divisor = gcd(up, down)
    up, down = up // divisor, down // divisor
    if up == down:
        return samples
    return resample_poly(samples, up, down, axis=0)


def change_speed(samples: np.ndarray, factor: Fraction) -> np.ndarray:
    """Tempo and pitch by `factor`, as sox `speed`: play the samples at fs*factor, resample back to fs.

    The output has ceil(n / factor) frames (see perturbed_length)."""
    return _resample_poly(samples, factor.denominator, factor.numerator)


def perturbed_length(num_samples: int, factor: Fraction) -> int:
    return -(-num_samples * factor.denominator // factor.numerator)


def resample(samples: np.ndarray, from_fs: int, to_fs: int) -> np.ndarray:
    """Polyphase resampling with a Kaiser-windowed low-pass (scipy's resample_poly)."""
    return _resample_poly(samples, to_fs, from_fs)


def speed_pipe(factor_text: str, value: str) -> str:
    """The wav.scp value that plays entry `value` at speed `factor_text`."""
    if value.endswith("|"):
        return f"{value} {SPEED_COMMAND} {factor_text} - |"
    return f"{SPEED_COMMAND} {factor_text} {shlex.quote(value)} |"


def split_speed_pipe(value: str) -> tuple[str, str] | None:
    """(inner wav.scp value, factor text) of a value made by speed_pipe, else None."""
    match = _SPEED_PIPE.fullmatch(value.strip())
    if not match:
        return None
    if match["inner"]:
        return (match["inner"], match["factor"]) if match["src"] == "-" else None
    source = shlex.split(match["src"])
    return (source[0], match["factor"]) if len(source) == 1 and source[0] != "-" else None


# ---------------------------------------------------------------------------------------------------------------
# Reading.

def truncation_problem(path: str) -> str | None:
    """Why a WAV or NIST SPHERE file holds less audio than its header declares (libsndfile reads such files
    silently short), or None."""
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        head = stream.read(1024)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            offset = 12
            while offset + 8 <= size:
                stream.seek(offset)
                chunk, length = struct.unpack("<4sI", stream.read(8))
                if chunk == b"data":
                    available = size - offset - 8
                    # 0 and 0xFFFFFFFF mark streamed WAV whose writer could not know the length.
                    if length not in (0, 0xFFFFFFFF) and length > available:
                        return f"its WAV header declares {length} bytes of samples but the file holds {available}"
                    return None
                offset += 8 + length + (length & 1)
        if head[:8] == b"NIST_1A\n":
            header = head.decode("ascii", "replace")
            fields = dict(re.findall(r"^(\w+) -\w+ (\S+)", header, re.MULTILINE))
            if "shorten" in fields.get("sample_coding", "") or "sample_count" not in fields:
                return None  # compressed: the sizes do not compare
            frame_bytes = int(fields.get("sample_n_bytes", 2)) * int(fields.get("channel_count", 1))
            declared = int(fields["sample_count"])
            held = (size - int(header.split("\n")[1])) // frame_bytes
            if held < declared:
                return f"its NIST SPHERE header declares {declared} samples but the file holds {held}"
    return None


def read_file(path: str) -> Audio:
    if not os.path.isfile(path):
        raise AudioError(f"audio file '{path}' does not exist", f"correct the path in wav.scp, {DROP_UTTERANCE}")
    shortfall = truncation_problem(path)
    if shortfall:
        raise AudioError(f"audio file '{path}' is truncated: {shortfall}",
                         f"re-extract or re-download the file, {DROP_UTTERANCE}")
    try:
        with sf.SoundFile(path) as stream:
            return Audio(stream.read(dtype="float64", always_2d=True), stream.samplerate)
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioError(f"audio file '{path}' cannot be read ({error}): it is truncated, corrupt or not audio",
                         f"check the file (e.g. convert it with ffmpeg -i IN -ac 1 OUT.wav), {DROP_UTTERANCE}"
                         ) from None


def read_pipe(command: str) -> Audio:
    result = subprocess.run(command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    last_error = result.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["(no message)"]
    if result.returncode != 0:
        fix = f"run the command by hand to see why, then correct the wav.scp entry, {DROP_UTTERANCE}"
        if "No module named" in last_error[0]:
            fix = "put the project's Python first on PATH (. ./path.sh in a recipe), as the command runs python3"
        raise AudioError(f"command '{command} |' failed with exit status {result.returncode}: {last_error[0]}", fix)
    return decode_bytes(result.stdout, f"output of command '{command} |'")


def decode_bytes(data: bytes, origin: str) -> Audio:
    """Audio from an in-memory stream (a pipe's output); `origin` names it in messages."""
    if not data:
        raise AudioError(f"{origin} is empty", f"make it write WAV to stdout, {DROP_UTTERANCE}")
    try:
        with sf.SoundFile(io.BytesIO(data)) as stream:
            return Audio(stream.read(dtype="float64", always_2d=True), stream.samplerate)
    except (sf.SoundFileError, RuntimeError) as error:
        raise AudioError(f"{origin} is not audio soundfile can read ({error})",
                         f"make it WAV (or FLAC), {DROP_UTTERANCE}") from None


def read_ark(spec: str) -> Audio:
    import kaldiio  # only Kaldi ark entries need it
    try:
        loaded = kaldiio.load_mat(spec)
    except Exception as error:  # kaldiio raises many types for a bad offset or a cut file
        raise AudioError(f"Kaldi ark entry '{spec}' cannot be read ({type(error).__name__}: {error})",
                         f"check the ark file and offset (regenerate the ark if it was cut), {DROP_UTTERANCE}"
                         ) from None
    if not isinstance(loaded, tuple):
        raise AudioError(f"Kaldi ark entry '{spec}' holds a matrix (features), not audio",
                         "wav.scp must point to audio; features belong in feats.scp")
    fs, samples = loaded
    samples = np.asarray(samples)
    if np.issubdtype(samples.dtype, np.integer):
        samples = samples / float(2 ** (8 * samples.dtype.itemsize - 1))
    samples = samples.astype(np.float64)
    return Audio(samples.reshape(len(samples), -1), int(fs))


def read_scp_value(value: str) -> Audio:
    """The audio of a wav.scp value: a path, `command |`, or `file.ark:offset`."""
    speed = split_speed_pipe(value)
    if speed:
        inner, factor_text = speed
        try:
            factor = parse_speed_factor(factor_text)
        except ValueError as error:
            raise AudioError(str(error), "correct the factor in the wav.scp entry") from None
        audio = read_scp_value(inner)
        check_finite(audio)
        return Audio(change_speed(audio.samples, factor), audio.fs)
    if value.endswith("|"):
        return read_pipe(value[:-1].strip())
    ark = _ARK_ENTRY.fullmatch(value)
    if ark and not os.path.exists(value) and os.path.isfile(ark["ark"]):
        return read_ark(value)
    return read_file(value)


# ---------------------------------------------------------------------------------------------------------------
# Checks and conversions, in the order dump applies them.

def check_finite(audio: Audio) -> None:
    bad = int(np.count_nonzero(~np.isfinite(audio.samples)))
    if bad:
        raise AudioError(f"the audio contains {bad} NaN or infinite samples", f"regenerate the audio, {DROP_UTTERANCE}")


def pick_channel(audio: Audio, channel: int) -> np.ndarray:
    """The one channel to keep: mono as is; `channel` (0-based) of multi-channel audio; -1 refuses those."""
    channels = audio.samples.shape[1]
    if channels == 1 and channel in (-1, 0):
        return audio.samples[:, 0]
    if channel == -1:
        raise AudioError(f"the audio has {channels} channels", "pass --channel N to keep channel N (0-based; an "
                         "option of run.sh and of utils/dump_audio.sh), or give a mono file")
    if not 0 <= channel < channels:
        raise AudioError(f"the audio has {channels} channel(s), so --channel {channel} does not exist",
                         f"pass --channel between 0 and {channels - 1}")
    return audio.samples[:, channel]


def conform_rate(samples: np.ndarray, fs: int, target_fs: int, allow_resample: bool) -> np.ndarray:
    if fs == target_fs:
        return samples
    if not allow_resample:
        raise AudioError(f"the audio has sample rate {fs} Hz but --fs is {target_fs}",
                         f"pass --resample true to resample it to {target_fs} Hz, or --fs {fs} if that is the "
                         "rate you want (options of run.sh and of utils/dump_audio.sh)")
    return resample(samples, fs, target_fs)


def to_pcm16(samples: np.ndarray) -> tuple[np.ndarray, int]:
    """16-bit integers (x * 32768, rounded, clipped: the inverse of reading, so a 16-bit source is copied bit-exactly),
    and the number of samples clipped."""
    scaled = np.round(samples * 32768.0)
    clipped = int(np.count_nonzero((scaled > 32767) | (scaled < -32768)))
    return np.clip(scaled, -32768, 32767).astype(np.int16), clipped


def write_audio(path: Path, samples: np.ndarray, fs: int, audio_format: str, comment: str = "") -> int:
    """Write 16-bit mono `samples` atomically (temp file, then rename); returns the number of clipped samples."""
    pcm, clipped = to_pcm16(samples)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with sf.SoundFile(temp, "w", fs, 1, subtype="PCM_16", format=audio_format.upper()) as stream:
            if comment:
                stream.comment = comment
            stream.write(pcm)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return clipped
