"""Checkpoints and command-line dicts as attack surface and as crash victims (speechllm.train.trainer, safe_args).

A tiny speech LLM (fbank, one Transformer block, a toy LLM) trains for real through ESPnet's AbsTask.main on three
utterances, so resuming, averaging and saving are ESPnet's own code paths with speechllm's Trainer.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from speechllm.bin import speechllm_inference, speechllm_train
from speechllm.bin.prepare_tokens import make_toy_llm
from speechllm.tasks.speech_llm import SpeechLLMTask
from speechllm.train.trainer import safe_load

REPO = Path(__file__).resolve().parents[1]
SENTENCES = ["one two three four five", "p i t t s b u r g h", "march fifth nineteen ninety"]
TOY = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
           num_key_value_heads=1)
LENGTHS = (8000, 6400, 4800)


class Marker:
    """Unpickling this runs code: it writes a marker file (what a crafted checkpoint would do, more quietly)."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ckpt")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY))
    make_toy_llm(root / "toy.yaml", SENTENCES * 10, root / "llm")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    wav_scp, text, speech_shape, text_shape = [], [], [], []
    for i, (n, sentence) in enumerate(zip(LENGTHS, SENTENCES)):
        soundfile.write(data / f"u{i}.wav", 0.1 * rng.standard_normal(n), 16000)
        wav_scp.append(f"u{i} {data / f'u{i}.wav'}\n")
        text.append(f"u{i} {sentence}\n")
        speech_shape.append(f"u{i} {n}\n")
        text_shape.append(f"u{i} {len(sentence.split())}\n")
    for name, lines in (("wav.scp", wav_scp), ("text", text), ("speech_shape", speech_shape),
                        ("text_shape", text_shape)):
        (data / name).write_text("".join(lines))
    return {"root": root, "data": data}


def train_cmd(setup: dict, output_dir: Path, *extra: str) -> list:
    data = setup["data"]
    cmd = ["--output_dir", str(output_dir), "--llm_conf", f"name_or_path={setup['root'] / 'llm'}",
           "--llm_conf", "finetune=full", "--ctc_token_type", "llm", "--model_conf", "ctc_weight=0.3",
           "--model_conf", "prompt=", "--frontend_conf", "n_mels=20", "--encoder", "transformer",
           "--encoder_conf", "{output_size: 16, attention_heads: 2, linear_units: 16, num_blocks: 1}",
           "--speech_adapter_conf", "hidden_size=16", "--num_workers", "0", "--batch_size", "3",
           "--fold_length", "80000", "--fold_length", "150",
           "--use_matplotlib", "false", "--use_tensorboard", "false", "--keep_nbest_models", "2",
           "--optim", "adam", "--optim_conf", "lr=0.001", "--seed", "0", "--resume", "true"]
    for mode in ("train", "valid"):
        cmd += [f"--{mode}_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                f"--{mode}_data_path_and_name_and_type", f"{data / 'text'},text,text",
                f"--{mode}_shape_file", str(data / "speech_shape"), f"--{mode}_shape_file", str(data / "text_shape")]
    return cmd + list(extra)


def train(setup: dict, output_dir: Path, *extra: str) -> None:
    SpeechLLMTask.main(cmd=train_cmd(setup, output_dir, *extra))


def epoch_of(checkpoint: Path) -> int:
    return safe_load(checkpoint, map_location="cpu")["reporter"]["epoch"]


@pytest.fixture(scope="module")
def trained(setup) -> Path:
    """Two epochs: checkpoint.pth, 1epoch.pth, 2epoch.pth and the averaged models."""
    exp = setup["root"] / "trained"
    train(setup, exp, "--max_epoch", "2")
    return exp


# ---------------------------------------------------------------------------------------------- loading safely


def test_checkpoints_written_by_training_load_with_weights_only_and_resume(setup, trained, tmp_path):
    assert epoch_of(trained / "checkpoint.pth") == 2
    assert (trained / "valid.loss.ave_2best.pth").is_file()  # averaging loaded both epochs with weights_only
    exp = tmp_path / "exp"
    exp.mkdir()
    for name in ("checkpoint.pth", "1epoch.pth", "2epoch.pth"):
        (exp / name).write_bytes((trained / name).read_bytes())
    train(setup, exp, "--max_epoch", "3")
    assert epoch_of(exp / "checkpoint.pth") == 3
    assert not list(exp.glob(".*.tmp"))


def test_training_records_its_longest_utterance_for_decoding(trained):
    # Decoding cuts longer recordings into segments no longer than this (Speech2Text.default_segment_seconds).
    config = yaml.safe_load((trained / "config.yaml").read_text())
    assert config["longest_train_seconds"] == max(LENGTHS) / 16000


def test_resume_refuses_a_checkpoint_that_would_run_code(setup, tmp_path):
    marker = tmp_path / "MARKER"
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({"model": {}, "reporter": Marker(marker), "optimizers": [], "schedulers": [], "scaler": None},
               exp / "checkpoint.pth")
    with pytest.raises(Exception) as error:
        train(setup, exp, "--max_epoch", "1")
    assert not marker.exists(), "resuming unpickled the crafted checkpoint and ran its code"
    assert str(exp / "checkpoint.pth") in str(error.value) and "refused to load" in str(error.value)


def test_model_averaging_refuses_an_epoch_file_that_would_run_code(setup, tmp_path, monkeypatch):
    """Epoch 1's snapshot is replaced by a crafted file while epoch 2 trains; the final averaging must not run it."""
    marker = tmp_path / "MARKER"
    exp = tmp_path / "exp"
    base = SpeechLLMTask.trainer

    class PlantsAFileDuringEpoch2(base):
        @classmethod
        def train_one_epoch(cls, *args, **kwargs):
            if (exp / "1epoch.pth").exists():
                torch.save({"w": Marker(marker)}, exp / "1epoch.pth")
            return super().train_one_epoch(*args, **kwargs)

    monkeypatch.setattr(SpeechLLMTask, "trainer", PlantsAFileDuringEpoch2)
    with pytest.raises(Exception) as error:
        train(setup, exp, "--max_epoch", "2")
    assert not marker.exists(), "model averaging unpickled the crafted epoch file and ran its code"
    assert str(exp / "1epoch.pth") in str(error.value)


@pytest.mark.parametrize("option,value", [
    ("--llm_conf", "{'finetune': __import__('pathlib').Path('MARKER').touch()}"),
    ("--model_conf", "prompt=!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path [MARKER]]"),
    ("--optim_conf", "!!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib.Path [MARKER]]"),
])
def test_dict_options_never_run_code(tmp_path, monkeypatch, option, value):
    """Python or YAML that would construct objects is an error or stays a string; it never runs."""
    monkeypatch.chdir(tmp_path)
    try:
        args = SpeechLLMTask.get_parser().parse_args(["--output_dir", "x", option, value])
    except SystemExit:
        pass
    else:
        assert yaml.safe_dump(vars(args)[option[2:]])  # plain data only
    assert not (tmp_path / "MARKER").exists(), f"{option} {value!r} ran code"


def test_dict_options_keep_their_syntax():
    args = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", "x", "--llm_conf", "{'finetune': 'full', 'dtype': 'float32', 'lora_conf': None}",
        "--model_conf", "ctc_weight=0.3", "--model_conf", "prompt=", "--encoder_conf", "{output_size: 32}",
        "--frontend_conf", "a.b=3", "--frontend_conf", "a.c={d: true}", "--optim_conf", "{lr: 1.0e-3}"])
    assert args.llm_conf["finetune"] == "full" and args.llm_conf["lora_conf"] is None
    assert args.model_conf["ctc_weight"] == 0.3 and args.model_conf["prompt"] == ""
    assert args.encoder_conf == {"output_size": 32}
    assert args.frontend_conf["a"] == {"b": 3, "c": {"d": True}}
    assert args.optim_conf["lr"] == 0.001


# ---------------------------------------------------------------------------------------------- writing atomically


class SimulatedKill(BaseException):
    """Stands for kill -9 in the middle of writing a file."""


def test_a_kill_while_saving_leaves_the_previous_checkpoint_whole(setup, tmp_path, monkeypatch):
    exp = tmp_path / "exp"
    original = torch.serialization._save

    def dies_while_writing_epoch_2(obj, *args, **kwargs):
        if isinstance(obj, dict) and isinstance(obj.get("reporter"), dict) and obj["reporter"]["epoch"] == 2:
            raise SimulatedKill()
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(torch.serialization, "_save", dies_while_writing_epoch_2)
    with pytest.raises(SimulatedKill):
        train(setup, exp, "--max_epoch", "2")
    monkeypatch.setattr(torch.serialization, "_save", original)
    assert epoch_of(exp / "checkpoint.pth") == 1  # the last complete one, not a truncated file
    assert not [p for p in exp.iterdir() if p.name.endswith(".tmp")]
    train(setup, exp, "--max_epoch", "2")  # and the training resumes from it
    assert epoch_of(exp / "checkpoint.pth") == 2


def test_a_damaged_checkpoint_names_the_file_and_the_choices(setup, trained, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "1epoch.pth").write_bytes((trained / "1epoch.pth").read_bytes())
    (exp / "2epoch.pth").write_bytes((trained / "2epoch.pth").read_bytes()[:100])  # damaged too
    (exp / "checkpoint.pth").write_bytes(b"")  # what kill -9 during ESPnet's save left
    with pytest.raises(Exception) as error:
        train(setup, exp, "--max_epoch", "3")
    message = str(error.value)
    assert f"{exp / 'checkpoint.pth'}" in message and "damaged" in message
    assert f"last good snapshot, {exp / '1epoch.pth'}" in message and f"--init_param {exp / '1epoch.pth'}" in message
    assert "start over" in message and "--resume false" in message
    os.remove(exp / "checkpoint.pth")


# ---------------------------------------------------------------------------------------------- one run per dir


def test_a_second_training_into_the_same_dir_refuses(setup, tmp_path, capsys):
    exp = tmp_path / "exp"
    first = subprocess.Popen([sys.executable, "-m", "speechllm.bin.speechllm_train",
                              *train_cmd(setup, exp, "--max_epoch", "1000")],
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not (exp / "config.yaml").exists():  # ESPnet writes it before training starts
            assert first.poll() is None and time.monotonic() < deadline, "the first training did not start"
            time.sleep(0.2)
        with pytest.raises(SystemExit) as exit_:
            speechllm_train.main(train_cmd(setup, exp, "--max_epoch", "1"))
        assert exit_.value.code == 1
        err = capsys.readouterr().err
        assert f"{exp} is in use by another run (training, pid {first.pid} on" in err
        assert "a second training into the same dir would interleave their files" in err
        assert first.poll() is None
    finally:
        first.kill()
        first.wait()
    capsys.readouterr()


def test_a_second_decoding_into_the_same_dir_refuses(tmp_path, capsys):
    from speechllm.exp_lock import ExpDirLock

    out = tmp_path / "decode" / "output.1"
    with ExpDirLock(out, "decoding"):
        with pytest.raises(SystemExit) as exit_:
            speechllm_inference.main(["--output_dir", str(out), "--data_path_and_name_and_type",
                                      f"{tmp_path / 'wav.scp'},speech,sound", "--train_config", "config.yaml"])
    assert exit_.value.code == 1
    assert f"{out} is in use by another run (decoding, pid {os.getpid()}" in capsys.readouterr().err
