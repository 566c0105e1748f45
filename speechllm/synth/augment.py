"""Augmentation of synthetic speech: reverberation, additive noise at a signal-to-noise ratio, level, silence.

Noises and room impulse responses come from an archive holding ``downloads/noise/*.wav`` and
``downloads/rirs/*.wav`` (the mini_an4 download of ESPnet's CI corpus; 16 kHz recordings), beside synthetic ones
made from a seed: white, pink and brown noise, and exponentially decaying noise as a room response of a given
RT60. ``Augmentation`` holds one utterance's settings; ``apply`` is a pure function of the speech and them.
"""
from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, Optional

import numpy as np

NOISE_COLOURS = ("white", "pink", "brown")


@dataclass(frozen=True)
class Augmentation:
    peak_dbfs: float  # level of the speech peak
    lead_s: float  # silence before and after the speech
    trail_s: float
    noise: str  # "white", "pink", "brown" or "file:<name>"
    snr_db: float  # speech RMS (over its active frames) to noise RMS
    rir: str  # "none", "file:<name>" or "synth:<rt60 in s>"
    seed: int


def load_archive_sounds(archive: str, fs: int = 16000) -> Dict[str, Dict[str, np.ndarray]]:
    """{"noise": {name: samples}, "rirs": {name: samples}} from downloads/{noise,rirs}/*.wav in a tar archive."""
    import soundfile

    from speechllm.synth.engines import resample_ratio

    sounds = {"noise": {}, "rirs": {}}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 3 and parts[-2] in sounds and parts[-1].endswith(".wav"):
                samples, rate = soundfile.read(io.BytesIO(tar.extractfile(member).read()), dtype="float32")
                if samples.ndim > 1:
                    samples = samples[:, 0]
                sounds[parts[-2]][Path(parts[-1]).stem] = resample_ratio(samples, Fraction(fs, rate))
    for kind in sounds:
        sounds[kind] = dict(sorted(sounds[kind].items()))
    return sounds


def coloured_noise(rng: np.random.Generator, n: int, colour: str) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        return white
    spectrum = np.fft.rfft(white)
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    spectrum /= np.sqrt(f) if colour == "pink" else f
    return np.fft.irfft(spectrum, n)


def synthetic_rir(rng: np.random.Generator, rt60: float, fs: int) -> np.ndarray:
    """A direct path then exponentially decaying noise (60 dB down after rt60 seconds)."""
    n = int(rt60 * fs)
    t = np.arange(n) / fs
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60) * 0.3
    tail[: int(0.002 * fs)] = 0.0  # the first reflections arrive a little after the direct sound
    tail[0] = 1.0
    return tail


def active_rms(x: np.ndarray, fs: int) -> float:
    """RMS over the 25 ms frames within 40 dB of the loudest (speech, not the pauses)."""
    frame = int(0.025 * fs)
    usable = len(x) // frame * frame
    if usable == 0:
        return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0
    energies = np.mean(x[:usable].reshape(-1, frame) ** 2, axis=1)
    active = energies[energies >= energies.max() * 1e-4]
    return float(np.sqrt(np.mean(active)))


def noise_signal(kind: str, n: int, rng: np.random.Generator, sounds) -> np.ndarray:
    if kind in NOISE_COLOURS:
        return coloured_noise(rng, n, kind)
    if kind.startswith("file:"):
        name = kind[5:]
        if not sounds or name not in sounds["noise"]:
            raise ValueError(f"noise {name!r} is not in the noise archive")
        source = sounds["noise"][name].astype(np.float64)
        start = int(rng.integers(len(source)))
        repeats = (start + n) // len(source) + 1
        return np.tile(source, repeats)[start:start + n]
    raise ValueError(f"unknown noise {kind!r}")


def reverberate(speech: np.ndarray, kind: str, fs: int, rng: np.random.Generator, sounds) -> np.ndarray:
    from scipy.signal import fftconvolve

    if kind == "none":
        return speech
    if kind.startswith("synth:"):
        rir = synthetic_rir(rng, float(kind[6:]), fs)
    elif kind.startswith("file:"):
        name = kind[5:]
        if not sounds or name not in sounds["rirs"]:
            raise ValueError(f"room impulse response {name!r} is not in the archive")
        rir = sounds["rirs"][name].astype(np.float64)
        rir = rir[int(np.argmax(np.abs(rir))):]  # start at the direct path: no added delay
    else:
        raise ValueError(f"unknown room impulse response {kind!r}")
    rir = rir / np.sqrt(np.sum(rir ** 2))
    wet = fftconvolve(speech, rir)
    tail = int(0.3 * fs)  # keep 0.3 s of the reverberant tail
    return wet[: len(speech) + tail]


def apply(speech: np.ndarray, fs: int, aug: Augmentation, sounds: Optional[dict] = None) -> np.ndarray:
    """Reverberation, level, silence and noise; returns int16 samples."""
    rng = np.random.default_rng(aug.seed)
    speech = reverberate(np.asarray(speech, dtype=np.float64), aug.rir, fs, rng, sounds)
    peak = np.max(np.abs(speech))
    if peak == 0:
        raise ValueError("silent speech cannot be scaled")
    speech = speech * (10 ** (aug.peak_dbfs / 20) / peak)
    padded = np.concatenate([np.zeros(round(aug.lead_s * fs)), speech, np.zeros(round(aug.trail_s * fs))])
    noise = noise_signal(aug.noise, len(padded), rng, sounds)
    noise_rms = np.sqrt(np.mean(noise ** 2))
    if noise_rms > 0:
        padded += noise * (active_rms(speech, fs) * 10 ** (-aug.snr_db / 20) / noise_rms)
    peak = np.max(np.abs(padded))
    if peak > 0.99:  # loud noise: bring the mixture back under full scale rather than clip
        padded *= 0.99 / peak
    return np.round(padded * 32767).astype(np.int16)
