"""Truncated weight files (a copy or download cut short) are named in the error, for the LLM and a speech encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from speechllm.bin.prepare_tokens import make_toy_llm
from speechllm.models.llm import load_causal_lm, load_tokenizer

TOY = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
           num_key_value_heads=1)


def truncate(path: Path, keep: int | None = None) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 if keep is None else keep])


@pytest.fixture(scope="module")
def toy_llm(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("llm")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY))
    make_toy_llm(root / "toy.yaml", ["one two three"] * 20, root / "llm")
    return root / "llm"


@pytest.mark.parametrize("keep", [None, 5, 0])
def test_a_truncated_safetensors_llm_is_named(toy_llm, tmp_path, keep):
    folder = tmp_path / "llm"
    folder.mkdir()
    for path in toy_llm.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    truncate(folder / "model.safetensors", keep)
    with pytest.raises(OSError) as error:
        load_causal_lm(str(folder), finetune="frozen")
    message = str(error.value)
    assert f"llm_conf.name_or_path: {folder / 'model.safetensors'} is damaged" in message
    assert "Copy or download it again" in message


def write_gguf(path: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("llama.block_count", 1)
    writer.add_tensor("token_embd.weight", np.zeros((64, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.mark.parametrize("keep", [None, 40])
def test_a_truncated_gguf_llm_is_named(tmp_path, keep):
    pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    write_gguf(path)
    truncate(path, keep)
    with pytest.raises(OSError) as error:
        load_tokenizer(str(path))
    assert f"llm_conf.name_or_path: {path} is damaged: not a complete GGUF file" in str(error.value)


def test_an_intact_file_keeps_the_loader_error(tmp_path):
    """A complete GGUF that is no usable LLM (no tokenizer in it) is not called damaged."""
    pytest.importorskip("gguf")
    path = tmp_path / "model.gguf"
    write_gguf(path)
    with pytest.raises(Exception) as error:
        load_tokenizer(str(path))
    assert "is damaged" not in str(error.value)


def test_a_truncated_speech_encoder_is_named(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend

    config = Wav2Vec2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(tmp_path / "encoder")
    truncate(tmp_path / "encoder" / "model.safetensors")
    with pytest.raises(OSError) as error:
        HFSpeechEncoderFrontend(str(tmp_path / "encoder"))
    assert f"frontend_conf.name_or_path: {tmp_path / 'encoder' / 'model.safetensors'} is damaged" in str(error.value)
