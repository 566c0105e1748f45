"""The transformers speech-encoder frontend (Whisper without its 30 s padding) and the frozen-frontend dump
(speechllm.data.dump_frontend, utils/dump_frontend.sh), on a small random Whisper that the tests save themselves."""
from __future__ import annotations

import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from speechllm.data.datadir import DataDirError, read_kv
from speechllm.data.dump_frontend import dump_frontend, verify
from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend
from test_datadir import REPO, run_tool
from test_dump_audio import make_data_dir, write_wav

LENGTHS = {"s-a": 0.6, "s-b": 1.3, "s-c": 0.35, "s-d": 2.0}


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    path = tmp_path_factory.mktemp("whisper")
    torch.manual_seed(0)
    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64,
                           max_source_positions=1500, max_target_positions=32, pad_token_id=0, bos_token_id=1,
                           eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor().save_pretrained(path)
    return path


def waves(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {utt: 0.1 * rng.standard_normal(int(seconds * 16000)) for utt, seconds in LENGTHS.items()}


def batch_of(arrays):
    tensors = [torch.tensor(a, dtype=torch.float32) for a in arrays]
    return torch.nn.utils.rnn.pad_sequence(tensors, batch_first=True), torch.tensor([len(t) for t in tensors])


def test_whisper_without_padding_is_batch_invariant_and_windowed_equals_whisper(whisper_dir):
    arrays = list(waves().values())
    trimmed = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False).eval()
    speech, lengths = batch_of(arrays)
    batched, batched_lengths = trimmed(speech, lengths)
    assert batched_lengths.tolist() == [int(n) // 160 // 2 + int(n) // 160 % 2 for n in lengths]  # ceil(mel / 2)
    for i, array in enumerate(arrays):
        alone, alone_lengths = trimmed(*batch_of([array]))
        n = int(alone_lengths[0])
        assert n == batched_lengths[i]
        torch.testing.assert_close(batched[i, :n], alone[0], atol=2e-5, rtol=1e-4)
    # With the 30 s window, the frames are exactly those of transformers' own Whisper encoder.
    windowed = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False, pad_to_window=True).eval()
    feats, feats_lengths = windowed(*batch_of(arrays[:1]))
    mel = windowed.feature_extractor(arrays[0], sampling_rate=16000, return_tensors="pt").input_features
    reference = windowed.encoder(mel.float()).last_hidden_state
    torch.testing.assert_close(feats[0], reference[0, : int(feats_lengths[0])], atol=1e-5, rtol=1e-4)


def test_whisper_frontend_refuses_what_it_cannot_take(whisper_dir, tmp_path):
    frontend = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False)
    with pytest.raises(ValueError, match="longer than Whisper's 30 s window"):
        frontend(*batch_of([np.zeros(31 * 16000)]))
    with pytest.raises(FileNotFoundError, match="frontend_conf.name_or_path: '/nowhere/whisper' is not a folder"):
        HFSpeechEncoderFrontend("/nowhere/whisper")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        HFSpeechEncoderFrontend(str(tmp_path / "empty"))
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                vocab_size=32).save_pretrained(tmp_path / "llama")
    with pytest.raises(ValueError, match="is a 'llama' model; the hf_speech_encoder frontend takes one of"):
        HFSpeechEncoderFrontend(str(tmp_path / "llama"))
    with pytest.raises(ValueError, match="frontend_conf.layer: 7 is out of range"):
        HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False, layer=7)


def write_config(path: Path, whisper_dir: Path, **frontend_conf) -> str:
    conf = {"name_or_path": str(whisper_dir), "multilayer_feature": False, **frontend_conf}
    path.write_text(yaml.safe_dump({"frontend": "hf_speech_encoder", "frontend_conf": conf}))
    return str(path)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    audio = tmp_path / "audio"
    audio.mkdir()
    for utt, array in waves().items():
        write_wav(audio / f"{utt}.wav", array)
    return make_data_dir(tmp_path / "data", {utt: str(audio / f"{utt}.wav") for utt in LENGTHS})


def test_dump_writes_one_matrix_per_utterance_equal_to_the_frontend(whisper_dir, data_dir, tmp_path):
    config = write_config(tmp_path / "train.yaml", whisper_dir)
    out = tmp_path / "dump"
    launcher = f"{sys.executable} {REPO / 'utils/local.py'}"
    result = dump_frontend(data_dir, out, config, nj=2, cmd=launcher, batch_size=3)
    feats = dict(kaldiio.load_scp(str(out / "feats.scp")))
    assert sorted(feats) == sorted(LENGTHS) == sorted(read_kv(out / "text"))
    assert result["utterances"] == len(LENGTHS) and result["dim"] == 32
    frontend = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False).eval()
    for utt, array in waves().items():
        # What was written is what the frontend computes from the 16-bit file (write_wav quantises).
        import soundfile

        samples, _ = soundfile.read(str(data_dir.parent / "audio" / f"{utt}.wav"), dtype="float32")
        expected, _ = frontend(*batch_of([samples]))
        np.testing.assert_allclose(feats[utt], expected[0].numpy(), atol=2e-5, rtol=1e-4)
        assert read_kv(out / "feats_shape")[utt] == f"{feats[utt].shape[0]},32"
    assert verify(out, config)["utterances"] == len(LENGTHS)
    # Rerunning with the same config and utterances does nothing; another frontend config is refused by --verify.
    stamp = (out / "feats.scp").stat().st_mtime_ns
    dump_frontend(data_dir, out, config, nj=2, cmd=launcher)
    assert (out / "feats.scp").stat().st_mtime_ns == stamp
    other = write_config(tmp_path / "other.yaml", whisper_dir, layer=1)
    with pytest.raises(DataDirError, match="records features of another frontend config"):
        verify(out, other)
    proc = run_tool("dump_frontend.sh", "--verify", "--config", other, out)
    assert proc.returncode == 1 and "rerun the frontend dumping stage" in proc.stderr


def test_dump_refuses_a_frontend_that_trains(whisper_dir, data_dir, tmp_path):
    config = write_config(tmp_path / "train.yaml", whisper_dir, multilayer_feature=True)
    with pytest.raises(DataDirError, match=r"has parameters that train \(layer_weights\)"):
        dump_frontend(data_dir, tmp_path / "dump", config, nj=1)


def test_training_from_dumped_features_gives_the_loss_of_the_audio(whisper_dir, data_dir, tmp_path):
    from test_model import SENTENCES, TOY
    from speechllm.bin.prepare_tokens import make_toy_llm
    from speechllm.tasks.speech_llm import SpeechLLMTask

    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(TOY))
    make_toy_llm(tmp_path / "toy.yaml", SENTENCES, tmp_path / "llm")
    config = write_config(tmp_path / "train.yaml", whisper_dir)
    dump_frontend(data_dir, tmp_path / "dump", config, nj=1, cmd=f"{sys.executable} {REPO / 'utils/local.py'}")
    args = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", "unused", "--config", config, "--llm_conf", f"name_or_path={tmp_path / 'llm'}",
        "--speech_adapter_conf", "hidden_size=16", "--model_conf", "prompt=''"])
    torch.manual_seed(0)
    model = SpeechLLMTask.build_model(args).eval()
    preprocess = SpeechLLMTask.build_preprocess_fn(args, train=True)
    collate = SpeechLLMTask.build_collate_fn(args, train=True)
    import soundfile

    feats = dict(kaldiio.load_scp(str(tmp_path / "dump" / "feats.scp")))
    texts = dict(zip(LENGTHS, SENTENCES))
    from_audio = collate([(u, preprocess(u, {"speech": soundfile.read(str(data_dir.parent / "audio" / f"{u}.wav"),
                                                                        dtype="float32")[0], "text": texts[u]}))
                          for u in LENGTHS])[1]
    args.train_data_path_and_name_and_type = [(str(tmp_path / "dump" / "feats.scp"), "speech", "kaldi_ark")]
    preprocess_feats = SpeechLLMTask.build_preprocess_fn(args, train=True)
    from_dump = collate([(u, preprocess_feats(u, {"speech": feats[u], "text": texts[u]})) for u in LENGTHS])[1]
    assert from_dump["speech"].dim() == 3
    with torch.no_grad():
        loss_audio, stats_audio, _ = model(**from_audio)
        loss_dump, stats_dump, _ = model(**from_dump)
    torch.testing.assert_close(loss_dump, loss_audio, atol=1e-4, rtol=1e-5)
    # Features of another dimension are refused with the fix.
    wrong = collate([(u, preprocess_feats(u, {"speech": feats[u][:, :16], "text": texts[u]})) for u in LENGTHS])[1]
    with pytest.raises(ValueError, match="dumped with another frontend config; rerun the frontend dumping stage"):
        model(**wrong)


@pytest.mark.parametrize("finetune", ["frozen", "lora", "full"])
def test_speech_encoder_finetuning_modes_train_what_they_say(whisper_dir, finetune):
    """frozen: nothing of the encoder trains; lora: only peft's LoRA matrices (r=8 by default); full: everything.
    A LoRA encoder starts as the frozen one (LoRA's B is zero) and its gradients reach the LoRA matrices only."""
    frozen = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False).eval()
    encoder = HFSpeechEncoderFrontend(str(whisper_dir), multilayer_feature=False, finetune=finetune)
    trainable = {name for name, p in encoder.named_parameters() if p.requires_grad}
    if finetune == "frozen":
        assert not trainable
    elif finetune == "lora":
        assert trainable and all("lora_" in name for name in trainable)
        assert any(name.endswith("q_proj.lora_A.default.weight") for name in trainable)
        shape = next(p.shape for n, p in encoder.named_parameters() if n.endswith("lora_A.default.weight"))
        assert shape[0] == 8
    else:
        assert trainable == {name for name, _ in encoder.named_parameters()}
    speech, lengths = batch_of(waves().values())
    encoder.train()
    feats, _ = encoder(speech, lengths)
    if finetune != "frozen":
        feats.pow(2).mean().backward()
        # LoRA's A gets no gradient while B is still zero; B does, and so does every weight a full fine-tuning uses.
        learning = [n for n, p in encoder.named_parameters() if p.requires_grad and "lora_A" not in n]
        silent = [n for n in learning if dict(encoder.named_parameters())[n].grad is None
                  or dict(encoder.named_parameters())[n].grad.abs().sum() == 0]
        assert learning and not silent, silent
    if finetune == "lora":  # LoRA's B starts at zero: the untrained LoRA encoder computes what the frozen one does
        encoder.eval()
        with torch.no_grad():
            torch.testing.assert_close(encoder(speech, lengths)[0], frozen(speech, lengths)[0])


def test_speech_encoder_finetuning_options_are_checked(whisper_dir):
    with pytest.raises(ValueError, match="frontend_conf.finetune: 'partly' is not one of"):
        HFSpeechEncoderFrontend(str(whisper_dir), finetune="partly")
    with pytest.raises(ValueError, match="frontend_conf.lora_conf is set but frontend_conf.finetune is 'frozen'"):
        HFSpeechEncoderFrontend(str(whisper_dir), lora_conf={"r": 4})
    with pytest.raises(ValueError, match=r"frontend_conf.lora_conf.target_modules: \['w_qkv'\] not found"):
        HFSpeechEncoderFrontend(str(whisper_dir), finetune="lora", lora_conf={"target_modules": ["w_qkv"]})
