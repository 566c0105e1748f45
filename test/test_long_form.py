"""Long recordings: cut at pauses into segments the model can take, decoded in batches, texts joined; nothing is
cut off. Segmenter on real AN4 speech (Silero VAD) and on synthetic bursts (low-energy cuts); Speech2Text, the
decoding program and the CLI on a tiny untrained model."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import soundfile
import yaml

from speechllm.decoding.segment import Segmenter, silero_installed
from test_model import tokens_dir  # noqa: F401 (fixture)
from test_speech2text import model_dir  # noqa: F401 (fixture)

RATE = 16000


def bursts(seconds_each, gap=0.6, seed=0):
    """Noise bursts (loud) separated by near-silent gaps; returns the samples and each burst's (start, end)."""
    rng = np.random.default_rng(seed)
    parts, spans, position = [], [], 0
    for seconds in seconds_each:
        silence = 0.001 * rng.standard_normal(int(gap * RATE))
        burst = 0.3 * rng.standard_normal(int(seconds * RATE))
        parts += [silence, burst]
        spans.append((position + len(silence), position + len(silence) + len(burst)))
        position += len(silence) + len(burst)
    parts.append(0.001 * rng.standard_normal(int(gap * RATE)))
    return np.concatenate(parts).astype(np.float32), spans


def check_spans(spans, total, limit):
    assert spans and all(0 <= s < e <= total for s, e in spans)
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))  # in order, no overlap
    assert max(e - s for s, e in spans) <= limit


def test_a_short_recording_is_one_untouched_segment():
    samples, _ = bursts([1.0, 1.0])
    assert Segmenter(10.0, vad="none")(samples, RATE) == [(0, len(samples))]


def test_low_energy_cuts_fall_in_the_pauses_and_keep_every_sample():
    samples, speech = bursts([2.0] * 12)  # 12 bursts of 2 s with pauses of 0.6 s: 31.8 s
    segmenter = Segmenter(5.0, vad="none")
    spans = segmenter(samples, RATE)
    check_spans(spans, len(samples), 5 * RATE)
    assert spans[0][0] == 0 and spans[-1][1] == len(samples)
    assert all(e == s for (_, e), (s, _) in zip(spans, spans[1:]))  # consecutive: nothing left out
    for _, cut in spans[:-1]:  # every cut falls in a pause, not in a burst
        assert not any(start < cut < end for start, end in speech), cut / RATE
    with pytest.raises(ValueError, match="at least 1 s"):
        Segmenter(0.5)
    with pytest.raises(ValueError, match="vad must be one of"):
        Segmenter(10.0, vad="webrtc")


@pytest.fixture(scope="module")
def an4_recording(shared_dir, tmp_path_factory):  # noqa: F811
    """The real AN4 utterances of mini_an4 (8) joined with 0.5 s pauses into one recording of 19.4 s."""
    archive = shared_dir / "corpora/mini_an4/downloads.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    out = tmp_path_factory.mktemp("an4")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    pieces, edges, position = [], [], 0
    for path in sorted((out / "downloads/an4/wav").rglob("*.sph"))[:14]:
        wave = soundfile.read(str(path), dtype="float32")[0]
        pause = np.zeros(int(0.5 * RATE), dtype=np.float32)
        pieces += [wave, pause]
        position += len(wave)
        edges.append(position)  # where each utterance ends (its pause starts)
        position += len(pause)
    return np.concatenate(pieces), edges


@pytest.mark.skipif(not silero_installed(), reason="silero-vad is not installed (tools/install.sh installs it)")
def test_silero_vad_cuts_real_speech_between_utterances(an4_recording):
    samples, edges = an4_recording
    segmenter = Segmenter(5.0, vad="silero")
    spans = segmenter(samples, RATE)
    assert segmenter.last_method.startswith("silero-vad")
    check_spans(spans, len(samples), 5 * RATE)
    assert len(spans) >= len(samples) / (5 * RATE)
    # Cuts fall in pauses (between utterances, or the pauses between spelled letters inside AN4's): the 50 ms
    # around each segment's end and the next one's start are far quieter than the recording's speech.
    loud = np.sqrt(np.mean(np.square(samples[np.abs(samples) > 0])))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        for cut in (end, start):
            around = samples[max(0, cut - 400): cut + 400]
            assert np.sqrt(np.mean(np.square(around))) < 0.1 * loud, cut / RATE  # in speech: 0.3 to 2.7
    # At most the pauses are left out: at least 90% of the audio of the utterances lies in a segment.
    covered = sum(e - s for s, e in spans)
    assert covered >= 0.9 * (len(samples) - len(edges) * 0.5 * RATE)


def test_speech2text_joins_the_texts_of_a_long_recordings_segments(model_dir):  # noqa: F811
    from speechllm import Speech2Text

    s2t = Speech2Text.from_pretrained(str(model_dir), max_length=4, vad="none", batch_size=3)
    samples, _ = bursts([1.5] * 8)  # 17.4 s
    spans = s2t.segmenter(4.0)(samples, RATE)
    assert len(spans) >= 5
    alone = [s2t(samples[s:e]) for s, e in spans]  # each segment decoded as its own recording
    long = s2t(samples, segment_seconds=4.0)
    assert long == " ".join(t for t in alone if t)
    # In a list with a short input, in batches of 3 segments: the same texts.
    short = samples[: RATE]
    assert s2t([short, samples], segment_seconds=4.0) == [s2t(short), long]
    nbest = s2t(samples, segment_seconds=4.0, nbest=2)
    assert nbest[0][0] == long and len(nbest) == 2


def test_default_segment_length_is_the_longest_training_utterance(model_dir, tmp_path):  # noqa: F811
    from speechllm import Speech2Text

    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    untold = Speech2Text.from_pretrained(str(model_dir), max_length=4, vad="none")
    assert untold.default_segment_seconds() > 4.0  # no training lengths recorded: the window or the LLM's context
    segments = {}
    shutil.copy(model_dir / "model.pth", tmp_path)
    for longest in (4.0, 0.2, 1000.0):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump({**config, "longest_train_seconds": longest}))
        s2t = Speech2Text.from_pretrained(str(tmp_path), max_length=4, vad="none")
        segments[longest] = s2t.default_segment_seconds()
        if longest == 4.0:
            samples, _ = bursts([1.5] * 8)  # 17.4 s: cut into segments of at most 4 s without being asked
            assert s2t(samples) == s2t(samples, segment_seconds=4.0) != s2t(samples, segment_seconds=30.0)
    assert segments == {4.0: 4.0, 0.2: 1.0, 1000.0: untold.default_segment_seconds()}  # floor 1 s; window caps


def test_decoding_program_and_cli_segment_long_recordings(model_dir, tmp_path):  # noqa: F811
    from speechllm import Speech2Text

    samples, _ = bursts([1.5] * 8, seed=1)
    wav = tmp_path / "long.wav"
    soundfile.write(wav, samples, RATE, subtype="FLOAT")
    short = tmp_path / "short.wav"
    soundfile.write(short, samples[: RATE], RATE, subtype="FLOAT")
    (tmp_path / "wav.scp").write_text(f"long {wav}\nshort {short}\n")
    expected = Speech2Text.from_pretrained(str(model_dir), max_length=4, vad="none")(
        [str(wav), str(short)], segment_seconds=4.0)
    program = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.speechllm_inference", "--train_config", str(model_dir / "config.yaml"),
         "--model_file", str(model_dir / "model.pth"), "--max_length", "4", "--batch_size", "2",
         "--segment_seconds", "4", "--vad", "none", "--output_dir", str(tmp_path / "out"),
         "--data_path_and_name_and_type", f"{tmp_path / 'wav.scp'},speech,sound"],
        check=True, capture_output=True, text=True, timeout=300)
    assert "progress 10%" not in program.stderr  # one batch of 2 passes every step at once: one line
    assert f"decode {tmp_path / 'out'}: progress 100% (2 of 2 utterances)" in program.stderr
    decoded = dict(line.partition(" ")[::2] for line in (tmp_path / "out/1best_recog/text").read_text().splitlines())
    assert [decoded["long"], decoded["short"]] == expected
    cli = subprocess.run(
        [sys.executable, "-m", "speechllm.bin.transcribe", str(model_dir), str(wav), "--max_length", "4",
         "--segment_seconds", "4", "--vad", "none"], check=True, capture_output=True, text=True, timeout=300)
    assert cli.stdout == f"long.wav\t{expected[0]}\n"
