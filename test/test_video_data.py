"""Video in the Kaldi contract: video.scp / roi.scp validation, and lip-ROI extraction (speechllm.data.lip_roi,
utils/extract_lip_roi.sh) on a real photograph (scikit-image's `astronaut`) and on videos made from it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av", reason="PyAV is not installed: tools/install.sh --extras test installs it")
pytest.importorskip("mediapipe", reason="MediaPipe is not installed: tools/install.sh --extras test installs it")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (the test extra has it)")

from speechllm.data import lip_roi  # noqa: E402
from speechllm.data.datadir import spk2utt_from_utt2spk, write_kv  # noqa: E402
from speechllm.data.validate import MediaCheck, validate_data_dir  # noqa: E402
from speechllm.data.video import ROI_SIZE, write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# The astronaut's mouth centre in the 512 x 512 photo (lip corners about x 202 and 244, lips at y 139-149).
PHOTO_MOUTH = (223.0, 143.0)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_data.astronaut()


@pytest.fixture(scope="module")
def detector():
    with lip_roi.FaceLandmarks() as found:
        yield found


def face_frames(photo: np.ndarray, count: int, blank: tuple[int, ...] = ()) -> np.ndarray:
    """`count` 128 x 128 frames of the astronaut's face moving a few pixels; frames in `blank` are black."""
    frames = []
    for index in range(count):
        dx, dy = int(round(6 * np.sin(index / 5))), int(round(4 * np.cos(index / 7)))
        frame = photo[20 + dy:276 + dy:2, 100 + dx:356 + dx:2].copy()
        if index in blank:
            frame[:] = 0
        frames.append(frame)
    return np.stack(frames)


def av_dir(path: Path, videos: dict[str, Path], seconds: dict[str, float]) -> Path:
    """A data dir of utterances <id> (speaker 'spk') with video.scp and utt2dur."""
    path.mkdir(parents=True, exist_ok=True)
    utt2spk = {utt: "spk" for utt in videos}
    write_kv(path / "utt2spk", utt2spk)
    write_kv(path / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    write_kv(path / "wav.scp", {utt: f"/audio/{utt}.wav" for utt in videos})
    write_kv(path / "text", {utt: "hello" for utt in videos})
    write_kv(path / "video.scp", {utt: str(video) for utt, video in videos.items()})
    write_kv(path / "utt2dur", {utt: str(value) for utt, value in seconds.items()})
    return path


def errors_of(path: Path, media: MediaCheck | None = MediaCheck()) -> list[str]:
    return [str(p) for p in validate_data_dir(path, media=media) if p.severity == "error"]


def run_extract(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    return subprocess.run([str(REPO / "utils" / "extract_lip_roi.sh"), *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, check=False, timeout=300)


# --------------------------------------------------------------------------------------------------------------
# Validation of video.scp and roi.scp

@pytest.fixture(scope="module")
def clips(tmp_path_factory, photo) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    made = {"face": folder / "face.mp4", "face30": folder / "face30.mp4", "noface": folder / "noface.mp4"}
    frames = face_frames(photo, 40, blank=(10, 11, 12))
    write_video(made["face"], frames)  # 1.6 s at 25 fps
    write_video(made["face30"], face_frames(photo, 30), fps=30)  # 1 s at 30 fps
    write_video(made["noface"], np.full((20, 128, 128, 3), 90, np.uint8))
    (folder / "empty.mp4").write_bytes(b"")
    made["empty"] = folder / "empty.mp4"
    return made


def test_valid_video_dir_passes_with_media_checks(tmp_path, clips):
    data = av_dir(tmp_path / "d", {"spk-a": clips["face"]}, {"spk-a": 1.6})
    assert errors_of(data) == []


def test_video_scp_problems_name_file_line_and_fix(tmp_path, clips):
    data = av_dir(tmp_path / "d", {"spk-a": clips["face"], "spk-b": clips["face"]}, {"spk-a": 1.6, "spk-b": 1.6})
    (data / "video.scp").write_text(f"spk-b {clips['face']}\nspk-a {tmp_path / 'gone.mp4'}\nspk-c {clips['face']}\n")
    errors = errors_of(data, media=None)
    video_scp = data / "video.scp"
    assert any(f"{video_scp} line 2: id 'spk-a' comes after 'spk-b'" in e and "LC_ALL=C sort" in e for e in errors)
    assert any(f"{video_scp} line 2: video file '{tmp_path / 'gone.mp4'}' of 'spk-a' does not exist" in e
               and "Fix: correct the path" in e for e in errors), errors
    assert any(f"{video_scp} line 3: utterance 'spk-c' is not in utt2spk" in e for e in errors), errors


def test_recording_without_video_is_an_error(tmp_path, clips):
    data = av_dir(tmp_path / "d", {"spk-a": clips["face"]}, {"spk-a": 1.6})
    write_kv(data / "segments", {"spk-a": "rec1 0 1.0"})
    write_kv(data / "wav.scp", {"rec1": "/audio/rec1.wav", "rec2": "/audio/rec2.wav"})
    write_kv(data / "video.scp", {"rec1": str(clips["face"])})
    (data / "utt2dur").unlink()
    errors = errors_of(data, media=None)
    assert any("wav.scp line 2: recording 'rec2' has no line in video.scp" in e for e in errors), errors


def test_frame_rate_and_length_mismatch_are_reported_with_the_id(tmp_path, clips):
    data = av_dir(tmp_path / "d", {"spk-a": clips["face30"], "spk-b": clips["face"]}, {"spk-a": 1.0, "spk-b": 2.5})
    errors = errors_of(data)
    assert any("line 1: utterance 'spk-a'" in e and "has 30 frames per second, not 25" in e
               and "--resample_video true" in e for e in errors), errors
    assert any("line 2: 'spk-b': the video lasts 1.6 s but the audio 2.5 s (utt2dur), more than the tolerance of "
               "0.2 s apart" in e for e in errors), errors
    assert errors_of(data, media=MediaCheck(av_tolerance=1.0)) != []  # the frame rate stays an error
    assert not any("lasts" in e for e in errors_of(data, media=MediaCheck(av_tolerance=1.0)))
    assert errors_of(data, media=None) == []  # structure alone is fine


def test_empty_video_and_bad_roi_are_errors(tmp_path, clips):
    data = av_dir(tmp_path / "d", {"spk-a": clips["empty"], "spk-b": clips["face"]}, {"spk-a": 1.0, "spk-b": 0.4})
    np.save(tmp_path / "a.npy", np.zeros((10, 96, 96), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((10, 88, 88), np.uint8))
    write_kv(data / "roi.scp", {"spk-a": str(tmp_path / "a.npy"), "spk-b": str(tmp_path / "b.npy")})
    errors = errors_of(data)
    assert any(f"video.scp line 1: utterance 'spk-a': video file '{clips['empty']}' is empty (0 bytes)" in e
               for e in errors), errors
    assert any("roi.scp line 2: utterance 'spk-b'" in e and "shape (10, 88, 88), not uint8 frames x 96 x 96" in e
               for e in errors), errors
    assert any("roi.scp line 1: 'spk-a': the video lasts 0.4 s but the audio 1 s" in e for e in errors), errors


# --------------------------------------------------------------------------------------------------------------
# The detector and the alignment on a real photograph

def test_landmarks_of_the_real_photo(photo, detector):
    points = detector(photo)
    assert points is not None and points.shape == (4, 2)
    left_eye, right_eye, nose, mouth = points
    assert left_eye[0] < nose[0] < right_eye[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < mouth[1]
    assert np.hypot(*(mouth - PHOTO_MOUTH)) < 6, mouth
    assert detector(np.full_like(photo, 120)) is None


def test_roi_of_the_photo_is_aligned_against_rotation(photo, detector):
    from skimage.transform import rotate

    gray = lip_roi.to_gray(photo)
    roi = lip_roi.crop_mouth(gray, detector(photo))
    assert roi.shape == (ROI_SIZE, ROI_SIZE) and roi.dtype == np.uint8
    tilted = (rotate(photo, 12, center=PHOTO_MOUTH, preserve_range=True)).astype(np.uint8)
    tilted_roi = lip_roi.crop_mouth(lip_roi.to_gray(tilted), detector(tilted))
    unaligned = gray[int(PHOTO_MOUTH[1]) - 48:int(PHOTO_MOUTH[1]) + 48, int(PHOTO_MOUTH[0]) - 48:
                     int(PHOTO_MOUTH[0]) + 48]
    tilted_unaligned = lip_roi.to_gray(tilted)[int(PHOTO_MOUTH[1]) - 48:int(PHOTO_MOUTH[1]) + 48,
                                               int(PHOTO_MOUTH[0]) - 48:int(PHOTO_MOUTH[0]) + 48]

    def similarity(a, b):
        return np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1]

    # aligning undoes the 12 degree tilt: the two ROIs agree better than the two plain crops do
    assert similarity(roi, tilted_roi) > 0.9
    assert similarity(roi, tilted_roi) > similarity(unaligned, tilted_unaligned) + 0.05


def test_similarity_transform_and_interpolation():
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -3.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    source = np.array([[0.0, 0.0], [10.0, 1.0], [4.0, 7.0], [5.0, 12.0]])
    matrix = lip_roi.similarity_transform(source, source @ rotation.T + shift)
    np.testing.assert_allclose(matrix, np.hstack([rotation, shift[:, None]]), atol=1e-9)
    a, b = np.zeros((4, 2)), np.ones((4, 2)) * 4
    filled = lip_roi.fill_missing([None, a, None, None, None, b, None])
    np.testing.assert_allclose(filled[:, 0, 0], [0, 0, 1, 2, 3, 4, 4])
    with pytest.raises(lip_roi.NoFace):
        lip_roi.fill_missing([None, None])
    assert lip_roi.describe_frames([3, 4, 5, 9]) == "3-5,9"


# --------------------------------------------------------------------------------------------------------------
# utils/extract_lip_roi.sh on generated videos

def test_extract_interpolates_missing_frames_and_reports_the_faceless_utterance(tmp_path, clips):
    data = av_dir(tmp_path / "data", {"spk-a": clips["face"], "spk-b": clips["noface"]}, {"spk-a": 1.6, "spk-b": 0.8})
    out = tmp_path / "roi"
    done = run_extract("--nj", 2, data, out)
    assert done.returncode == 0, done.stderr
    assert "1 of 2 utterances kept; 1 with 3 frames without a face interpolated; 1 removed" in done.stdout
    assert "removed spk-b: no face found in any of its 20 frames" in done.stderr
    report = dict(line.split(" ", 1) for line in (out / "roi_report.txt").read_text().splitlines())
    assert report == {"spk-a": "interpolated 3 of 40 frames without a face (frames 10-12)",
                      "spk-b": "removed no face found in any of its 20 frames"}
    roi_scp = dict(line.split() for line in (out / "roi.scp").read_text().splitlines())
    assert list(roi_scp) == ["spk-a"]
    frames = np.load(roi_scp["spk-a"])
    assert frames.shape == (40, ROI_SIZE, ROI_SIZE) and frames.dtype == np.uint8
    assert frames[11].max() == 0 and frames[20].std() > 10  # a blank frame stays blank; a face frame has content
    assert (out / "utt2spk").read_text() == "spk-a spk\n"  # the kept utterances' data dir, validated
    assert errors_of(out) == []
    again = run_extract("--nj", 2, data, out)  # a rerun reuses every result
    assert again.returncode == 0, again.stderr
    logs = "".join(p.read_text() for p in (out / "logs").glob("dump.*.log"))
    assert "1 reused from an earlier run" in logs and "0 reused" not in logs


def test_segments_cut_the_frames_of_their_utterance(tmp_path, clips):
    data = av_dir(tmp_path / "data", {"spk-a": clips["face"], "spk-b": clips["face"]}, {"spk-a": 1, "spk-b": 1})
    (data / "utt2dur").unlink()
    write_kv(data / "segments", {"spk-a": "rec 0 0.6", "spk-b": "rec 0.6 1.6"})
    write_kv(data / "wav.scp", {"rec": "/audio/rec.wav"})
    write_kv(data / "video.scp", {"rec": str(clips["face"])})
    done = run_extract("--nj", 1, data, tmp_path / "roi")
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "roi" / "roi_report.txt").read_text()
    # frame numbers count from the utterance's first frame
    assert "spk-a interpolated 3 of 15 frames without a face (frames 10-12)" in report and "spk-b ok 25" in report
    shapes = [np.load(tmp_path / "roi" / "data" / f"{u}.npy").shape[0] for u in ("spk-a", "spk-b")]
    assert shapes == [15, 25]


def test_bad_videos_are_errors_naming_the_file_and_the_fix(tmp_path, clips):
    data = av_dir(tmp_path / "data", {"spk-a": clips["empty"], "spk-b": clips["face30"]}, {"spk-a": 1, "spk-b": 1})
    done = run_extract("--nj", 1, data, tmp_path / "roi")
    assert done.returncode == 1
    assert f"{data / 'video.scp'} line 1: utterance 'spk-a': video file '{clips['empty']}' is empty" in done.stderr
    assert (f"{data / 'video.scp'} line 2: utterance 'spk-b': video '{clips['face30']}' has 30 frames per second, "
            "not 25. Fix: pass --resample_video true") in done.stderr
    write_kv(data / "video.scp", {"spk-a": str(clips["face"]), "spk-b": str(clips["face30"])})
    done = run_extract("--nj", 1, "--resample_video", "true", data, tmp_path / "roi")
    assert done.returncode == 0, done.stderr
    assert np.load(tmp_path / "roi" / "data" / "spk-b.npy").shape == (25, ROI_SIZE, ROI_SIZE)  # 1 s at 25 fps


def test_wrapper_passes_shellcheck():
    from conftest import require_shellcheck

    shellcheck = require_shellcheck()
    done = subprocess.run([shellcheck, "-x", str(REPO / "utils" / "extract_lip_roi.sh")], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout
