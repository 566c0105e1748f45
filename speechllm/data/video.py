"""Video behind `video.scp` entries and the lip-ROI arrays behind `roi.scp`: reading (PyAV), frame rate, checks.

Video is read at `ROI_FPS` (25 frames per second, LRS2/LRS3's rate and what the lip-ROI arrays hold). A video at
another rate is refused unless `resample=True`, which keeps for each 25 fps instant the source frame nearest in
time (frames repeat or drop; nothing is blended). Every failure is a VideoError saying what is wrong and how to fix
it; callers add the data-dir file and line, as for audio (speechllm.data.audio).

PyAV (the `av` package, FFmpeg's libraries in its wheel) is imported only here and only when a video is opened.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from speechllm.data.datadir import DROP_UTTERANCE

if TYPE_CHECKING:
    from speechllm.data.audio import Audio

ROI_FPS = 25
ROI_SIZE = 96  # lip ROIs are ROI_SIZE x ROI_SIZE grayscale (uint8)
FPS_TOLERANCE = 0.01  # frames per second: a stream averaging 25.00 +- this counts as 25 fps
INSTALL_AV = "install the video extra: tools/venv/bin/pip install -c tools/constraints.txt -e '.[av]'"


class VideoError(Exception):
    def __init__(self, message: str, fix: str):
        super().__init__(message)
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # average frame rate of the video stream
    num_frames: int  # as the container declares it (0 when it does not say)
    duration: float  # seconds of video
    width: int
    height: int
    has_audio: bool


def _import_av():
    try:
        import av
    except ImportError:
        raise VideoError("PyAV (the 'av' package) is not installed", INSTALL_AV) from None
    return av


def _open(path: str):
    av = _import_av()
    if not os.path.isfile(path):
        raise VideoError(f"video file '{path}' does not exist", f"correct the path in video.scp, {DROP_UTTERANCE}")
    if os.path.getsize(path) == 0:
        raise VideoError(f"video file '{path}' is empty (0 bytes)",
                         f"re-extract or re-download the file, {DROP_UTTERANCE}")
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError, ValueError) as error:
        raise VideoError(f"video file '{path}' cannot be opened ({error}): it is corrupt or not a video",
                         f"check it with ffprobe '{path}', re-extract or re-download it, {DROP_UTTERANCE}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"'{path}' has no video stream", f"give a video file in video.scp, {DROP_UTTERANCE}")
    return container


def probe_video(path: str) -> VideoInfo:
    """Frame rate, declared frame count and duration from the container's header (no frame is decoded)."""
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # microseconds (av.time_base)
        else:
            duration = stream.frames / fps if fps and stream.frames else 0.0
        return VideoInfo(fps, int(stream.frames or 0), duration, stream.codec_context.width,
                         stream.codec_context.height, bool(container.streams.audio))
    finally:
        container.close()


def check_frame_rate(path: str, fps: float, resample: bool) -> None:
    if abs(fps - ROI_FPS) <= FPS_TOLERANCE or resample:
        return
    raise VideoError(f"video '{path}' has {fps:g} frames per second, not {ROI_FPS}",
                     f"pass --resample_video true to take the frame nearest each 1/{ROI_FPS} s, or convert it: "
                     f"ffmpeg -i '{path}' -r {ROI_FPS} OUT.mp4")


def iter_frames(path: str, resample: bool = False) -> Iterator[np.ndarray]:
    """The RGB frames (H x W x 3, uint8) of a video at ROI_FPS, decoded one at a time.

    Raises VideoError for a missing, empty, corrupt or truncated file (fewer frames decode than its header
    declares), one without a decodable frame, or (unless `resample`) a frame rate other than ROI_FPS."""
    av = _import_av()
    container = _open(path)
    try:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        check_frame_rate(path, float(rate) if rate else 0.0, resample)
        declared = int(stream.frames or 0)
        decoded = 0
        try:
            timed = ((frame.to_ndarray(format="rgb24"), frame.time) for frame in container.decode(stream))
            if resample:
                step = 1 / float(rate) if rate else 1 / ROI_FPS
                for image in _nearest_in_time(timed, step):
                    decoded += 1
                    yield image
            else:
                for image, _ in timed:
                    decoded += 1
                    yield image
        except av.FFmpegError as error:
            raise VideoError(f"video file '{path}' is corrupt after {decoded} frames ({error})",
                             f"re-extract or re-download it, {DROP_UTTERANCE}") from None
        if decoded == 0:
            raise VideoError(f"video file '{path}' holds no decodable frame",
                             f"re-extract or re-download it, {DROP_UTTERANCE}")
        if not resample and declared and decoded < declared:
            raise VideoError(f"video file '{path}' is truncated: its header declares {declared} frames but "
                             f"{decoded} decode", f"re-extract or re-download it, {DROP_UTTERANCE}")
    finally:
        container.close()


def _nearest_in_time(timed: Iterator[tuple[np.ndarray, float | None]], source_step: float
                     ) -> Iterator[np.ndarray]:
    """Frames at ROI_FPS from (frame, time) pairs at another rate: for instant k / ROI_FPS the frame nearest it."""
    previous, previous_time, first_time, emitted = None, 0.0, None, 0
    for image, time in timed:
        time = previous_time + source_step if time is None else time
        if previous is None:
            previous, previous_time, first_time = image, time, time
            continue
        boundary = (previous_time + time) / 2  # the earlier frame is the nearer one before this instant
        while first_time + emitted / ROI_FPS < boundary:
            yield previous
            emitted += 1
        previous, previous_time = image, time
    if previous is None:
        return
    total = max(1, round((previous_time + source_step - first_time) * ROI_FPS))
    while emitted < total:
        yield previous
        emitted += 1


def read_video_audio(path: str) -> Audio:
    """The audio track of a video file (e.g. LRS3's mp4) at its own rate: float64 (frames, channels)."""
    from speechllm.data.audio import Audio  # soundfile: not needed to check a data dir's videos
    av = _import_av()
    container = _open(path)
    try:
        if not container.streams.audio:
            raise VideoError(f"video file '{path}' has no audio track",
                             f"give a video with sound, or its audio in wav.scp, {DROP_UTTERANCE}")
        stream = container.streams.audio[0]
        chunks = []
        try:
            for frame in container.decode(stream):
                samples = frame.to_ndarray()
                # packed formats give (1, samples * channels), planar ones (channels, samples)
                channels = len(frame.layout.channels)
                if not frame.format.is_planar:
                    samples = samples.reshape(-1, channels).T
                chunks.append(_to_float(samples))
        except av.FFmpegError as error:
            raise VideoError(f"the audio of '{path}' is corrupt ({error})",
                             f"re-extract or re-download the file, {DROP_UTTERANCE}") from None
        if not chunks:
            raise VideoError(f"the audio track of '{path}' is empty", f"re-extract the file, {DROP_UTTERANCE}")
        return Audio(np.concatenate(chunks, axis=1).T.astype(np.float64), int(stream.codec_context.sample_rate))
    finally:
        container.close()


def _to_float(samples: np.ndarray) -> np.ndarray:
    if np.issubdtype(samples.dtype, np.integer):
        return samples / float(2 ** (8 * samples.dtype.itemsize - 1))
    return samples.astype(np.float64)


def write_video(path: str | Path, frames: np.ndarray, fps: int | Fraction = ROI_FPS,
                audio: np.ndarray | None = None, sample_rate: int = 16000, codec: str = "libx264") -> None:
    """Write RGB (T x H x W x 3) or grayscale (T x H x W) uint8 frames, with optional mono float audio in [-1, 1],
    as an mp4 (H.264 + AAC), atomically. Used for test fixtures and to look at lip ROIs."""
    av = _import_av()
    path = Path(path)
    frames = np.asarray(frames, dtype=np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    height, width = frames.shape[1:3]
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix or ".mp4")
    os.close(handle)
    try:
        with av.open(temp, "w") as container:
            video = container.add_stream(codec, rate=Fraction(fps))
            video.width, video.height = width + width % 2, height + height % 2  # yuv420p needs even sizes
            video.pix_fmt = "yuv420p"
            video.codec_context.options = {"preset": "ultrafast"} if codec == "libx264" else {}
            sound = container.add_stream("aac", rate=sample_rate) if audio is not None else None
            if sound is not None:
                sound.layout = "mono"
            for image in frames:
                if image.shape[:2] != (video.height, video.width):
                    image = np.pad(image, ((0, video.height - height), (0, video.width - width), (0, 0)))
                container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))
            container.mux(video.encode())
            if sound is not None:
                pcm = np.clip(np.asarray(audio, dtype=np.float32).reshape(1, -1), -1, 1)
                chunk = 1024
                for start in range(0, pcm.shape[1], chunk):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm[:, start:start + chunk]),
                                                       format="flt", layout="mono")
                    frame.sample_rate = sample_rate
                    container.mux(sound.encode(frame))
                container.mux(sound.encode())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------------------------
# Lip-ROI arrays (roi.scp): .npy files of uint8, frames x ROI_SIZE x ROI_SIZE, at ROI_FPS.

def roi_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of a .npy file from its header alone."""
    if not os.path.isfile(path):
        raise VideoError(f"lip-ROI file '{path}' does not exist",
                         "rerun utils/extract_lip_roi.sh, or correct the path in roi.scp")
    try:
        with open(path, "rb") as stream:
            version = np.lib.format.read_magic(stream)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(stream)
    except (ValueError, OSError, SyntaxError) as error:
        raise VideoError(f"lip-ROI file '{path}' is not a .npy array ({error})",
                         "rerun utils/extract_lip_roi.sh, or correct the path in roi.scp") from None
    return shape, dtype


def check_roi(path: str) -> int:
    """The number of frames of a lip-ROI file; VideoError unless it is uint8 T x ROI_SIZE x ROI_SIZE, T > 0."""
    shape, dtype = roi_header(path)
    if len(shape) != 3 or shape[1:] != (ROI_SIZE, ROI_SIZE) or dtype != np.uint8 or shape[0] == 0:
        raise VideoError(f"lip-ROI file '{path}' holds a {dtype} array of shape {shape}, not uint8 frames x "
                         f"{ROI_SIZE} x {ROI_SIZE}", "rerun utils/extract_lip_roi.sh, or correct the path in roi.scp")
    return int(shape[0])


def load_roi(path: str) -> np.ndarray:
    check_roi(path)
    return np.load(path)
