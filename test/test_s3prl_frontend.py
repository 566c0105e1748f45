"""The speech LLM with ``frontend: s3prl`` (ESPnet's S3prlFrontend, a weighted sum of layers) on a tiny HuBERT.

The HuBERT is randomly initialised, saved with ``save_pretrained`` and loaded through S3PRL's ``hf_hubert_custom``
upstream from its folder, exactly as a real ``facebook/hubert-large-ll60k`` folder would be; no hub is reached.
S3prlFrontend never freezes its upstream by itself: ESPnet's ``--freeze_param frontend.upstream`` does, and the
task applies it in ``build_model`` as well, so a checkpoint without the frozen HuBERT loads back strictly.
"""
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml

from speechllm.bin.prepare_tokens import make_toy_llm, train_bpe
from speechllm.speech2text import Speech2Text
from speechllm.tasks.speech_llm import SpeechLLMTask  # applies speechllm.compat's s3prl shim first

pytest.importorskip("s3prl.nn", reason="s3prl is not importable (tools/install.sh installs it)")

REPO = Path(__file__).resolve().parents[1]
LIBRISPEECH_CONFIG = REPO / "egs2" / "librispeech" / "speechllm1" / "conf" / "train_hubert_qwen2_lora.yaml"
SENTENCES = ["one two three four five", "p i t t s b u r g h", "march fifth nineteen ninety",
             "enter five stop yes no", "zero six seven eight nine", "erase rubout repeat"] * 20
TOY_LLM = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2)
HUBERT_LAYERS = 2
HOP = 320  # samples per HuBERT frame at 16 kHz
DOWNSAMPLE = 4
LENGTHS = (16000, 12000, 8000)
FREEZE = ("--freeze_param", "frontend.upstream")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    """A tiny HuBERT (HuBERT-large's layout: layer-norm convolutions, pre-norm Transformer), a toy LLM, a CTC BPE."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    root = tmp_path_factory.mktemp("s3prl")
    config = HubertConfig(hidden_size=32, num_hidden_layers=HUBERT_LAYERS, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                          layerdrop=0.0)
    torch.manual_seed(0)
    HubertModel(config).save_pretrained(root / "hubert")
    # Without preprocessor_config.json, hf_hubert_custom silently asks the hub for another model's extractor.
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                             return_attention_mask=True).save_pretrained(root / "hubert")
    (root / "toy.yaml").write_text(yaml.safe_dump(TOY_LLM))
    make_toy_llm(root / "toy.yaml", SENTENCES, root / "llm")
    train_bpe(SENTENCES, root / "ctc_bpe", 40)
    return root


def task_args(models_dir: Path, *extra: str):
    frontend_conf = {"frontend_conf": {"upstream": "hf_hubert_custom", "path_or_url": str(models_dir / "hubert")},
                     "multilayer_feature": True}
    argv = ["--output_dir", "unused", "--frontend", "s3prl", "--frontend_conf", yaml.safe_dump(frontend_conf),
            "--speech_adapter_conf", f"{{downsample: {DOWNSAMPLE}, hidden_size: 32}}",
            "--llm_conf", f"name_or_path={models_dir / 'llm'}", "--llm_conf", "lora_conf={r: 4, alpha: 8}",
            "--ctc_bpemodel", str(models_dir / "ctc_bpe.model"), "--model_conf", "ctc_weight=0.3", *extra]
    return SpeechLLMTask.get_parser().parse_args(argv)


def make_batch(args, lengths=LENGTHS):
    preprocess = SpeechLLMTask.build_preprocess_fn(args, train=True)
    collate = SpeechLLMTask.build_collate_fn(args, train=True)
    rng = np.random.default_rng(0)
    items = [(f"u{i}", preprocess(f"u{i}", {"speech": rng.standard_normal(n).astype(np.float32), "text": text}))
             for i, (n, text) in enumerate(zip(lengths, SENTENCES))]
    return collate(items)[1]


def named_grads(module: torch.nn.Module) -> dict:
    return {name: p.grad for name, p in module.named_parameters()}


def test_frozen_upstream_trains_featurizer_adapter_ctc_lora(models_dir):
    args = task_args(models_dir, *FREEZE)
    model = SpeechLLMTask.build_model(args)
    frontend = model.frontend
    assert frontend.featurizer.weights.numel() == HUBERT_LAYERS + 1  # CNN output and every Transformer layer
    assert not any(p.requires_grad for p in frontend.upstream.parameters())
    loss, stats, _ = model(**make_batch(args))
    assert torch.isfinite(loss) and {"loss_llm", "loss_ctc"} <= set(stats)
    loss.backward()
    assert all(g is None for g in named_grads(frontend.upstream).values())
    assert frontend.featurizer.weights.grad is not None and frontend.featurizer.weights.grad.abs().sum() > 0
    for part in (model.adapter, model.ctc):
        assert all(g is not None and g.abs().sum() > 0 for g in named_grads(part).values())
    lora_b = {n: g for n, g in named_grads(model.llm).items() if "lora_B" in n}
    assert lora_b and all(g is not None and g.abs().sum() > 0 for g in lora_b.values())


def test_without_freeze_param_the_upstream_trains(models_dir):
    """S3prlFrontend itself freezes nothing: fine-tuning HuBERT is what you get unless you ask otherwise."""
    args = task_args(models_dir)
    model = SpeechLLMTask.build_model(args)
    assert all(p.requires_grad for p in model.frontend.upstream.parameters())
    loss, _, _ = model(**make_batch(args))
    loss.backward()
    grads = named_grads(model.frontend.upstream)
    encoder_layer = [g for n, g in grads.items() if ".encoder.layers.0." in n]
    assert encoder_layer and all(g is not None and g.abs().sum() > 0 for g in encoder_layer)


def test_checkpoint_leaves_out_the_frozen_upstream_and_loads_back(models_dir):
    args = task_args(models_dir, *FREEZE)
    trained = SpeechLLMTask.build_model(args)
    with torch.no_grad():
        trained.frontend.featurizer.weights.copy_(torch.tensor([0.5, -1.0, 2.0]))
    state = trained.state_dict()
    assert not any(k.startswith("frontend.upstream.") for k in state)
    assert "frontend.featurizer.weights" in state
    # As decoding does (build_model_from_file): a fresh build from the same config, then a strict load.
    rebuilt = SpeechLLMTask.build_model(args)
    rebuilt.load_state_dict(state, strict=True)
    assert torch.equal(rebuilt.frontend.featurizer.weights, trained.frontend.featurizer.weights)
    for (name, a), (_, b) in zip(trained.frontend.upstream.state_dict().items(),
                                 rebuilt.frontend.upstream.state_dict().items()):
        assert torch.equal(a, b), f"{name}: the frozen upstream must be the pretrained one"


def test_lora_on_the_upstream_trains_only_its_adapters_and_checkpoints_them(models_dir):
    """frontend_conf.finetune lora (Pham et al.'s encoder LoRA): peft adapters injected into the HuBERT's q_proj and
    v_proj, the rest of the upstream frozen; checkpoints keep the adapters and leave the frozen weights out."""
    args = task_args(models_dir, "--frontend_conf", "finetune=lora", "--frontend_conf", "lora_conf={r: 4}")
    model = SpeechLLMTask.build_model(args)
    trainable = {n: p.numel() for n, p in model.frontend.upstream.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)
    assert sum(trainable.values()) == HUBERT_LAYERS * 2 * 4 * (32 + 32)  # layers x (q, v) x r x (in + out)
    loss, _, _ = model(**make_batch(args))
    loss.backward()
    lora_b = [p.grad for n, p in model.frontend.upstream.named_parameters() if "lora_B" in n]
    assert lora_b and all(g is not None and g.abs().sum() > 0 for g in lora_b)
    with torch.no_grad():
        for name, p in model.frontend.upstream.named_parameters():
            if "lora_B" in name:
                p.normal_()  # trained-like adapters, so that a load that dropped them would show
    state = model.state_dict()
    upstream_keys = [k for k in state if k.startswith("frontend.upstream.")]
    assert upstream_keys and all("lora_" in k for k in upstream_keys)
    rebuilt = SpeechLLMTask.build_model(args)
    rebuilt.load_state_dict(state, strict=True)
    batch = make_batch(args)
    model.eval(), rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.frontend(batch["speech"], batch["speech_lengths"])[0],
                                   model.frontend(batch["speech"], batch["speech_lengths"])[0])


@pytest.mark.parametrize("extra,message", [
    (("--frontend_conf", "finetune=lora", *FREEZE), "which --freeze_param ['frontend.upstream'] freezes again"),
    (("--frontend_conf", "finetune=lorra"), "frontend_conf.finetune: 'lorra' is not one of"),
    (("--frontend_conf", "lora_conf={r: 4}"), "frontend_conf.lora_conf is set but frontend_conf.finetune is ''"),
])
def test_upstream_finetune_errors_name_the_option(models_dir, extra, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        SpeechLLMTask.build_model(task_args(models_dir, *extra))


def test_output_lengths_follow_the_input(models_dir):
    args = task_args(models_dir, *FREEZE)
    model = SpeechLLMTask.build_model(args).eval()
    batch = make_batch(args)
    speech, lengths = batch["speech"], batch["speech_lengths"]
    with torch.no_grad():
        feats, feats_lengths = model.frontend(speech, lengths)
        encoded, encoded_lengths = model.encode(speech, lengths)
        _, adapter_lengths = model.adapter(encoded, encoded_lengths)
    # S3PRL's rule: one frame per started hop of 320 samples.
    expected = [(n - 1) // HOP + 1 for n in LENGTHS]
    assert feats_lengths.tolist() == expected and encoded_lengths.tolist() == expected
    assert feats.shape == (len(LENGTHS), max(expected), model.frontend.output_size())
    assert adapter_lengths.tolist() == [-(-n // DOWNSAMPLE) for n in expected]
    # Padding does not leak into shorter utterances: each one's frames, as many as HuBERT makes from its samples
    # (S3PRL pads a last frame by repetition when alone), equal those of the utterance decoded alone.
    hubert_frames = model.frontend.upstream.upstream.model._get_feat_extract_output_lengths(lengths)
    assert ((torch.tensor(expected) - hubert_frames) <= 1).all()
    with torch.no_grad():
        for i, n in enumerate(LENGTHS):
            alone, _ = model.frontend(speech[i:i + 1, :n], lengths[i:i + 1])
            frames = int(hubert_frames[i])
            torch.testing.assert_close(alone[0, :frames], feats[i, :frames], atol=1e-4, rtol=1e-4)


def test_freeze_param_typo_is_an_error(models_dir):
    with pytest.raises(ValueError, match=r"--freeze_param frontend\.upstrem: matches no parameter"):
        SpeechLLMTask.build_model(task_args(models_dir, "--freeze_param", "frontend.upstrem"))


def write_data_dir(folder: Path, lengths=LENGTHS) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    wav_scp, text = [], []
    for i, (n, sentence) in enumerate(zip(lengths, SENTENCES)):
        soundfile.write(folder / f"u{i}.wav", 0.1 * rng.standard_normal(n), 16000)
        wav_scp.append(f"u{i} {folder / f'u{i}.wav'}\n")
        text.append(f"u{i} {sentence}\n")
    (folder / "wav.scp").write_text("".join(wav_scp))
    (folder / "text").write_text("".join(text))


def test_librispeech_config_runs_statistics_training_and_decoding(models_dir, tmp_path):
    """Stages 7-9 of the recipe with the LibriSpeech HuBERT config, its models swapped for the tiny ones."""
    data = tmp_path / "data"
    write_data_dir(data)
    common = ["--config", str(LIBRISPEECH_CONFIG),
              "--frontend_conf", f"frontend_conf.path_or_url={models_dir / 'hubert'}",
              "--llm_conf", f"name_or_path={models_dir / 'llm'}", "--ctc_bpemodel", str(models_dir / "ctc_bpe.model"),
              "--num_workers", "0", "--batch_bins", "100000", "--scheduler_conf", "warmup_steps=1"]
    for mode in ("train", "valid"):
        common += [f"--{mode}_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                   f"--{mode}_data_path_and_name_and_type", f"{data / 'text'},text,text"]
    stats, exp = tmp_path / "stats", tmp_path / "exp"
    SpeechLLMTask.main(cmd=[*common, "--collect_stats", "true", "--output_dir", str(stats),
                            "--train_shape_file", str(data / "wav.scp"), "--valid_shape_file", str(data / "wav.scp")])
    # extract_feats_in_collect_stats: false: lengths only, no model built, no HuBERT pass.
    speech_shape = (stats / "train" / "speech_shape").read_text().splitlines()
    assert speech_shape == [f"u{i} {n}" for i, n in enumerate(LENGTHS)]
    assert not list(stats.glob("*/feats_stats.npz"))
    shapes = [f"--{mode}_shape_file={stats / mode / name}_shape" for mode in ("train", "valid")
              for name in ("speech", "text")]
    SpeechLLMTask.main(cmd=[*common, *shapes, "--max_epoch", "1", "--output_dir", str(exp)])

    checkpoint = torch.load(exp / "1epoch.pth", map_location="cpu", weights_only=True)
    assert not any(k.startswith("frontend.upstream.") for k in checkpoint)  # frozen HuBERT left out
    assert checkpoint["frontend.featurizer.weights"].abs().sum() > 0  # the layer weights trained from zeros
    speech2text = Speech2Text(str(exp / "config.yaml"), str(exp / "1epoch.pth"))  # strict load
    hyps = speech2text.decode(torch.from_numpy(soundfile.read(data / "u0.wav", dtype="float32")[0]))
    assert len(hyps) == 1 and hyps[0] and isinstance(speech2text.text(hyps[0][0]), str)
