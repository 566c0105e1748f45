"""The real loading code on real pretrained models from ../shared: SmolLM2-135M (GGUF) as the LLM, Whisper tiny.en as
the speech encoder, real AN4 speech. Skipped where ../shared is absent (a user's machine)."""
import math
import tarfile
from pathlib import Path

import pytest
import soundfile
import torch

from speechllm.models.llm import convert_gguf, load_causal_lm, load_tokenizer, token_ids, trainable_parameter_count
from speechllm.tasks.speech_llm import SpeechLLMTask

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]

GGUF = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
WHISPER = "models/whisper-tiny.en"


@pytest.fixture(scope="module")
def smollm_path(shared_dir):
    path = shared_dir / GGUF
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return str(path)


@pytest.fixture(scope="module")
def an4_speech(shared_dir, tmp_path_factory):
    archive = shared_dir / "corpora/mini_an4/downloads.tar.gz"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    out = tmp_path_factory.mktemp("an4")
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    waves = sorted((out / "downloads/an4/wav").rglob("*.sph"))[:2]
    return [soundfile.read(str(w), dtype="float32")[0] for w in waves]


def perplexity(model, tokenizer, text):
    ids = torch.tensor([[tokenizer.bos_token_id or tokenizer.eos_token_id] + list(token_ids(tokenizer, text))])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    return math.exp(torch.nn.functional.cross_entropy(logits.float(), ids[0, 1:]).item())


@pytest.fixture(scope="module")
def smollm_folder(smollm_path, tmp_path_factory):
    """The GGUF dequantised once into a transformers folder, as stage 5 does (convert_gguf)."""
    return str(convert_gguf(smollm_path, str(tmp_path_factory.mktemp("llm") / "smollm2")))


def test_gguf_llm_loads_with_its_tokenizer_and_knows_english(smollm_path, smollm_folder):
    tokenizer = load_tokenizer(smollm_path)
    model = load_causal_lm(smollm_path, finetune="frozen")
    assert sum(p.numel() for p in model.parameters()) > 100e6
    sensible = perplexity(model, tokenizer, "the cat sat on the mat")
    shuffled = perplexity(model, tokenizer, "mat the on sat cat the")
    assert sensible * 10 < shuffled, (sensible, shuffled)  # real weights, not a random init
    # The converted folder is the same model and tokenizer, without the GGUF's quantisation record.
    converted_tokenizer = load_tokenizer(smollm_folder)
    converted = load_causal_lm(smollm_folder, finetune="frozen")
    text = "<|im_start|>user\nthe cat sat on the mat<|im_end|>"
    assert token_ids(converted_tokenizer, text) == token_ids(tokenizer, text)
    assert perplexity(converted, converted_tokenizer, "the cat sat on the mat") == pytest.approx(sensible, rel=1e-5)
    assert getattr(converted.config, "quantization_config", None) is None


def test_speech_llm_on_real_models(smollm_path, shared_dir, an4_speech, tmp_path):
    whisper = shared_dir / WHISPER
    if not whisper.is_dir():
        pytest.skip(f"{whisper} is absent")
    args = SpeechLLMTask.get_parser().parse_args([
        "--output_dir", str(tmp_path), "--frontend", "hf_speech_encoder",
        "--frontend_conf", f"name_or_path={whisper}", "--speech_adapter_conf", "{downsample: 2, hidden_size: 256}",
        "--llm_conf", f"name_or_path={smollm_path}", "--llm_conf", "lora_conf={r: 8, alpha: 16}",
    ])
    model = SpeechLLMTask.build_model(args)
    # Whisper frozen, LLM frozen but for LoRA; the adapter and the layer weights train.
    assert trainable_parameter_count(model.frontend) == model.frontend.layer_weights.numel()
    assert 0 < trainable_parameter_count(model.llm) < 0.02 * sum(p.numel() for p in model.llm.parameters())
    preprocess = SpeechLLMTask.build_preprocess_fn(args, train=True)
    collate = SpeechLLMTask.build_collate_fn(args, train=True)
    items = [(f"u{i}", preprocess(f"u{i}", {"speech": s, "text": t}))
             for i, (s, t) in enumerate(zip(an4_speech, ["yes", "r u b o u t"]))]
    batch = collate(items)[1]
    loss, stats, _ = model(**batch)
    # loss_llm is summed over each utterance's tokens and EOS (ESPnet's convention); per token it is a plain NLL.
    per_token = stats["loss_llm"] * len(items) / (batch["text_lengths"] + 1).sum()
    assert torch.isfinite(loss) and 0 < per_token < 30
    loss.sum().backward()
    assert model.adapter.conv.weight.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.frontend.encoder.named_parameters())


def test_real_parts_recipe_config_trains_through_the_task(smollm_folder, shared_dir, an4_speech, tmp_path):
    """egs2/synth_english's config (Whisper tiny.en -> adapter -> frozen SmolLM2, CTC head on the LLM's embeddings)
    through ESPnet's AbsTask.main: statistics, then two epochs on four real AN4 utterances; the loss falls."""
    import yaml

    whisper = shared_dir / WHISPER
    if not whisper.is_dir():
        pytest.skip(f"{whisper} is absent")
    data = tmp_path / "data"
    data.mkdir()
    texts = ["yes", "go", "start", "eleven seventeen fifty one"]
    for i, (wave, text) in enumerate(zip(an4_speech * 2, texts)):
        soundfile.write(data / f"u{i}.wav", wave, 16000)
    (data / "wav.scp").write_text("".join(f"u{i} {data / f'u{i}.wav'}\n" for i in range(4)))
    (data / "text").write_text("".join(f"u{i} {t}\n" for i, t in enumerate(texts)))
    config = yaml.safe_load((REPO / "egs2/synth_english/speechllm1/conf/train_whisper_smollm2_frozen.yaml").read_text())
    config["frontend_conf"]["name_or_path"] = str(whisper)
    config["llm_conf"]["name_or_path"] = smollm_folder
    config.update(max_epoch=2, num_iters_per_epoch=5, batch_bins=10_000_000, keep_nbest_models=1,
                  scheduler_conf={"warmup_steps": 1})
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    common = ["--config", str(tmp_path / "train.yaml"), "--num_workers", "0"]
    for mode in ("train", "valid"):
        common += [f"--{mode}_data_path_and_name_and_type", f"{data / 'wav.scp'},speech,sound",
                   f"--{mode}_data_path_and_name_and_type", f"{data / 'text'},text,text"]
    stats, exp = tmp_path / "stats", tmp_path / "exp"
    SpeechLLMTask.main(cmd=[*common, "--collect_stats", "true", "--output_dir", str(stats),
                            "--train_shape_file", str(data / "wav.scp"), "--valid_shape_file", str(data / "wav.scp")])
    shapes = [f"--{mode}_shape_file={stats / mode / name}_shape" for mode in ("train", "valid")
              for name in ("speech", "text")]
    SpeechLLMTask.main(cmd=[*common, *shapes, "--output_dir", str(exp), "--optim_conf", "lr=0.003"])
    # Checkpoints hold what trains (adapter, CTC head), not the frozen Whisper and SmolLM2 weights.
    state = torch.load(exp / "2epoch.pth", map_location="cpu", weights_only=True)
    assert any(k.startswith("adapter.") for k in state)
    assert not any(k.startswith(("llm.", "frontend.encoder.")) for k in state)
    from espnet2.train.reporter import Reporter

    reporter = Reporter()
    reporter.load_state_dict(torch.load(exp / "checkpoint.pth", map_location="cpu", weights_only=False)["reporter"])
    valid = [reporter.get_value("valid", "loss", epoch) for epoch in (1, 2)]
    assert valid[1] < valid[0], valid
