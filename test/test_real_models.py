"""The real loading code on real pretrained models from ../shared: SmolLM2-135M (GGUF) as the LLM, Whisper tiny.en as
the speech encoder, real AN4 speech. Skipped where ../shared is absent (a user's machine)."""
import math
import tarfile

import pytest
import soundfile
import torch

from speechllm.models.llm import load_causal_lm, load_tokenizer, token_ids, trainable_parameter_count
from speechllm.tasks.speech_llm import SpeechLLMTask

pytestmark = pytest.mark.slow

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


def test_gguf_llm_loads_with_its_tokenizer_and_knows_english(smollm_path):
    tokenizer = load_tokenizer(smollm_path)
    model = load_causal_lm(smollm_path, finetune="frozen")
    assert sum(p.numel() for p in model.parameters()) > 100e6
    sensible = perplexity(model, tokenizer, "the cat sat on the mat")
    shuffled = perplexity(model, tokenizer, "mat the on sat cat the")
    assert sensible * 10 < shuffled, (sensible, shuffled)  # real weights, not a random init


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
