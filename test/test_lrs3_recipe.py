"""egs2/lrs3/speechllm1: data preparation on a miniature LRS3 tree in the real layout that the test writes
({pretrain,trainval,test}/<spk>/<clip>.mp4 + .txt with the Text:, Conf: and word-time lines), run in a scratch
recipe dir so nothing is written into the repository."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("av", reason="PyAV is not installed: tools/install.sh --extras test installs it")
skimage_data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (the test extra has it)")

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.data.validate import MediaCheck, validate_data_dir  # noqa: E402
from speechllm.data.video import write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "egs2" / "lrs3" / "speechllm1"
SPEC = importlib.util.spec_from_file_location("prepare_lrs3", RECIPE / "local" / "prepare_lrs3.py")
prepare_lrs3 = importlib.util.module_from_spec(SPEC)
sys.modules["prepare_lrs3"] = prepare_lrs3  # dataclasses look their module up there
SPEC.loader.exec_module(prepare_lrs3)

# subset -> speaker (11-character YouTube ids, some with '-' and '_') -> clip -> (seconds, [(word, start, end)])
CORPUS = {
    "pretrain": {
        "aaaaaaaaaaa": {"00001": (2.4, [("SO", 0.1, 0.3), ("I", 0.35, 0.45), ("THINK", 0.9, 1.2),
                                         ("THAT", 1.3, 1.5), ("WORKS", 1.6, 1.9)]),
                        "00002": (0.8, [("{LG}", 0.1, 0.5)])},
        "x-y_zzzzzzz": {"00007": (0.8, [("HELLO", 0.2, 0.6)])},
    },
    "trainval": {
        "aaaaaaaaaaa": {"00001": (0.8, [("WE", 0.1, 0.3), ("{LG}", 0.35, 0.5), ("WIN", 0.5, 0.7)])},
        "x-y_zzzzzzz": {"00003": (0.6, [("YES", 0.1, 0.4)])},
        "ccccccccccc": {"00004": (0.6, [("NO", 0.1, 0.4)]), "00005": (0.6, [("MAYBE", 0.1, 0.5)])},
    },
    "test": {
        "ddddddddddd": {"00001": (0.6, [("ONE", 0.1, 0.4)]), "00002": (0.6, [("TWO", 0.1, 0.4)])},
        "eeeeeeeeeee": {"00003": (0.6, [("THREE", 0.1, 0.5)])},
    },
}


def transcript(words: list[tuple[str, float, float]]) -> str:
    rows = "".join(f"{w} {s:.2f} {e:.2f} 5.0\n" for w, s, e in words)
    return f"Text:  {' '.join(w for w, _, _ in words)}\nConf:  3\n\nWORD START END ASDSCORE\n{rows}"


@pytest.fixture(scope="module")
def lrs3_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lrs3") / "LRS3"
    photo = skimage_data.astronaut()[40:296:2, 100:356:2]  # 128 x 128 around the face
    rng = np.random.default_rng(0)
    for subset, speakers in CORPUS.items():
        for speaker, clip_words in speakers.items():
            for clip, (seconds, words) in clip_words.items():
                folder = root / subset / speaker
                folder.mkdir(parents=True, exist_ok=True)
                frames = np.stack([np.roll(photo, index % 3, axis=1) for index in range(round(seconds * 25))])
                write_video(folder / f"{clip}.mp4", frames, audio=0.1 * rng.standard_normal(int(seconds * 16000)))
                (folder / f"{clip}.txt").write_text(transcript(words))
    return root


@pytest.fixture
def recipe(tmp_path) -> Path:
    """A scratch recipe dir linking the recipe's local/, utils/ and the template's scripts."""
    for name in ("local", "utils", "path.sh", "cmd.sh"):
        (tmp_path / name).symlink_to(RECIPE / name)
    (tmp_path / "db.sh").write_text("LRS3=\n")
    return tmp_path


def run_data_sh(recipe: Path, *options: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               OMP_NUM_THREADS="1")
    return subprocess.run(["local/data.sh", *options], cwd=recipe, capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def test_split_by_words_cuts_between_words_within_the_limit():
    Word = prepare_lrs3.Word
    words = [Word("SO", 0.1, 0.3), Word("I", 0.35, 0.45), Word("THINK", 0.9, 1.2), Word("THAT", 1.3, 1.5),
             Word("WORKS", 1.6, 1.9)]
    pieces = prepare_lrs3.split_by_words(words, 2.4, 1.0)
    spans = [(round(s, 3), round(e, 3), " ".join(w.word for w in g)) for s, e, g in pieces]
    # THINK ends 1.1 s after SO starts: a new segment; the cut is the middle of the 0.45-0.9 gap, the last segment
    # ends 0.25 s after its last word
    assert spans == [(0.0, 0.675, "SO I"), (0.675, 2.15, "THINK THAT WORKS")]
    for start, end, group in pieces:
        assert group[-1].end - group[0].start <= 1.0 and end - start <= 1.0 + 2 * prepare_lrs3.SEGMENT_PAD


def test_fixture_tree_converts_to_data_dirs(recipe, lrs3_root):
    done = run_data_sh(recipe, "--corpus_dir", str(lrs3_root), "--max_segment_seconds", "1", "--valid_utts", "1",
                       "--expect_test_utts", "3", "--nj", "1")
    assert done.returncode == 0, done.stderr + done.stdout
    data = recipe / "data"
    test = read_kv(data / "test" / "text")
    assert test == {"ddddddddddd_00001": "ONE", "ddddddddddd_00002": "TWO", "eeeeeeeeeee_00003": "THREE"}
    # a whole clip is one segment, as long as its audio track (AAC adds a few ms; validated against the video below)
    audio_seconds = read_kv(data / "test" / "reco2dur")["test-eeeeeeeeeee_00003"]
    assert read_kv(data / "test" / "segments")["eeeeeeeeeee_00003"] == f"test-eeeeeeeeeee_00003 0 {audio_seconds}"
    assert read_kv(data / "test" / "utt2spk")["eeeeeeeeeee_00003"] == "eeeeeeeeeee"
    video = read_kv(data / "test" / "video.scp")
    assert video["test-ddddddddddd_00001"] == str(lrs3_root / "test" / "ddddddddddd" / "00001.mp4")
    # one trainval speaker (a whole one) is valid, and none of its clips is in train
    valid_speakers = set(read_kv(data / "valid" / "utt2spk").values())
    train = read_kv(data / "train" / "text")
    assert len(valid_speakers) == 1 and not valid_speakers & set(read_kv(data / "train" / "utt2spk").values())
    expected_train = {
        "aaaaaaaaaaa_00001": "WE WIN",                                   # trainval; {LG} removed
        "aaaaaaaaaaa_00001_00": "SO I", "aaaaaaaaaaa_00001_01": "THINK THAT WORKS",  # pretrain, cut by word times
        "x-y_zzzzzzz_00003": "YES", "x-y_zzzzzzz_00007_00": "HELLO",
        "ccccccccccc_00004": "NO", "ccccccccccc_00005": "MAYBE",
    }
    assert {u: t for u, t in expected_train.items() if u.split("_00")[0][:11] not in valid_speakers} == train
    segments = read_kv(data / "train" / "segments")
    if "aaaaaaaaaaa" not in valid_speakers:
        assert segments["aaaaaaaaaaa_00001_00"] == "pretrain-aaaaaaaaaaa_00001 0 0.675"
        assert segments["aaaaaaaaaaa_00001_01"] == "pretrain-aaaaaaaaaaa_00001 0.675 2.15"
        assert segments["aaaaaaaaaaa_00001"].startswith("trainval-aaaaaaaaaaa_00001 0 ")  # the same clip number
    removed = (data / "lrs3_removed.txt").read_text()
    assert removed.startswith("aaaaaaaaaaa_00002_00 no words left ({LG}) in ")
    assert "2 non-speech marker(s) removed from texts; 1 utterance(s) removed" in done.stdout
    for name in ("train", "valid", "test"):  # the audio of every clip, as long as its video
        problems = [p for p in validate_data_dir(data / name, media=MediaCheck()) if p.severity == "error"]
        assert problems == [], problems
    assert (data / "lrs3_audio" / "test" / "ddddddddddd" / "00001.flac").is_file()


def test_lip_roi_option_extracts_every_set(recipe, lrs3_root, monkeypatch):
    pytest.importorskip("mediapipe", reason="MediaPipe is not installed: tools/install.sh --extras test installs it")
    done = run_data_sh(recipe, "--corpus_dir", str(lrs3_root), "--max_segment_seconds", "1", "--valid_utts", "1",
                       "--expect_test_utts", "3", "--nj", "2", "--lip_roi", "true", "--snrs", "clean 0",
                       "--babble_talkers", "2")
    assert done.returncode == 0, done.stderr + done.stdout
    roi = read_kv(recipe / "dump" / "roi" / "test" / "roi.scp")
    assert list(roi) == ["ddddddddddd_00001", "ddddddddddd_00002", "eeeeeeeeeee_00003"]
    assert np.load(recipe / roi["eeeeeeeeeee_00003"]).shape == (15, 96, 96)  # 0.6 s at 25 fps (paths relative)
    report = (recipe / "dump" / "roi" / "train" / "roi_report.txt").read_text()
    assert "removed" not in report and report.count(" ok ") == len(read_kv(recipe / "data" / "train" / "text"))
    # The audio-visual data dirs run_av.sh trains and tests on: the ROIs beside the audio, clean and under babble.
    monkeypatch.chdir(recipe)  # their paths are relative to the recipe dir, as the recipe's jobs read them
    for name in ("train_av", "valid_av", "test_av", "test_av_clean", "test_av_snr0"):
        data = recipe / "data" / name
        assert read_kv(data / "roi.scp").keys() == read_kv(data / "text").keys(), name
        problems = [p for p in validate_data_dir(data, media=MediaCheck()) if p.severity == "error"]
        assert problems == [], (name, problems)
    assert read_kv(recipe / "data" / "test_av_snr0" / "roi.scp") == roi


def test_test_set_of_another_size_is_an_error(recipe, lrs3_root):
    done = run_data_sh(recipe, "--corpus_dir", str(lrs3_root), "--nj", "1")
    assert done.returncode != 0
    assert f"{lrs3_root / 'test'}: gives 3 test utterances, not 1321: a partial or damaged extraction" in done.stderr
    assert "--expect_test_utts 3" in done.stderr


def test_damaged_tree_is_listed_not_dropped(recipe, tmp_path, lrs3_root):
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(lrs3_root, broken)
    (broken / "trainval" / "ccccccccccc" / "00005.txt").unlink()
    (broken / "test" / "ddddddddddd" / "00002.txt").write_text("Conf:  3\n")
    done = run_data_sh(recipe, "--corpus_dir", str(broken), "--nj", "1")
    assert done.returncode != 0
    assert f"{broken / 'trainval' / 'ccccccccccc' / '00005.mp4'}: has no .txt beside it" in done.stderr
    assert f"{broken / 'test' / 'ddddddddddd' / '00002.txt'} line 1: does not start with a 'Text:  WORDS' line" \
        in done.stderr


def test_unset_corpus_location_points_to_db_sh(recipe):
    done = run_data_sh(recipe)
    assert done.returncode != 0 and "set LRS3 in db.sh" in done.stderr


def test_configs_parse():
    from speechllm.decoding.options import DecodingOptions
    from speechllm.tasks.speech_llm import DEFAULT_MODEL_CONF, SpeechLLMTask, check_visual_options
    from speechllm.tasks.conf_types import check_conf_keys

    DecodingOptions.from_dict(yaml.safe_load((RECIPE / "conf" / "decode.yaml").read_text()))
    for name in ("train_hubert_qwen2_lora.yaml", "train_av_stage1.yaml", "train_av.yaml"):
        # ESPnet's parser reads the config (an unknown option is an error); then every *_conf key is checked
        # against its class, as building the model does before it loads Whisper-medium and Qwen2.
        args = SpeechLLMTask.get_parser().parse_args(["--config", str(RECIPE / "conf" / name)])
        model_conf = check_conf_keys("model_conf", args.model_conf, DEFAULT_MODEL_CONF)
        visual = check_visual_options(args, model_conf)
        assert (visual is not None) == name.startswith("train_av"), name
    stage1, stage2 = (yaml.safe_load((RECIPE / "conf" / f"train_av{s}.yaml").read_text()) for s in ("_stage1", ""))
    for part in ("frontend_conf", "speech_adapter_conf", "llm_conf", "visual_frontend_conf", "visual_injection_conf"):
        assert stage1[part] == stage2[part], part  # stage 2 loads stage 1's visual parts: the same model


def test_av_steps_help_and_required_options(recipe):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    shown = subprocess.run([str(RECIPE / "av.sh"), "--help"], capture_output=True, text=True, env=env, check=False)
    assert shown.returncode == 0 and "injection pretraining" in shown.stdout and "stage1_model=" in shown.stdout
    missing = subprocess.run([str(RECIPE / "av.sh"), "--train_config", "conf/train_av.yaml"], capture_output=True,
                             text=True, env=env, check=False)
    assert missing.returncode == 1 and "--stage1_config, --train_config and --test_sets are required" in \
        missing.stderr


def test_shell_scripts_pass_shellcheck():
    from conftest import require_shellcheck

    shellcheck = require_shellcheck()
    scripts = [RECIPE / "run.sh", RECIPE / "run_av.sh", RECIPE / "av.sh", RECIPE / "local" / "data.sh"]
    done = subprocess.run([shellcheck, "-x", *map(str, scripts)], cwd=RECIPE, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
