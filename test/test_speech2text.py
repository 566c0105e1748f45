"""The three-line Python API (speechllm.Speech2Text), the speechllm-transcribe command and safe unpacking, on a tiny
untrained model (fbank -> adapter -> toy LLM) written as a recipe would write it."""
from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from speechllm.bin import transcribe
from speechllm.bin.pack import pack, unpack
from speechllm.tasks.speech_llm import SpeechLLMTask
from test_model import tokens_dir  # noqa: F401 (fixture)

RATE = 16000


@pytest.fixture(scope="module")
def model_dir(tokens_dir, tmp_path_factory) -> Path:  # noqa: F811
    """config.yaml (as ESPnet writes it) and model.pth of a tiny untrained speech LLM."""
    root = tmp_path_factory.mktemp("model")
    args = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", str(root), "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
        "--frontend_conf", "n_mels=40", "--speech_adapter_conf", "hidden_size=16", "--model_conf", "prompt=''"])
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    (root / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), root / "model.pth")
    return root


@pytest.fixture(scope="module")
def packed(model_dir) -> Path:
    return pack(str(model_dir / "config.yaml"), str(model_dir / "model.pth"), str(model_dir / "packed.zip"))


def speech(seconds: float = 0.8, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * RATE))).astype(np.float32)


def test_three_lines_from_a_packed_zip_or_a_folder(packed, model_dir, tmp_path):
    from speechllm import Speech2Text

    s2t = Speech2Text.from_pretrained(str(packed), max_length=6)
    wav = tmp_path / "a.wav"
    soundfile.write(wav, speech(), RATE, subtype="FLOAT")
    text = s2t(str(wav))
    assert isinstance(text, str)
    # The same transcript from an array, a tensor, the model dir, and the low-level batch call.
    assert s2t(speech(), sample_rate=RATE) == text
    assert s2t(torch.from_numpy(speech())) == text
    assert Speech2Text.from_pretrained(str(model_dir), max_length=6)(speech()) == text
    hyps = s2t.decode(torch.from_numpy(speech()))
    assert s2t.text(hyps[0][0]) == text
    # A list is one batch; n-best lists hold (text, score) pairs, best first.
    assert len(s2t([str(wav), speech(1.2, seed=1)])) == 2
    nbest = s2t(speech(), nbest=2)
    assert len(nbest) == 2 and nbest[0][0] != nbest[1][0] and all(isinstance(t, str) for t, _ in nbest)
    assert nbest[0][0] == text  # the best of the n-best is the 1-best


def test_audio_is_converted_or_refused_with_the_file_named(packed, tmp_path, caplog):
    from speechllm import Speech2Text

    s2t = Speech2Text.from_pretrained(str(packed), max_length=6)
    mono = speech()
    reference = s2t(mono)
    stereo = np.stack([mono, mono], axis=1)
    with caplog.at_level("INFO"):
        assert s2t(stereo) == reference  # (samples, channels)
    assert "2 channels averaged into one" in caplog.text
    assert s2t(stereo.T.copy()) == reference  # (channels, samples)
    pcm = np.round(mono * 32767).astype(np.int16)
    assert isinstance(s2t(pcm), str)
    # Another rate is resampled: 8 kHz input gives what its 16 kHz resampling gives.
    from speechllm.data.audio import resample

    low = resample(mono, RATE, 8000).astype(np.float32)
    assert s2t(low, sample_rate=8000) == s2t(resample(low, 8000, RATE).astype(np.float32))
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really")
    with pytest.raises(ValueError, match=f"cannot read audio file '{broken}'"):
        s2t(str(broken))
    with pytest.raises(TypeError, match="unknown decoding option"):
        s2t(mono, beam_width=3)
    with pytest.raises(FileNotFoundError, match="neither a packed model"):
        Speech2Text.from_pretrained(str(tmp_path))


UNPACK_AND_LIST = """
import sys
from pathlib import Path
from speechllm.bin.pack import unpack
config, model = unpack(sys.argv[1])
print(" ".join(sorted(p.name for p in Path(config).parent.rglob("*") if p.is_file())))
"""


def test_unpacking_at_once_in_several_processes_gives_every_process_the_whole_folder(packed, tmp_path):
    copy = tmp_path / "copy.zip"
    copy.write_bytes(packed.read_bytes())
    # pack.py imports nothing heavy: six processes start within milliseconds and race for the same folder.
    processes = [subprocess.Popen([sys.executable, "-c", UNPACK_AND_LIST, str(copy)], stdout=subprocess.PIPE,
                                  text=True) for _ in range(6)]
    listings = [process.communicate()[0].split() for process in processes]
    assert all(process.returncode == 0 for process in processes)
    with zipfile.ZipFile(copy) as archive:
        expected = sorted({Path(n).name for n in archive.namelist()} | {"config.resolved.yaml"})
    assert all(listing == expected for listing in listings), listings
    assert not list(tmp_path.glob(".copy.partial.*"))  # no temporary folder left behind


def test_unpacking_refuses_members_outside_the_folder(tmp_path):
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("config.yaml", "llm_conf: {name_or_path: llm}\n")
        archive.writestr("../outside.txt", "gotcha")
    with pytest.raises(ValueError, match="member '../outside.txt' would be written outside"):
        unpack(str(evil))
    assert not (tmp_path.parent / "outside.txt").exists()
    (tmp_path / "notzip.zip").write_text("plain text")
    with pytest.raises(ValueError, match="is not a zip archive"):
        unpack(str(tmp_path / "notzip.zip"))


def test_transcribe_command_prints_id_and_text(packed, tmp_path, capsys, monkeypatch):
    wav = tmp_path / "b.wav"
    soundfile.write(wav, speech(), RATE, subtype="FLOAT")
    options = [str(packed), "--max_length", "6"]
    # Once as a command (its entry point and exit status), then through its main() in this process.
    out = subprocess.run([sys.executable, "-m", "speechllm.bin.transcribe", *options, str(wav)],
                         capture_output=True, text=True, check=True).stdout
    key, text = out.rstrip("\n").split("\t")
    assert key == "b.wav" and isinstance(text, str)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"utt1 {wav}\nutt2 {wav}\n"))
    assert transcribe.main([*options, "-"]) == 0
    out = capsys.readouterr().out
    assert [line.split("\t")[0] for line in out.splitlines()] == ["utt1", "utt2"]
    assert {line.split("\t", 1)[1] for line in out.splitlines()} == {text}
    assert transcribe.main([*options, str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav" in capsys.readouterr().err


def test_an_utterance_decodes_alike_alone_and_in_a_padded_batch(model_dir):
    """Padding in a batch must not change an utterance's scores: each one's best hypothesis, decoded alone, scores
    the same in a batch with longer and shorter ones (a different hypothesis only at a tie within float noise)."""
    from speechllm import Speech2Text

    s2t = Speech2Text.from_pretrained(str(model_dir), max_length=6, beam_size=3)
    waves = [torch.from_numpy(speech(seconds, seed)) for seed, seconds in enumerate((0.5, 1.3, 0.9))]
    batch = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    together = s2t.decode(batch, torch.tensor([len(w) for w in waves]))
    for wave, in_batch in zip(waves, together):
        alone = s2t.decode(wave[None])[0]
        assert in_batch[0].logprob == pytest.approx(alone[0].logprob, abs=1e-3)
        if in_batch[0].token_ids != alone[0].token_ids:  # only a tie may pick another hypothesis
            assert any(h.token_ids == in_batch[0].token_ids and h.logprob == pytest.approx(alone[0].logprob, abs=1e-3)
                       for h in alone)


def test_a_model_over_the_corpus_bpe_packs_its_units_and_decodes_them(tokens_dir, tmp_path):  # noqa: F811
    """--token_type bpe: the packed archive carries the label units' BPE; decoding writes text spelled by its
    pieces, never the prompt's LLM tokens that the rebuilt vocabulary keeps."""
    from speechllm import Speech2Text

    bpe = tmp_path / "units.model"
    bpe.write_bytes((tokens_dir / "ctc_bpe.model").read_bytes())
    args = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", str(tmp_path), "--llm_conf", f"name_or_path={tokens_dir / 'llm'}",
        "--frontend_conf", "n_mels=40", "--speech_adapter_conf", "hidden_size=16", "--model_conf", "prompt=five",
        "--token_type", "bpe", "--bpemodel", str(bpe)])
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    torch.save(model.state_dict(), tmp_path / "model.pth")
    archive = pack(str(tmp_path / "config.yaml"), str(tmp_path / "model.pth"), str(tmp_path / "packed.zip"))
    bpe.unlink()  # the archive must not need the original file
    s2t = Speech2Text.from_pretrained(str(archive), max_length=6, beam_size=2)
    hyps = s2t.decode(torch.from_numpy(speech()))
    ids = [i for h in hyps[0] for i in h.token_ids]
    assert ids and max(ids) < s2t.tokenizer.num_pieces
    assert isinstance(s2t(speech()), str)


def test_a_config_written_before_the_label_unit_options_still_loads(model_dir, tmp_path):
    """Models trained before --token_type/--bpemodel existed (their config.yaml has neither) decode as before."""
    from speechllm import Speech2Text

    config = yaml.safe_load((model_dir / "config.yaml").read_text())
    for key in ("token_type", "bpemodel"):
        config.pop(key)
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.yaml").write_text(yaml.safe_dump(config))
    (old / "model.pth").write_bytes((model_dir / "model.pth").read_bytes())
    assert Speech2Text.from_pretrained(str(old), max_length=6)(speech()) == \
        Speech2Text.from_pretrained(str(model_dir), max_length=6)(speech())
