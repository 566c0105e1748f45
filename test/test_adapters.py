"""Every registered adapter: shapes and lengths, gradients, an utterance's embeddings independent of its batch, and
config errors that name the key; each one builds and trains through the task."""
import pytest
import torch

from speechllm.models.adapters import ADAPTERS, AbsAdapter, StackedAdapters
from speechllm.tasks.speech_llm import SpeechLLMTask, build_part
from test_model import make_batch, task_args, tokens_dir  # noqa: F401 (fixture)

CONFS = {
    "conv1d_mlp": {"downsample": 3, "hidden_size": 24},
    "dws_mlp": {"downsample": 3, "kernel_size": 5, "hidden_size": 24},
    "stack": {"downsample": 3},
    "conv1d_transformer": {"downsample": 3, "hidden_size": 16, "num_layers": 1, "attention_heads": 2,
                           "linear_units": 32},
    "qformer": {"window": 6, "num_queries": 2, "hidden_size": 16, "num_layers": 1, "attention_heads": 2,
                "linear_units": 32},
    "stacked": {"adapters": [{"type": "stack", "conf": {"downsample": 2}},
                             {"type": "conv1d_mlp", "conf": {"downsample": 2, "hidden_size": 16}}]},
    "ctc_posterior": {"temperature": 2.0},
}
EXPECTED_LENGTHS = {"conv1d_mlp": [7, 4, 1], "dws_mlp": [7, 4, 1], "stack": [7, 4, 1], "conv1d_transformer": [7, 4, 1],
                    "qformer": [8, 4, 2], "stacked": [5, 3, 1], "ctc_posterior": [20, 11, 1]}  # of 20, 11, 1 frames


def bind_ctc_head(adapter, input_size: int, output_size: int, vocab: int = 7) -> None:
    """ctc_posterior reads a CTC head (blank + vocab) and an LLM's embeddings; SpeechLLM binds the model's own."""
    head = torch.nn.Linear(input_size, vocab + 1)
    embeddings = torch.randn(vocab, output_size)
    adapter.bind(lambda x: torch.log_softmax(head(x), dim=-1), lambda: embeddings)


def test_every_adapter_is_tested():
    assert set(CONFS) == set(ADAPTERS)


@pytest.mark.parametrize("name", sorted(CONFS))
def test_adapter_shapes_lengths_gradients_and_batch_independence(name):
    torch.manual_seed(0)
    adapter = build_part("speech_adapter", ADAPTERS[name], CONFS[name], input_size=10, output_size=12).eval()
    assert isinstance(adapter, AbsAdapter) and adapter.output_size() == 12
    if name == "ctc_posterior":
        bind_ctc_head(adapter, 10, 12)
    lengths = torch.tensor([20, 11, 1])
    x = torch.randn(3, 20, 10)
    x[1, 11:] = 100.0  # padding holds garbage (an encoder's output past the end): it must not leak
    y, out_lengths = adapter(x, lengths)
    assert out_lengths.tolist() == EXPECTED_LENGTHS[name]
    assert y.shape[:2] == (3, max(EXPECTED_LENGTHS[name])) and y.size(2) == 12
    for i, n in enumerate(lengths.tolist()):
        alone, alone_lengths = adapter(x[i:i + 1, :n], lengths[i:i + 1])
        frames = int(alone_lengths[0])
        torch.testing.assert_close(y[i, :frames], alone[0, :frames], atol=1e-5, rtol=1e-5)
    adapter.train()
    y, out_lengths = adapter(x, lengths)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in adapter.parameters()), name


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="speech_adapter_conf: unknown key"):
        build_part("speech_adapter", ADAPTERS["stack"], {"hidden_size": 8}, input_size=10, output_size=12)
    with pytest.raises(ValueError, match=r"adapters\[1\].*expected \{type: NAME"):
        StackedAdapters(10, 12, [{"type": "stack"}, {"type": "nope"}])
    with pytest.raises(ValueError, match=r"adapters\[0\]_conf: unknown key"):
        StackedAdapters(10, 12, [{"type": "stack", "conf": {"windw": 3}}])
    with pytest.raises(ValueError, match="must be >= 1"):
        ADAPTERS["qformer"](10, 12, window=0)
    with pytest.raises(ValueError, match="ctc_posterior reads the model's CTC head"):
        StackedAdapters(10, 12, [{"type": "stack"}, {"type": "ctc_posterior"}])
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ADAPTERS["ctc_posterior"](10, 12, temperature=0.0)


@pytest.mark.parametrize("name", ["dws_mlp", "qformer", "stacked"])
def test_adapter_trains_through_the_task(tokens_dir, name):  # noqa: F811
    args = task_args(tokens_dir, "--speech_adapter", name)
    args.speech_adapter_conf = CONFS[name]  # in place of task_args' conv1d_mlp settings (the option merges dicts)
    model = SpeechLLMTask.build_model(args)
    assert type(model.adapter) is ADAPTERS[name]
    loss, stats, _ = model(**make_batch(args))
    loss.backward()
    assert torch.isfinite(loss) and stats["acc"] is not None
    assert all(p.grad is not None for p in model.adapter.parameters())
