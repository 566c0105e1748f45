"""Adapters: from encoder frames to LLM input embeddings, downsampling in time (``speech_adapter`` in the config).

Every adapter is an ``AbsAdapter``: it maps ``(B, T, input_size)`` with lengths to ``(B, T', output_size)`` with
``output_lengths(lengths)``; ``output_size`` is the LLM's hidden size, filled in by the task. Frames beyond an
utterance's length are zeroed or masked first, so that an utterance's embeddings do not depend on its batch.
Register new ones in ``ADAPTERS`` (the task's ``speech_adapter`` choices, type-checked against ``AbsAdapter``):

* ``conv1d_mlp``: a strided Conv1d (learned frame stacking) and a two-layer MLP (SLAM-LLM's projector shape);
* ``dws_mlp``: a depthwise-separable strided convolution and the MLP (fewer parameters for wide encoders);
* ``stack``: frame stacking (``downsample`` frames concatenated) and a linear layer (Pham et al.'s baseline);
* ``conv1d_transformer``: the strided Conv1d, then a few Transformer layers over the downsampled frames;
* ``qformer``: a fixed number of learned queries per window of frames, cross-attending to that window (Q-Former
  style); ``window / num_queries`` is its downsampling;
* ``stacked``: several of the above in a chain, e.g. ``stack`` then ``conv1d_transformer``;
* ``ctc_posterior``: each frame's CTC posteriors over the LLM's tokens times the LLM's own input embeddings
  (LegoSLM, Ma et al. 2025, arXiv 2505.11352): the LLM reads a soft transcript in its own embedding space. It needs
  the model's CTC head over the LLM's tokens (``ctc_token_type: llm``), which ``SpeechLLM`` binds to it.
"""
from __future__ import annotations

import abc
import math
from typing import List, Tuple

import torch
import torch.nn.functional as F


def zero_padding(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    frames = torch.arange(x.size(1), device=x.device)
    return x.masked_fill((frames[None, :] >= lengths[:, None])[..., None], 0.0)


class AbsAdapter(torch.nn.Module, abc.ABC):
    """``forward(x, lengths) -> (y, output_lengths(lengths))``; ``output_size()`` is the width of ``y``."""

    def __init__(self, output_size: int):
        super().__init__()
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    @abc.abstractmethod
    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        ...

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ...


def check_downsample(downsample: int) -> None:
    if downsample < 1:
        raise ValueError(f"speech_adapter_conf.downsample must be >= 1, got {downsample}")


def mlp(input_size: int, output_size: int, dropout: float) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.GELU(), torch.nn.Dropout(dropout), torch.nn.Linear(input_size, output_size),
                               torch.nn.GELU(), torch.nn.Linear(output_size, output_size))


class StridedAdapter(AbsAdapter):
    """Shared by the adapters that downsample by a strided window: ``ceil(T / downsample)`` output frames, the end
    zero-padded so that every input frame lands in some window and short inputs still give one frame."""

    def __init__(self, output_size: int, downsample: int, kernel_size: int):
        super().__init__(output_size)
        check_downsample(downsample)
        self.downsample = downsample
        self.kernel_size = kernel_size or downsample
        if self.kernel_size < downsample:
            raise ValueError(
                f"speech_adapter_conf.kernel_size ({self.kernel_size}) < downsample ({downsample}) would skip frames"
            )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.downsample - 1, self.downsample, rounding_mode="floor")

    def windows(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """``x`` with padding zeroed and the end padded for the strided windows, as (B, D, T) for Conv1d."""
        out_frames = -(-x.size(1) // self.downsample)
        needed = (out_frames - 1) * self.downsample + self.kernel_size
        x = F.pad(zero_padding(x, lengths), (0, 0, 0, max(0, needed - x.size(1))))
        return x.transpose(1, 2), out_frames


class Conv1dMLPAdapter(StridedAdapter):
    """Conv1d with stride ``downsample`` (a learned frame-stacking), then a two-layer MLP to the LLM width."""

    def __init__(self, input_size: int, output_size: int, downsample: int = 4, kernel_size: int = 0,
                 hidden_size: int = 1024, dropout: float = 0.0):
        super().__init__(output_size, downsample, kernel_size)
        self.conv = torch.nn.Conv1d(input_size, hidden_size, self.kernel_size, stride=downsample)
        self.mlp = mlp(hidden_size, output_size, dropout)

    def forward(self, x, lengths):
        x, out_frames = self.windows(x, lengths)
        return self.mlp(self.conv(x).transpose(1, 2)[:, :out_frames]), self.output_lengths(lengths)


class DepthwiseSeparableMLPAdapter(StridedAdapter):
    """A depthwise strided Conv1d (one filter per encoder channel) and a pointwise one to ``hidden_size``, then the
    MLP: the conv1d_mlp shape with input x kernel + input x hidden weights instead of input x hidden x kernel."""

    def __init__(self, input_size: int, output_size: int, downsample: int = 4, kernel_size: int = 0,
                 hidden_size: int = 1024, dropout: float = 0.0):
        super().__init__(output_size, downsample, kernel_size)
        self.depthwise = torch.nn.Conv1d(input_size, input_size, self.kernel_size, stride=downsample,
                                         groups=input_size)
        self.pointwise = torch.nn.Conv1d(input_size, hidden_size, 1)
        self.mlp = mlp(hidden_size, output_size, dropout)

    def forward(self, x, lengths):
        x, out_frames = self.windows(x, lengths)
        y = self.pointwise(self.depthwise(x)).transpose(1, 2)[:, :out_frames]
        return self.mlp(y), self.output_lengths(lengths)


class StackAdapter(StridedAdapter):
    """``downsample`` consecutive frames concatenated (the last group zero-padded), then one linear layer."""

    def __init__(self, input_size: int, output_size: int, downsample: int = 4):
        super().__init__(output_size, downsample, downsample)
        self.linear = torch.nn.Linear(input_size * downsample, output_size)

    def forward(self, x, lengths):
        x, out_frames = self.windows(x, lengths)
        stacked = x.transpose(1, 2)[:, :out_frames * self.downsample].reshape(x.size(0), out_frames, -1)
        return self.linear(stacked), self.output_lengths(lengths)


def padding_mask(lengths: torch.Tensor, frames: int) -> torch.Tensor:
    """True at padded positions (torch's key_padding_mask convention)."""
    return torch.arange(frames, device=lengths.device)[None, :] >= lengths[:, None]


class Conv1dTransformerAdapter(StridedAdapter):
    """The strided Conv1d to ``hidden_size``, ``num_layers`` Transformer encoder layers over the downsampled frames
    (attention masked to each utterance's own frames), then a linear layer to the LLM width."""

    def __init__(self, input_size: int, output_size: int, downsample: int = 4, kernel_size: int = 0,
                 hidden_size: int = 512, num_layers: int = 2, attention_heads: int = 8, linear_units: int = 2048,
                 dropout: float = 0.1):
        super().__init__(output_size, downsample, kernel_size)
        self.conv = torch.nn.Conv1d(input_size, hidden_size, self.kernel_size, stride=downsample)
        layer = torch.nn.TransformerEncoderLayer(hidden_size, attention_heads, linear_units, dropout,
                                                 activation="gelu", batch_first=True, norm_first=True)
        self.transformer = torch.nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.linear = torch.nn.Linear(hidden_size, output_size)

    def forward(self, x, lengths):
        x, out_frames = self.windows(x, lengths)
        out_lengths = self.output_lengths(lengths)
        y = self.conv(x).transpose(1, 2)[:, :out_frames]
        y = self.transformer(y, src_key_padding_mask=padding_mask(out_lengths, out_frames))
        return self.linear(y), out_lengths


class QFormerAdapter(AbsAdapter):
    """``num_queries`` learned queries per window of ``window`` frames (the last window shorter), each set
    attending to its own window's frames (and to each other) through ``num_layers`` Transformer decoder layers, then
    a linear layer to the LLM width: ``num_queries`` embeddings per window, whatever the frames in it."""

    def __init__(self, input_size: int, output_size: int, window: int = 8, num_queries: int = 2,
                 hidden_size: int = 512, num_layers: int = 2, attention_heads: int = 8, linear_units: int = 2048,
                 dropout: float = 0.1):
        super().__init__(output_size)
        if window < 1 or num_queries < 1:
            raise ValueError(f"speech_adapter_conf: window ({window}) and num_queries ({num_queries}) must be >= 1")
        self.window, self.num_queries = window, num_queries
        self.queries = torch.nn.Parameter(torch.randn(num_queries, hidden_size) * hidden_size ** -0.5)
        self.input = torch.nn.Linear(input_size, hidden_size)
        layer = torch.nn.TransformerDecoderLayer(hidden_size, attention_heads, linear_units, dropout,
                                                 activation="gelu", batch_first=True, norm_first=True)
        self.layers = torch.nn.TransformerDecoder(layer, num_layers)
        self.linear = torch.nn.Linear(hidden_size, output_size)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.window - 1, self.window, rounding_mode="floor") * self.num_queries

    def forward(self, x, lengths):
        batch, frames, _ = x.shape
        windows = math.ceil(frames / self.window)
        x = F.pad(self.input(x), (0, 0, 0, windows * self.window - frames))
        memory = x.reshape(batch * windows, self.window, -1)
        # Frames of each window that lie within the utterance; a window wholly past the end still needs one key.
        valid = torch.arange(windows * self.window, device=x.device)[None, :] < lengths[:, None]
        valid = valid.reshape(batch * windows, self.window)
        valid[:, 0] |= ~valid.any(dim=1)
        queries = self.queries[None].expand(batch * windows, -1, -1)
        y = self.layers(queries, memory, memory_key_padding_mask=~valid)
        y = self.linear(y).reshape(batch, windows * self.num_queries, -1)
        return y, self.output_lengths(lengths)


class StackedAdapters(AbsAdapter):
    """Adapters in a chain: ``adapters: [{type: stack, conf: {downsample: 2}}, {type: conv1d_transformer, conf:
    {...}}]``; each maps to the LLM width, which the next takes as input."""

    def __init__(self, input_size: int, output_size: int, adapters: List[dict] = ()):
        super().__init__(output_size)
        if not adapters:
            raise ValueError("speech_adapter_conf.adapters: give the chain, e.g. [{type: stack, conf: {downsample: "
                             "2}}, {type: conv1d_mlp}]")
        from speechllm.tasks.speech_llm import build_part

        chain, size = [], input_size
        for i, spec in enumerate(adapters):
            unknown = sorted(set(spec) - {"type", "conf"})
            name = spec.get("type")
            chainable = sorted(set(ADAPTERS) - {"stacked", "ctc_posterior"})
            if name == "ctc_posterior":
                raise ValueError(f"speech_adapter_conf.adapters[{i}]: ctc_posterior reads the model's CTC head, not "
                                 f"the adapter before it: use it alone (speech_adapter: ctc_posterior) or chain "
                                 f"{chainable}")
            if unknown or name not in ADAPTERS or name == "stacked":
                raise ValueError(f"speech_adapter_conf.adapters[{i}]: {spec!r}: expected {{type: NAME, conf: {{...}}}} "
                                 f"with NAME one of {chainable}")
            chain.append(build_part(f"speech_adapter_conf.adapters[{i}]", ADAPTERS[name], spec.get("conf"),
                                    input_size=size, output_size=output_size))
            size = output_size
        self.chain = torch.nn.ModuleList(chain)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for adapter in self.chain:
            lengths = adapter.output_lengths(lengths)
        return lengths

    def forward(self, x, lengths):
        for adapter in self.chain:
            x, lengths = adapter(x, lengths)
        return x, lengths


class CTCPosteriorAdapter(AbsAdapter):
    """Frame t's embedding is ``sum_v p_t(v) E[v]``: the CTC head's posteriors (sharpened or flattened by
    ``temperature``, LegoSLM's knob between the speech and the LLM at decoding time) weighing the LLM's input
    embeddings ``E``; the blank's share weighs a learned vector. No downsampling: model_conf.ctc_compress drops the
    blank frames before it. ``detach``: the posteriors are read, not trained, by the LLM's loss (the CTC head learns
    from its own loss only); on the demo, the LLM's gradient through them slowed the CTC head (its dev loss 30.7
    after 5 epochs against 24.0)."""

    in_llm_space = True  # its output is already at the scale of the LLM's token embeddings: SpeechLLM adds no norm

    def __init__(self, input_size: int, output_size: int, temperature: float = 1.0, detach: bool = True):
        super().__init__(output_size)
        if temperature <= 0:
            raise ValueError(f"speech_adapter_conf.temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.detach = detach
        self.blank = torch.nn.Parameter(torch.zeros(output_size))
        self._log_probs = self._token_embeddings = None

    def bind(self, ctc_log_probs, token_embeddings) -> None:
        """``ctc_log_probs(x)``: the CTC head's ``(B, T, 1 + V)`` log-posteriors, blank first (the CTC-id convention
        of speechllm.text.tokenizers); ``token_embeddings()``: the LLM's input embedding matrix, looked up at each
        call. Getters, not submodules: the CTC head and the LLM are the model's, and stay out of this state dict."""
        weight = token_embeddings()
        with torch.no_grad():  # the blank starts as an average token: neither speech nor silence yet
            self.blank.copy_(weight.detach().float().mean(0))
        self._log_probs, self._token_embeddings = ctc_log_probs, token_embeddings

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, x, lengths):
        if self._log_probs is None:
            raise RuntimeError("speech_adapter ctc_posterior reads the model's CTC head: SpeechLLM binds it")
        # softmax(log_softmax(z) / T) = softmax(z / T): any CTC head's log-posteriors take the temperature.
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.detach):
            log_probs = self._log_probs(x).float()
        probs = torch.softmax(log_probs / self.temperature, dim=-1)
        tokens = self._token_embeddings().float()
        vocab = probs.size(-1) - 1
        y = probs[..., :1] * self.blank.float() + probs[..., 1:] @ tokens[:vocab]
        return zero_padding(y.to(x.dtype), lengths), lengths


ADAPTERS = {
    "conv1d_mlp": Conv1dMLPAdapter,
    "dws_mlp": DepthwiseSeparableMLPAdapter,
    "stack": StackAdapter,
    "conv1d_transformer": Conv1dTransformerAdapter,
    "qformer": QFormerAdapter,
    "stacked": StackedAdapters,
    "ctc_posterior": CTCPosteriorAdapter,
}
