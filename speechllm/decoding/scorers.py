"""Scorers: what the beam search adds up, each batched over all beams of all utterances (utterance-major: beam ``i``
belongs to utterance ``i // beams_per_utterance``).

The model encodes once (``SpeechInput``); each scorer then keeps its own state (a KV cache, CTC forward variables)
across the steps of one search:

* ``start(speech, beams_per_utterance)``: state from the encoder output;
* full scorers (``partial = False``): ``scores()`` gives the log-probabilities ``(beams, vocab)`` of every next token;
* partial scorers (``partial = True``): ``partial_scores(candidates)`` scores only ``(beams, S)`` candidate ids the
  full scorers proposed, and ``end_scores()`` the ``(beams,)`` score of ending the hypothesis here (at EOS);
* ``advance(rows, new_tokens)``: beam ``i`` is now beam ``rows[i]`` extended by ``new_tokens[i]``. Rows never cross
  utterances; once an utterance has finished its beams leave ``rows`` (the batch shrinks, so that finished
  utterances cost nothing), and a scorer then also drops what it keeps per beam for the whole search.

``vocab`` names a scorer's label units: scores are only added label by label between scorers of one vocabulary
(the search refuses others).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import torch
from transformers import DynamicCache

from speechllm.decoding.ctc_prefix import CTCPrefixScorer as CTCPrefixState
from speechllm.text.tokenizers import CTC_BLANK_ID


@dataclasses.dataclass
class SpeechInput:
    """What the model's encoder makes of a batch, computed once per search."""

    encoded: torch.Tensor  # (B, T, D) encoder output (what an encoder-side CTC head reads)
    encoded_lengths: torch.Tensor
    speech_embeds: torch.Tensor  # (B, N, D_llm) adapter output at the LLM's scale (the LLM's speech prefix); an
    speech_lengths: torch.Tensor  # acoustic model without an LLM repeats its encoder output (length limits count it)
    heard_lengths: Optional[torch.Tensor] = None  # (B,) tokens the CTC head hears: aligned speech positions' length

    @property
    def batch_size(self) -> int:
        return self.encoded.size(0)


def vocab_tag(tokenizer) -> str:
    """Label units of an LLM tokenizer: its class, size and the ids of a probe text (same tag, same units)."""
    probe = tokenizer("the 7 quick brown foxes, 'jumped' over the lazy dog!", add_special_tokens=False)["input_ids"]
    return f"{type(tokenizer).__name__}:{len(tokenizer)}:{hash(tuple(probe)) & 0xFFFFFFFF:08x}"


class Scorer:
    partial = False
    vocab = ""

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        raise NotImplementedError

    def scores(self) -> torch.Tensor:
        raise NotImplementedError

    def partial_scores(self, candidates: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def end_scores(self) -> torch.Tensor:
        raise NotImplementedError

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        raise NotImplementedError


class SpeechLLMScorer(Scorer):
    """The speech LLM reading ``[BOS, prompt, speech, suffix]`` then the hypothesis, one KV cache for all beams.

    The prefix is left-padded so that every beam's next token sits at the same position; all beams of an utterance
    share the prefix's computation (the cache is expanded after it). With the cross-attention interface, the speech
    memory (and its keys and values, projected at the first call) is expanded likewise and read at every step."""

    def __init__(self, model, vocab: str, prompt_ids: Optional[Sequence[int]] = None):
        self.model = model
        self.vocab = vocab
        self.prompt_ids = prompt_ids  # a decoding prompt instead of the model's (None: the model's)

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        model = self.model
        prompts = None
        if self.prompt_ids is not None:
            head = torch.tensor(model.prompt_head(self.prompt_ids), dtype=torch.long, device=speech.encoded.device)
            prompts = [head] * speech.batch_size
        prefix, mask = model.speech_prefix(speech.speech_embeds, speech.speech_lengths, prompts)
        model.check_context(mask, torch.zeros_like(speech.speech_lengths))
        self.prefix_lengths = mask.sum(-1)
        self.cache = DynamicCache()
        memory = model.speech_memory(speech.speech_embeds, speech.speech_lengths)
        positions = self.next_positions = None  # None: counted from the mask (sequential speech positions)
        if model.aligned_positions:
            positions, start = model.prefix_positions(mask, speech.speech_lengths, speech.heard_lengths)
            self.next_positions = start.repeat_interleave(beams_per_utterance)
        logits = model.run_llm(prefix, mask, past_key_values=self.cache, logits_to_keep=1, memory=memory,
                               position_ids=positions).logits[:, -1]
        self.memory = memory.repeat_interleave(beams_per_utterance) if memory is not None else None
        self.cache.batch_repeat_interleave(beams_per_utterance)
        self.logits = logits.repeat_interleave(beams_per_utterance, dim=0)
        self.mask = mask.repeat_interleave(beams_per_utterance, dim=0)

    def scores(self) -> torch.Tensor:
        return torch.log_softmax(self.logits.float(), dim=-1)

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        if self.memory is not None and rows.numel() != self.mask.size(0):  # finished utterances left
            self.memory = self.memory.select(rows)
        mask = self.mask[rows]
        self.mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
        embeds = self.model.embed_tokens(new_tokens[:, None])
        positions = None
        if self.next_positions is not None:
            positions = self.next_positions[rows]
            self.next_positions = positions + 1
            positions = positions[:, None]
        self.logits = self.model.run_llm(embeds, self.mask, past_key_values=self.cache, logits_to_keep=1,
                                         memory=self.memory, position_ids=positions).logits[:, -1]


class CausalLMScorer(Scorer):
    """An external causal LM (any transformers model over the same tokenizer) for shallow fusion, KV-cached: it
    reads ``[BOS] + hypothesis`` and scores every next token. ``lm_ids`` (search label -> LM id) serves an LM whose
    units are the search's under other ids (an LM over an acoustic model's BPE: speechllm.models.espnet_am)."""

    def __init__(self, lm: torch.nn.Module, bos_id: int, vocab: str, lm_ids: Optional[Sequence[int]] = None):
        self.lm = lm.eval()
        self.bos_id = bos_id
        self.vocab = vocab
        self.lm_ids = None if lm_ids is None else torch.tensor(list(lm_ids), dtype=torch.long)

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        beams = speech.batch_size * beams_per_utterance
        device = speech.encoded.device
        self.cache = DynamicCache()
        ids = torch.full((beams, 1), self.bos_id, dtype=torch.long, device=device)
        self.logits = self.lm(input_ids=ids, past_key_values=self.cache, use_cache=True).logits[:, -1]
        if self.lm_ids is not None:
            self.lm_ids = self.lm_ids.to(device)

    def scores(self) -> torch.Tensor:
        logprobs = torch.log_softmax(self.logits.float(), dim=-1)
        return logprobs if self.lm_ids is None else logprobs[:, self.lm_ids]

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        self.cache.reorder_cache(rows)
        tokens = new_tokens if self.lm_ids is None else self.lm_ids[new_tokens]
        self.logits = self.lm(input_ids=tokens[:, None], past_key_values=self.cache, use_cache=True).logits[:, -1]


class LengthBonus(Scorer):
    """A constant reward per emitted token (ESPnet's length_bonus), against the short hypotheses LMs favour."""

    def __init__(self, vocab_size: int, eos_id: int, vocab: str):
        self.vocab_size, self.eos_id, self.vocab = vocab_size, eos_id, vocab

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        self.beams = speech.batch_size * beams_per_utterance
        self.device = speech.encoded.device

    def scores(self) -> torch.Tensor:
        bonus = torch.ones(self.beams, self.vocab_size, device=self.device)
        bonus[:, self.eos_id] = 0.0
        return bonus

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        self.beams = rows.numel()


class CTCScorer(Scorer):
    """Label-synchronous CTC prefix scores (speechllm.decoding.ctc_prefix) of the candidates the proposing scorer
    offers; EOS scores the probability that the whole utterance is exactly the hypothesis, which is what stops a
    hallucinating decoder from running on past the speech. ``log_probs(speech)`` gives the CTC head's ``(B, T, V)``
    log-posteriors and lengths; a search label ``c`` is CTC id ``c + id_offset`` (the speech LLM's CTC head over the
    LLM's tokens puts its blank first: offset 1; an ESPnet AM shares its ids with its decoder: offset 0)."""

    partial = True

    def __init__(self, log_probs: Callable[[SpeechInput], Tuple[torch.Tensor, torch.Tensor]], vocab: str,
                 id_offset: int = 0):
        self.log_probs, self.vocab, self.id_offset = log_probs, vocab, id_offset

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        logprobs, lengths = self.log_probs(speech)
        self.prefixes = CTCPrefixState(logprobs, lengths, beams_per_utterance, blank_id=CTC_BLANK_ID)
        self.state = self.prefixes.initial_state()
        self.pending: Optional[tuple] = None

    def partial_scores(self, candidates: torch.Tensor) -> torch.Tensor:
        psi, r_nonblank, r_blank = self.prefixes.extend(self.state, candidates + self.id_offset)
        self.pending = candidates, psi, r_nonblank, r_blank
        return psi - self.state.psi[:, None]

    def end_scores(self) -> torch.Tensor:
        return self.prefixes.final_scores(self.state) - self.state.psi

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        candidates, psi, r_nonblank, r_blank = self.pending
        hit = candidates[rows] == new_tokens[:, None]
        columns = hit.float().argmax(dim=1)  # rows without a hit are dead beams; their state is never read
        self.state = CTCPrefixState.advance(self.state, rows, columns, candidates + self.id_offset, psi,
                                            r_nonblank, r_blank)
        self.prefixes.utterance = self.prefixes.utterance[rows]


class AEDDecoderScorer(Scorer):
    """An attention encoder-decoder's decoder (ESPnet's TransformerDecoder and its kin: ``forward_one_step`` with a
    per-layer cache), reading ``[SOS] + hypothesis`` with cross-attention to the encoder output. The memory mask
    keeps each utterance's attention off the batch's padding, so that batched scores equal one-at-a-time ones.

    ESPnet's ``forward_one_step`` projects, in every layer and at every step, the whole encoder output to the
    cross-attention's keys and values and the whole hypothesis to the self-attention's: most of a step's work. Here
    the encoder's are projected once per utterance at the start, and the hypothesis's once per token (a KV cache
    that follows the beams), through the decoder's own modules, so the scores are the decoder's."""

    def __init__(self, decoder: torch.nn.Module, sos_id: int, vocab: str):
        self.decoder, self.sos_id, self.vocab = decoder, sos_id, vocab
        layers = list(getattr(decoder, "decoders", []))
        self.cross_attention = [getattr(layer, "src_attn", None) for layer in layers]
        self.self_attention = [getattr(layer, "self_attn", None) for layer in layers]
        if not all(_projects_like_espnet(a) for a in self.cross_attention + self.self_attention):
            self.cross_attention = self.self_attention = []  # another decoder: its own computation, uncached

    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        k = beams_per_utterance
        memory = speech.encoded
        self.memory = memory.repeat_interleave(k, dim=0)
        frames = torch.arange(self.memory.size(1), device=self.memory.device)
        self.memory_mask = (frames[None] < speech.encoded_lengths[:, None]).repeat_interleave(k, dim=0)[:, None]
        self.keys_values = []
        for attention in self.cross_attention:
            _, keys, values = attention.forward_qkv(memory[:, :1], memory, memory)
            self.keys_values.append((keys.repeat_interleave(k, dim=0), values.repeat_interleave(k, dim=0)))
        self.hypothesis_keys_values = [_GrowingKeysValues() for _ in self.self_attention]
        self.ys = torch.full((self.memory.size(0), 1), self.sos_id, dtype=torch.long, device=self.memory.device)
        self.cache = None
        self._step()

    def _step(self) -> None:
        length = self.ys.size(1)
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=self.ys.device))[None]
        for attention, (keys, values) in zip(self.cross_attention, self.keys_values):
            attention.forward_qkv = functools.partial(_cached_qkv, attention, keys, values)
        for attention, grown in zip(self.self_attention, self.hypothesis_keys_values):
            attention.forward_qkv = functools.partial(_growing_qkv, attention, grown)
        try:
            self.logp, self.cache = self.decoder.forward_one_step(self.ys, causal, self.memory, self.memory_mask,
                                                                  cache=self.cache)
        finally:  # the module computes as before outside the search (training, full recomputes)
            for attention in self.cross_attention + self.self_attention:
                del attention.forward_qkv

    def scores(self) -> torch.Tensor:
        return self.logp.float()

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        if rows.numel() != self.memory.size(0):  # finished utterances left the batch
            self.memory, self.memory_mask = self.memory[rows], self.memory_mask[rows]
            self.keys_values = [(keys[rows], values[rows]) for keys, values in self.keys_values]
        self.ys = torch.cat([self.ys[rows], new_tokens[:, None]], dim=1)
        self.cache = [layer[rows] for layer in self.cache]
        for grown in self.hypothesis_keys_values:
            grown.select(rows)
        self._step()


def _projects_like_espnet(attention) -> bool:
    """ESPnet's ``MultiHeadedAttention`` (or kin) computing its projections in ``forward_qkv`` (not flash-attn's)."""
    return (attention is not None and hasattr(attention, "forward_qkv")
            and all(hasattr(attention, name) for name in ("linear_q", "linear_k", "linear_v", "h", "d_k"))
            and not getattr(attention, "use_flash_attn", False))


def _heads(attention, x: torch.Tensor) -> torch.Tensor:
    """``(B, T, D)`` -> ``(B, heads, T, d_k)``."""
    return x.view(x.size(0), -1, attention.h, attention.d_k).transpose(1, 2)


def _cached_qkv(attention, keys, values, query, key, value, expand_kv=False):
    """ESPnet's ``MultiHeadedAttention.forward_qkv`` with the keys and values of the encoder output computed once
    (rows never move between utterances, so each beam's row keeps its utterance's memory)."""
    return attention.q_norm(_heads(attention, attention.linear_q(query))), keys, values


class _GrowingKeysValues:
    """One self-attention layer's keys and values of the hypothesis so far ``(beams, heads, L, d_k)``."""

    def __init__(self):
        self.keys = self.values = None

    def select(self, rows: torch.Tensor) -> None:
        self.keys, self.values = self.keys[rows], self.values[rows]


def _growing_qkv(attention, grown: _GrowingKeysValues, query, key, value, expand_kv=False):
    """ESPnet's ``forward_qkv`` for the decoder's self-attention that projects only the positions it has not seen:
    the earlier positions' layer inputs never change (a causal decoder), so their projections are reused."""
    seen = 0 if grown.keys is None else grown.keys.size(2)
    keys = attention.k_norm(_heads(attention, attention.linear_k(key[:, seen:])))
    values = _heads(attention, attention.linear_v(value[:, seen:]))
    if seen:
        keys, values = torch.cat([grown.keys, keys], dim=2), torch.cat([grown.values, values], dim=2)
    grown.keys, grown.values = keys, values
    return attention.q_norm(_heads(attention, attention.linear_q(query))), keys, values
