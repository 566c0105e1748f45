"""Non-speech utterances against insertions: utils/add_nonspeech.sh mixes noise segments and near-silence with empty
transcripts into a data dir at a chosen share; scoring counts what a model writes on them."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from speechllm.bin.score_text import main as score_text
from speechllm.data.datadir import read_kv
from speechllm.scoring.results import collect, to_markdown

REPO = Path(__file__).resolve().parents[1]


def tool(*args, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run([str(REPO / "utils/add_nonspeech.sh"), *args], capture_output=True, text=True, env=env,
                          check=check)


@pytest.fixture
def speech_dir(tmp_path) -> Path:
    """9 speech utterances of 1.5-2.5 s (dumped: flac files and utt2num_samples)."""
    data = tmp_path / "train"
    (data / "audio").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = {"wav.scp": [], "text": [], "utt2spk": [], "utt2num_samples": []}
    for i in range(9):
        utt = f"spk{i % 3}-utt{i}"
        n = int(16000 * (1.5 + i / 8))
        soundfile.write(data / "audio" / f"{utt}.flac", 0.1 * rng.standard_normal(n), 16000)
        lines["wav.scp"].append(f"{utt} {data / 'audio' / f'{utt}.flac'}")
        lines["text"].append(f"{utt} word {i}")
        lines["utt2spk"].append(f"{utt} spk{i % 3}")
        lines["utt2num_samples"].append(f"{utt} {n}")
    for name, rows in lines.items():
        (data / name).write_text("\n".join(sorted(rows)) + "\n")
    spk2utt = {}
    for row in sorted(lines["utt2spk"]):
        utt, spk = row.split()
        spk2utt.setdefault(spk, []).append(utt)
    (data / "spk2utt").write_text("".join(f"{s} {' '.join(u)}\n" for s, u in sorted(spk2utt.items())))
    return data


@pytest.fixture
def noise_scp(tmp_path) -> Path:
    """A 16 kHz mono noise of 4 s and an 8 kHz stereo 'music' of 3 s."""
    rng = np.random.default_rng(1)
    soundfile.write(tmp_path / "babble.wav", 0.2 * rng.standard_normal(64000), 16000, subtype="PCM_16")
    soundfile.write(tmp_path / "music.flac", 0.2 * rng.standard_normal((24000, 2)), 8000)
    scp = tmp_path / "noise.scp"
    scp.write_text(f"babble {tmp_path / 'babble.wav'}\nmusic {tmp_path / 'music.flac'}\n")
    return scp


def test_nonspeech_utterances_are_mixed_in_at_the_share(speech_dir, noise_scp, tmp_path):
    dest = tmp_path / "train_ns"
    out = tool("--share", "0.25", "--silence_share", "0.34", str(noise_scp), str(speech_dir), str(dest))
    assert "9 speech utterances and 3 non-speech (2 cut from" in out.stderr and "1 near-silence" in out.stderr
    text = read_kv(dest / "text")
    added = [u for u in text if u.startswith("nonspeech-")]
    assert len(text) == 12 and len(added) == 3 and all(text[u] == "" for u in added)
    assert not (dest / "utt2category").exists()  # ESPnet's training would batch by category
    assert read_kv(dest / "utt2spk")[added[0]] == "nonspeech"
    assert {u.split("-")[1] for u in added} == {"silence", "babble", "music"}
    lengths = read_kv(dest / "utt2num_samples")
    speech_lengths = [int(v) for k, v in lengths.items() if k not in added]
    babble = next(u for u in added if "-babble-" in u)
    segment, fs = soundfile.read(read_kv(dest / "wav.scp")[babble])
    assert fs == 16000 and len(segment) == int(lengths[babble]) and len(segment) in speech_lengths
    source, _ = soundfile.read(noise_scp.parent / "babble.wav")
    start = int(np.argmin([np.abs(source[s:s + 100] - segment[:100]).sum() for s in range(len(source) - 100)]))
    assert np.array_equal(source[start:start + len(segment)], segment)  # a cut of the noise, bit for bit
    silence, _ = soundfile.read(read_kv(dest / "wav.scp")[next(u for u in added if "-silence-" in u)])
    assert 0 < np.sqrt(np.mean(silence ** 2)) < 0.002
    # The same seed gives the same set.
    again = tmp_path / "again"
    tool("--share", "0.25", "--silence_share", "0.34", str(noise_scp), str(speech_dir), str(again))
    assert (again / "utt2num_samples").read_text() == (dest / "utt2num_samples").read_text()


def test_bad_input_is_named(speech_dir, noise_scp, tmp_path):
    out = tool("--share", "1.0", str(noise_scp), str(speech_dir), str(tmp_path / "x"), check=False)
    assert out.returncode != 0 and "--share 1.0 is not in [0, 1)" in out.stderr
    (speech_dir / "utt2num_samples").unlink()
    out = tool(str(noise_scp), str(speech_dir), str(tmp_path / "x"), check=False)
    assert out.returncode != 0 and "utt2num_samples" in out.stderr and "utils/dump_audio.sh" in out.stderr


def test_a_broken_noise_recording_is_named(speech_dir, tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    scp = tmp_path / "bad.scp"
    scp.write_text(f"hum {tmp_path / 'bad.wav'}\n")
    out = tool("--silence_share", "0", str(scp), str(speech_dir), str(tmp_path / "x"), check=False)
    assert out.returncode != 0 and "recording 'hum'" in out.stderr and str(scp) in out.stderr


def test_scoring_counts_the_insertions_on_nonspeech(tmp_path):
    exp = tmp_path / "exp"
    decode = exp / "decode_x" / "test"
    decode.mkdir(parents=True)
    (tmp_path / "ref").write_text("a-1 one two\na-2 three\nnonspeech-x-00000\nnonspeech-y-00001\n"
                                  "nonspeech-z-00002\n")
    (decode / "text").write_text("a-1 one two\na-2 three\nnonspeech-x-00000 the end\nnonspeech-y-00001\n"
                                 "nonspeech-z-00002 yes\n")
    assert score_text(["--ref", str(tmp_path / "ref"), "--hyp", str(decode / "text"),
                       "--out_dir", str(decode / "score_wer")]) == 0
    counts = yaml.safe_load((decode / "score_wer" / "nonspeech.yaml").read_text())
    assert counts == {"utterances": 3, "with_output": 2, "inserted": 3, "unit": "word"}
    table = to_markdown(exp, collect(exp))
    assert "### Insertions on non-speech" in table and "|decode_x/test|3|2|66.7|3|1.00|" in table
