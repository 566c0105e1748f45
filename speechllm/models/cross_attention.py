"""The cross-attention interface (``model_conf.interface: cross_attention``): the LLM's decoder layers read the
speech embeddings through gated cross-attention blocks instead of as a prefix, which then holds only the prompt.

Each block (Flamingo's "gated xattn-dense") runs before its decoder layer: ``h + tanh(a) * xattn(LN(h), speech)``,
then ``h + tanh(b) * ffn(LN(h))``. The gates start at 0, so the untrained blocks leave the pretrained LLM exactly as
it was. The blocks live outside the LLM's module tree (``SpeechLLM.cross_attention``): the LLM's finetune mode,
LoRA targets and checkpoint filtering never see them, and they are attached to the decoder layers by forward
pre-hooks rather than by replacing modules.

Decoding projects the speech to keys and values once per utterance (``SpeechMemory`` caches them per block) and
reuses them at every step, as the AED decoder scorer does for its encoder output.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

# Where transformers causal LMs keep their decoder layers (Llama, Qwen2, Mistral, Gemma, SmolLM: model.layers).
DECODER_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers")


class SpeechMemory:
    """The speech embeddings ``(rows, N, D)`` that the blocks attend to, their mask ``(rows, N)`` and, once computed,
    each block's keys and values."""

    def __init__(self, embeds: torch.Tensor, lengths: torch.Tensor):
        self.embeds = embeds
        self.mask = torch.arange(embeds.size(1), device=embeds.device)[None] < lengths[:, None]
        self._keys_values: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}

    def keys_values(self, block: int, project: Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]):
        if block not in self._keys_values:
            self._keys_values[block] = project(self.embeds)
        return self._keys_values[block]

    def repeat_interleave(self, repeats: int) -> "SpeechMemory":
        """Each utterance's row ``repeats`` times (its beams), keys and values included."""
        return self._map(lambda x: x.repeat_interleave(repeats, dim=0))

    def select(self, rows: torch.Tensor) -> "SpeechMemory":
        """The rows ``rows`` (the beams of the utterances still searched), keys and values included."""
        return self._map(lambda x: x[rows])

    def _map(self, rows_of: Callable[[torch.Tensor], torch.Tensor]) -> "SpeechMemory":
        out = SpeechMemory.__new__(SpeechMemory)
        out.embeds, out.mask = rows_of(self.embeds), rows_of(self.mask)
        out._keys_values = {i: (rows_of(k), rows_of(v)) for i, (k, v) in self._keys_values.items()}
        return out


class GatedCrossAttentionBlock(torch.nn.Module):
    def __init__(self, hidden_size: int, num_heads: int, ffn_size: int, gate_init: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"model_conf.cross_attention_conf.num_heads: {num_heads} does not divide the LLM's "
                             f"hidden size {hidden_size}")
        self.num_heads = num_heads
        self.attention_norm = torch.nn.LayerNorm(hidden_size)
        # The speech embeddings are at the scale of the LLM's token embeddings (std about 0.02): projected as they
        # are, the keys are so small that the attention is uniform and its query and key weights get almost no
        # gradient (1e-5 against 0.3 for the values, measured on the tests' toy LLM). Normalised, they are not.
        self.memory_norm = torch.nn.LayerNorm(hidden_size)
        self.query = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.key = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.value = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.output = torch.nn.Linear(hidden_size, hidden_size, bias=False)
        self.attention_gate = torch.nn.Parameter(torch.full((), float(gate_init)))
        self.ffn = None
        if ffn_size:
            self.ffn_norm = torch.nn.LayerNorm(hidden_size)
            self.ffn = torch.nn.Sequential(torch.nn.Linear(hidden_size, ffn_size), torch.nn.GELU(),
                                           torch.nn.Linear(ffn_size, hidden_size))
            self.ffn_gate = torch.nn.Parameter(torch.full((), float(gate_init)))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), self.num_heads, -1).transpose(1, 2)

    def project_memory(self, embeds: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        embeds = self.memory_norm(embeds.to(self.key.weight.dtype))
        return self.heads(self.key(embeds)), self.heads(self.value(embeds))

    def forward(self, hidden: torch.Tensor, memory: SpeechMemory, index: int) -> torch.Tensor:
        keys, values = memory.keys_values(index, self.project_memory)
        query = self.heads(self.query(self.attention_norm(hidden).to(self.query.weight.dtype)))
        attended = F.scaled_dot_product_attention(query, keys.to(query.dtype), values.to(query.dtype),
                                                  attn_mask=memory.mask[:, None, None, :])
        attended = self.output(attended.transpose(1, 2).reshape(hidden.size(0), hidden.size(1), -1))
        hidden = hidden + (torch.tanh(self.attention_gate) * attended).to(hidden.dtype)
        if self.ffn is not None:
            update = self.ffn(self.ffn_norm(hidden).to(self.query.weight.dtype))
            hidden = hidden + (torch.tanh(self.ffn_gate) * update).to(hidden.dtype)
        return hidden


def decoder_layers(llm: torch.nn.Module) -> torch.nn.ModuleList:
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm  # under peft's wrapper
    for path in DECODER_LAYER_PATHS:
        module = base
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.ModuleList):
            return module
    raise ValueError(f"model_conf.interface cross_attention: cannot find the decoder layers of {type(base).__name__} "
                     f"(looked for {', '.join(DECODER_LAYER_PATHS)}); use interface prefix with this LLM, or add "
                     "its path to speechllm.models.cross_attention.DECODER_LAYER_PATHS")


class LLMCrossAttention(torch.nn.Module):
    """Gated cross-attention blocks before the LLM's decoder layers ``layers`` (default: every ``every``-th layer
    from the first). ``llm_hidden_size``/``llm_num_layers`` come from the LLM; the rest is
    ``model_conf.cross_attention_conf``.

    ``gate_init``: the gates' start (tanh of it scales each block's output). 0 keeps the pretrained LLM exactly as it
    was, but then the blocks' query and key weights get no gradient until the gates move, and an optimizer with
    coupled weight decay (Adam's ``weight_decay``, normalised by Adam into steps of the learning rate) pulls weights
    without gradient to zero within a few hundred steps. Start at e.g. 0.1 with a randomly initialised or fully
    trained LLM, or with weight decay under Adam (AdamW's decoupled decay is safe)."""

    def __init__(self, llm_hidden_size: int, llm_num_layers: int, every: int = 1,
                 layers: Optional[Sequence[int]] = None, num_heads: int = 8, ffn_size: int = 0,
                 gate_init: float = 0.0):
        super().__init__()
        if every < 1:
            raise ValueError(f"model_conf.cross_attention_conf.every must be >= 1, got {every}")
        self.layers: List[int] = list(range(0, llm_num_layers, every)) if layers is None else sorted(set(layers))
        bad = [i for i in self.layers if not 0 <= i < llm_num_layers]
        if bad or not self.layers:
            raise ValueError(f"model_conf.cross_attention_conf.layers: {list(layers or [])} must be indices of the "
                             f"LLM's {llm_num_layers} decoder layers (0..{llm_num_layers - 1})")
        self.blocks = torch.nn.ModuleList(
            GatedCrossAttentionBlock(llm_hidden_size, num_heads, ffn_size, gate_init) for _ in self.layers)
        self.memory: Optional[SpeechMemory] = None  # set around each LLM call by SpeechLLM.run_llm

    def attach(self, llm: torch.nn.Module) -> None:
        """Hooks on the chosen decoder layers: each runs its block on the layer's input hidden states."""
        layers = decoder_layers(llm)
        for block_index, layer_index in enumerate(self.layers):
            layers[layer_index].register_forward_pre_hook(self._hook(block_index), with_kwargs=True)

    def _hook(self, block_index: int):
        def run_block(module, args, kwargs):
            if self.memory is None:
                raise RuntimeError("the LLM's cross-attention layers ran without speech: call the LLM through "
                                   "SpeechLLM.run_llm(..., memory=...)")
            block = self.blocks[block_index]
            if args:
                return (block(args[0], self.memory, block_index),) + tuple(args[1:]), kwargs
            kwargs["hidden_states"] = block(kwargs["hidden_states"], self.memory, block_index)
            return args, kwargs
        return run_block

