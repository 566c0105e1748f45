"""Long recordings cut into segments the model can take, at pauses; never cut silently.

    segmenter = Segmenter(max_seconds=30.0)          # silero-vad when installed (vad="auto"), else low-energy cuts
    spans = segmenter(samples, sample_rate)           # [(start, end), ...] in samples: in order, no overlap

A recording no longer than ``max_seconds`` is one segment, untouched. A longer one goes through a voice-activity
detector, Silero VAD (the ``silero-vad`` wheel ships its model: no download; its sequence ONNX model runs with
onnxruntime when installed, else the TorchScript model with torch): consecutive speech regions are grouped into
segments of at most ``max_seconds``, each from the start of its first region to the end of its last (the pauses
inside a segment stay in it; stretches the detector hears no speech in, between segments, are left out). A speech
region longer than ``max_seconds`` is cut at low-energy points, as is the whole recording when the detector is not
installed (``vad="auto"``), not wanted (``vad="none"``) or hears no speech at all (it may simply not suit the audio:
nothing is dropped then).

Low-energy cuts: windows without overlap, each ending at the quietest 50 ms (mean square, in 10 ms frames) of the
second half of the ``max_seconds`` that follow the previous cut, so no segment is shorter than half the maximum
except the last. Only the frames searched are computed: memory does not grow with the recording.
"""
from __future__ import annotations

import logging
import math
from typing import List, Optional, Tuple

import numpy as np

VAD_CHOICES = ("auto", "silero", "none")
VAD_RATES = (8000, 16000)  # what Silero VAD takes (and multiples of 16000, which it decimates)
VAD_PAD_SECONDS = 0.2  # speech regions are widened by this on each side (Silero splits shorter pauses in the middle)
VAD_MIN_PAUSE_SECONDS = 0.1  # a pause shorter than this does not end a speech region
FRAME_SECONDS = 0.01  # energy frames of the low-energy cuts
SMOOTH_FRAMES = 5  # the quietest stretch of this many frames is where a cut goes
MIN_SEGMENT_SECONDS = 1.0

Span = Tuple[int, int]


def silero_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("silero_vad") is not None


class SileroVAD:
    """Speech regions of a recording by Silero VAD, loaded once from the files of its wheel."""

    def __init__(self):
        import torch

        # silero_vad's model module sets torch's thread count to 1 when imported: keep the caller's setting.
        threads = torch.get_num_threads()
        try:
            import silero_vad
        finally:
            torch.set_num_threads(threads)
        try:
            import onnxruntime  # noqa: F401

            self.model = silero_vad.load_silero_vad(sequence=True)  # a few ONNX calls per 16 s of audio
            self.timestamps = silero_vad.get_speech_timestamps_sequence
            self.kind = "silero-vad (ONNX, onnxruntime)"
        except ImportError:
            self.model = silero_vad.load_silero_vad()  # TorchScript: one call per 32 ms frame, slower
            self.timestamps = silero_vad.get_speech_timestamps
            self.kind = "silero-vad (TorchScript)"

    def regions(self, samples: np.ndarray, sample_rate: int) -> List[Span]:
        rate, audio = sample_rate, samples
        if rate not in VAD_RATES and rate % 16000:
            from speechllm.data.audio import resample

            rate, audio = 16000, resample(samples, sample_rate, 16000).astype(np.float32)
        if not hasattr(self.model, "audio_forward"):  # the TorchScript model reads a tensor (and resets its state)
            import torch

            audio = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
        found = self.timestamps(audio, self.model, sampling_rate=rate,
                                min_silence_duration_ms=int(VAD_MIN_PAUSE_SECONDS * 1000),
                                speech_pad_ms=int(VAD_PAD_SECONDS * 1000))
        scale = sample_rate / rate
        return [(min(len(samples), round(r["start"] * scale)), min(len(samples), round(r["end"] * scale)))
                for r in found if r["end"] > r["start"]]


class Segmenter:
    """Cuts recordings longer than ``max_seconds``; see the module's docstring. ``vad``: ``auto`` (Silero VAD when
    installed, else low-energy cuts), ``silero`` (an error when not installed) or ``none`` (low-energy cuts)."""

    def __init__(self, max_seconds: float, vad: str = "auto"):
        if not max_seconds >= MIN_SEGMENT_SECONDS:  # also refuses NaN
            raise ValueError(f"the maximum segment length must be at least {MIN_SEGMENT_SECONDS:.0f} s, "
                             f"got {max_seconds}")
        if vad not in VAD_CHOICES:
            raise ValueError(f"vad must be one of {list(VAD_CHOICES)}, got {vad!r}")
        if vad == "silero" and not silero_installed():
            raise ValueError("vad 'silero' needs the silero-vad package: pip install silero-vad (or -c "
                             "tools/constraints.txt), or choose vad 'auto' or 'none'")
        self.max_seconds = float(max_seconds)
        self.vad = vad
        self._detector: Optional[SileroVAD] = None
        self.last_method = ""  # how the last long recording was cut, for logs and tests

    def detector(self) -> Optional[SileroVAD]:
        if self.vad == "none":
            return None
        if self._detector is None:
            if not silero_installed():
                logging.info("silero-vad is not installed: long recordings are cut at low-energy points")
                self.vad = "none"
                return None
            self._detector = SileroVAD()
        return self._detector

    def __call__(self, samples: np.ndarray, sample_rate: int) -> List[Span]:
        total = len(samples)
        limit = int(self.max_seconds * sample_rate)
        if total <= limit:
            return [(0, total)]
        detector = self.detector()
        regions = detector.regions(samples, sample_rate) if detector is not None else None
        if not regions:
            self.last_method = "low-energy windows" + (" (the VAD heard no speech)" if regions is not None else "")
            spans = low_energy_windows(samples, 0, total, limit, sample_rate)
        else:
            self.last_method = detector.kind
            spans = group_regions(regions, samples, limit, sample_rate)
        kept = sum(end - start for start, end in spans)
        logging.info(f"a recording of {total / sample_rate:.1f} s cut into {len(spans)} segments of at most "
                     f"{self.max_seconds:g} s by {self.last_method}; {(total - kept) / sample_rate:.1f} s without "
                     "speech left out")
        return spans


def group_regions(regions: List[Span], samples: np.ndarray, limit: int, sample_rate: int) -> List[Span]:
    """Consecutive speech regions joined into spans of at most ``limit`` samples; longer regions cut by energy."""
    spans: List[Span] = []
    current: Optional[Span] = None
    for start, end in regions:
        if current is not None and end - current[0] <= limit:
            current = (current[0], end)
            continue
        if current is not None:
            spans.append(current)
            current = None
        if end - start > limit:
            spans += low_energy_windows(samples, start, end, limit, sample_rate)
        else:
            current = (start, end)
    if current is not None:
        spans.append(current)
    return spans


def low_energy_windows(samples: np.ndarray, start: int, end: int, limit: int, sample_rate: int) -> List[Span]:
    """``[start, end)`` as consecutive spans of at most ``limit`` samples, each cut at the quietest point of the
    second half of its window."""
    hop = max(1, int(round(FRAME_SECONDS * sample_rate)))
    spans: List[Span] = []
    position = start
    while end - position > limit:
        low, high = position + limit // 2, position + limit
        frames = (high - low) // hop
        if frames < 1:
            cut = high
        else:
            window = samples[low: low + frames * hop].reshape(frames, hop)
            energy = np.square(window, dtype=np.float64).mean(axis=1)
            width = min(SMOOTH_FRAMES, frames)
            smooth = np.convolve(energy, np.ones(width) / width, mode="same")
            cut = low + int(np.argmin(smooth)) * hop + hop // 2
        spans.append((position, cut))
        position = cut
    spans.append((position, end))
    return spans


def default_max_seconds(frontend_window: float, fallback: float = 30.0) -> float:
    """The frontend's window where it has one (Whisper: 30 s), else ``fallback``."""
    return frontend_window if math.isfinite(frontend_window) and frontend_window > 0 else fallback
