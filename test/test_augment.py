"""RIR and noise on the training speech (--rir_scp, --noise_scp: ESPnet's options and code), checked when training
starts, applied to training utterances only."""
import numpy as np
import pytest
import soundfile

from speechllm.data.augment import SpeechAugmentation
from speechllm.data.datadir import DataDirError
from speechllm.tasks.speech_llm import SpeechLLMTask
from test_model import task_args, tokens_dir  # noqa: F401 (fixture)

RATE = 16000


def tone(seconds: float, hz: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture
def lists(tmp_path):
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "noise.wav", (0.05 * rng.standard_normal(RATE * 2)).astype(np.float32), RATE)
    delta = np.zeros(800, dtype=np.float32)
    delta[0] = 1.0
    soundfile.write(tmp_path / "delta.wav", delta, RATE)
    room = (np.exp(-np.arange(4000) / 800.0) * rng.standard_normal(4000)).astype(np.float32)
    soundfile.write(tmp_path / "room.wav", room, RATE)
    (tmp_path / "noise.scp").write_text(f"n1 {tmp_path / 'noise.wav'}\n")
    (tmp_path / "delta.scp").write_text(f"{tmp_path / 'delta.wav'}\n")  # a plain list of paths works too
    (tmp_path / "room.scp").write_text(f"r1 {tmp_path / 'room.wav'}\n")
    return tmp_path


def test_noise_is_added_at_the_drawn_snr(lists):
    speech = tone(1.0, 440, 0.1)
    augment = SpeechAugmentation(noise_scp=str(lists / "noise.scp"), noise_db_range="5")
    out = augment(speech)
    assert out.shape == speech.shape and out.dtype == np.float32
    noise = out - speech
    snr = 10 * np.log10(np.mean(speech ** 2) / np.mean(noise ** 2))
    assert snr == pytest.approx(5.0, abs=0.5)


def test_an_impulse_response_convolves_the_speech(lists):
    speech = tone(1.0, 440, 0.1)
    unit = SpeechAugmentation(rir_scp=str(lists / "delta.scp"))(speech)
    assert np.allclose(unit, speech, atol=1e-6)  # a unit impulse leaves the speech as it was
    room = SpeechAugmentation(rir_scp=str(lists / "room.scp"))(speech)
    assert room.shape == speech.shape and not np.allclose(room, speech, atol=1e-3)
    never = SpeechAugmentation(rir_scp=str(lists / "room.scp"), rir_apply_prob=0.0)(speech)
    assert np.allclose(never, speech, atol=1e-6)


def test_the_task_augments_training_utterances_only(lists, tokens_dir):  # noqa: F811
    args = task_args(tokens_dir, "--noise_scp", str(lists / "noise.scp"), "--noise_db_range", "0")
    speech = tone(0.5, 300, 0.1)
    item = {"speech": speech, "text": "one two"}
    trained = SpeechLLMTask.build_preprocess_fn(args, train=True)("u1", item)["speech"]
    validated = SpeechLLMTask.build_preprocess_fn(args, train=False)("u1", item)["speech"]
    assert not np.allclose(trained, speech, atol=1e-3)
    assert np.array_equal(validated, speech)


def test_bad_lists_are_named_with_file_and_line(lists, tokens_dir):  # noqa: F811
    bad = lists / "bad.scp"
    bad.write_text(f"n1 {lists / 'noise.wav'}\nn2 {lists / 'missing.wav'}\n")
    with pytest.raises(DataDirError, match=r"bad.scp line 2: '.*missing.wav' is not a readable audio file"):
        SpeechAugmentation(noise_scp=str(bad))
    (lists / "empty.scp").write_text("")
    with pytest.raises(DataDirError, match="empty.scp: lists no audio file"):
        SpeechAugmentation(rir_scp=str(lists / "empty.scp"))
    with pytest.raises(ValueError, match="--noise_db_range 'loud'"):
        SpeechAugmentation(noise_scp=str(lists / "noise.scp"), noise_db_range="loud")
    with pytest.raises(ValueError, match="--noise_apply_prob must be in"):
        SpeechAugmentation(noise_scp=str(lists / "noise.scp"), noise_apply_prob=2.0)
    features = task_args(tokens_dir, "--noise_scp", str(lists / "noise.scp"),
                         "--train_data_path_and_name_and_type", "dump/train/feats.scp,speech,kaldi_ark")
    with pytest.raises(ValueError, match="the training speech is dumped frontend output"):
        SpeechLLMTask.build_preprocess_fn(features, train=True)
