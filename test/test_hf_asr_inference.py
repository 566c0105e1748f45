"""speechllm.bin.hf_asr_inference: Whisper's own decoder over a Kaldi wav.scp, in ESPnet's output layout.

Input errors are checked without a model; decoding uses the real Whisper tiny.en of ../shared (skipped when absent)
on real AN4 recordings from ../shared's mini_an4 archive."""
import math
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechllm.bin import hf_asr_inference as hf
from speechllm.bin import score_text

AN4 = {"an251-fash-b": "yes", "an253-fash-b": "go", "cen8-fbbh-b": "march third nineteen twenty eight"}


def write_scp(path: Path, entries: dict) -> Path:
    path.write_text("".join(f"{key} {value}\n" for key, value in sorted(entries.items())))
    return path


@pytest.fixture
def tone_wav(tmp_path) -> Path:
    path = tmp_path / "tone.wav"
    sf.write(path, 0.1 * np.sin(np.arange(8000) / 5), 16000, subtype="PCM_16")
    return path


def run_main(argv, capsys):
    code = hf.main(argv)
    return code, capsys.readouterr().err


def test_missing_model_folder_is_named_with_the_fix(tmp_path, tone_wav, capsys):
    scp = write_scp(tmp_path / "wav.scp", {"spk-a": tone_wav})
    code, err = run_main(["--model_dir", str(tmp_path / "no_model"), "--wav_scp", str(scp),
                          "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 1
    assert f"model folder '{tmp_path / 'no_model'}' does not exist" in err and "save_pretrained" in err
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    code, err = run_main(["--model_dir", str(tmp_path / "half"), "--wav_scp", str(scp),
                          "--output_dir", str(tmp_path / "out")], capsys)
    assert code == 1 and "lacks preprocessor_config.json" in err


def test_bad_input_fails_before_the_model_loads(tmp_path, tone_wav, capsys):
    absent_model = str(tmp_path / "no_model")  # never reached: the input is checked first
    out = str(tmp_path / "out")
    code, err = run_main(["--model_dir", absent_model, "--wav_scp", str(tmp_path / "none.scp"), "--output_dir", out],
                         capsys)
    assert code == 1 and "none.scp' does not exist" in err
    scp = write_scp(tmp_path / "wav.scp", {"spk-a": tone_wav, "spk-b": tmp_path / "gone.wav"})
    code, err = run_main(["--model_dir", absent_model, "--wav_scp", str(scp), "--output_dir", out], capsys)
    assert code == 1 and "utterance 'spk-b'" in err and "gone.wav' does not exist" in err
    keys = tmp_path / "keys"
    keys.write_text("spk-a\nspk-zz\n")
    code, err = run_main(["--model_dir", absent_model, "--wav_scp", str(scp), "--key_file", str(keys),
                          "--output_dir", out], capsys)
    assert code == 1 and "spk-zz" in err
    code, err = run_main(["--model_dir", absent_model, "--data_path_and_name_and_type", f"{scp},speech,text",
                          "--output_dir", out], capsys)
    assert code == 2


def test_models_without_long_form_refuse_long_utterances():
    recognizer = hf.Recognizer.__new__(hf.Recognizer)
    recognizer.window, recognizer.is_whisper, recognizer.fs, recognizer.window_text = 16000 * 20, False, 16000, "20 s"
    recognizer.check_length(hf.Utterance("spk-short", np.zeros(16000 * 20, np.float32), 20.0))
    with pytest.raises(hf.InferenceError, match="utterance 'spk-long' is 21.0 s.*no long-form generation"):
        recognizer.check_length(hf.Utterance("spk-long", np.zeros(16000 * 21, np.float32), 21.0))


# ---------------------------------------------------------------------------------------------------------------
# Whisper tiny.en on real AN4 speech.

@pytest.fixture(scope="module")
def whisper_dir(shared_dir) -> Path:
    folder = shared_dir / "models" / "whisper-tiny.en"
    if not (folder / "config.json").is_file():
        pytest.skip(f"{folder} is absent: the real Whisper tiny.en lives in ../shared on developer and CI machines")
    return folder


@pytest.fixture(scope="module")
def recognizer(whisper_dir):
    return hf.Recognizer(str(whisper_dir))


@pytest.fixture(scope="module")
def an4_wavs(shared_dir, tmp_path_factory) -> dict:
    archive = shared_dir / "corpora" / "mini_an4" / "downloads.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    folder = tmp_path_factory.mktemp("an4")
    found = {}
    with tarfile.open(archive) as tar:
        for member in tar:
            stem = Path(member.name).stem
            if member.name.endswith(".sph") and stem in AN4:
                found[stem] = folder / f"{stem}.sph"
                found[stem].write_bytes(tar.extractfile(member).read())
    assert sorted(found) == sorted(AN4)
    return found


def test_whisper_settings_match_openai_whisper(recognizer):
    config = recognizer.model.generation_config
    assert config.no_timestamps_token_id == 50362 and config.is_multilingual is False
    # openai-whisper's non-speech symbols ('"', '#', '(', ...) and its special tokens, as the released config has.
    assert config.suppress_tokens[:8] == [1, 2, 7, 8, 9, 10, 14, 25]
    assert {50257, 50357, 50358, 50359, 50360, 50361} <= set(config.suppress_tokens)
    assert len(config.suppress_tokens) == 90


def test_decodes_real_speech_in_espnet_layout(recognizer, an4_wavs, tmp_path):
    entries = {f"fash-{stem}" if "fash" in stem else f"fbbh-{stem}": path for stem, path in an4_wavs.items()}
    # The same utterance as a 44.1 kHz stereo FLAC behind a pipe: read, mixed down and resampled like the SPHERE.
    samples, fs = sf.read(an4_wavs["an251-fash-b"])
    stereo = np.stack([samples, samples], axis=1)
    from speechllm.data.audio import resample

    sf.write(tmp_path / "yes.flac", resample(stereo, fs, 44100), 44100)
    entries["fash-yes-stereo"] = f"cat {tmp_path / 'yes.flac'} |"
    scp = write_scp(tmp_path / "wav.scp", entries)
    keys = tmp_path / "keys"
    keys.write_text("fash-an251-fash-b\nfash-yes-stereo\nfbbh-cen8-fbbh-b\n")
    stats = hf.inference("unused", scp, tmp_path / "out", key_file=keys, batch_size=2, recognizer=recognizer)
    assert stats["utterances"] == 3 and stats["rtf"] > 0
    out = tmp_path / "out" / "1best_recog"
    text = dict(line.split(" ", 1) for line in (out / "text").read_text().splitlines())
    score = dict(line.split(" ", 1) for line in (out / "score").read_text().splitlines())
    assert list(text) == sorted(keys.read_text().split()) == list(score)
    assert text["fash-an251-fash-b"].lower().strip(".!") == "yes" == text["fash-yes-stereo"].lower().strip(".!")
    assert "march" in text["fbbh-cen8-fbbh-b"].lower()
    assert all(-50 < float(value) < 0 for value in score.values())
    # The recipe's scoring reads it like any other decode.
    ref = tmp_path / "ref"
    ref.write_text("fash-an251-fash-b yes\nfash-yes-stereo yes\nfbbh-cen8-fbbh-b march third nineteen twenty eight\n")
    assert score_text.main(["--ref", str(ref), "--hyp", str(out / "text"), "--normalize", "whisper_en",
                            "--out_dir", str(tmp_path / "score")]) == 0
    assert "Sum/Avg" in (tmp_path / "score" / "result.txt").read_text()


def test_long_utterances_use_long_form_generation(recognizer, an4_wavs, tmp_path):
    """Over Whisper's 30 s window: decoded whole (both ends of the audio are in the text), never cut."""
    parts = []
    for stem in ("an251-fash-b", "cen8-fbbh-b") * 4 + ("an253-fash-b",):
        parts += [sf.read(an4_wavs[stem])[0], np.zeros(16000 * 2)]
    long = np.concatenate(parts)
    assert len(long) > 30 * 16000
    sf.write(tmp_path / "long.wav", long, 16000, subtype="PCM_16")
    scp = write_scp(tmp_path / "wav.scp", {"fash-long": tmp_path / "long.wav"})
    stats = hf.inference("unused", scp, tmp_path / "out", recognizer=recognizer)
    assert stats["long_form"] == 1
    text = (tmp_path / "out" / "1best_recog" / "text").read_text().lower()
    assert text.count("march") >= 3 and text.rstrip().rstrip(".!").endswith("go"), text
    assert math.isnan(float((tmp_path / "out" / "1best_recog" / "score").read_text().split()[1]))


def test_unreadable_audio_is_named(recognizer, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    scp = write_scp(tmp_path / "wav.scp", {"spk-bad": bad})
    with pytest.raises(hf.InferenceError, match=r"utterance 'spk-bad'.*bad\.wav.*fix:"):
        hf.inference("unused", scp, tmp_path / "out", recognizer=recognizer)
