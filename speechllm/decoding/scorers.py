"""Scorers: what the beam search adds up, each batched over all beams of all utterances (utterance-major: beam ``i``
belongs to utterance ``i // beams_per_utterance``).

The model encodes once (``SpeechInput``); each scorer then keeps its own state (a KV cache, CTC forward variables)
across the steps of one search:

* ``start(speech, beams_per_utterance)``: state from the encoder output;
* full scorers (``partial = False``): ``scores()`` gives the log-probabilities ``(beams, vocab)`` of every next token;
* partial scorers (``partial = True``): ``partial_scores(candidates)`` scores only ``(beams, S)`` candidate ids the
  full scorers proposed, and ``end_scores()`` the ``(beams,)`` score of ending the hypothesis here (at EOS);
* ``advance(rows, new_tokens)``: beam ``i`` is now beam ``rows[i]`` extended by ``new_tokens[i]``.

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
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.size(0), 1)], dim=1)
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
        pass


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


class AEDDecoderScorer(Scorer):
    """An attention encoder-decoder's decoder (ESPnet's TransformerDecoder and its kin: ``forward_one_step`` with a
    per-layer cache), reading ``[SOS] + hypothesis`` with cross-attention to the encoder output. The memory mask
    keeps each utterance's attention off the batch's padding, so that batched scores equal one-at-a-time ones.

    ESPnet's cross-attention projects the whole encoder output to keys and values again at every step, for every
    beam: most of a step's work. Here they are projected once per utterance at the start and reused."""

    def __init__(self, decoder: torch.nn.Module, sos_id: int, vocab: str):
        self.decoder, self.sos_id, self.vocab = decoder, sos_id, vocab
        layers = getattr(decoder, "decoders", [])
        self.cross_attention = [layer.src_attn for layer in layers if hasattr(layer, "src_attn")]
        if len(self.cross_attention) != len(layers) or not all(
                hasattr(a, "forward_qkv") and hasattr(a, "linear_q") for a in self.cross_attention):
            self.cross_attention = []  # another decoder: its own computation, uncached

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
        self.ys = torch.full((self.memory.size(0), 1), self.sos_id, dtype=torch.long, device=self.memory.device)
        self.cache = None
        self._step()

    def _step(self) -> None:
        length = self.ys.size(1)
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=self.ys.device))[None]
        for attention, (keys, values) in zip(self.cross_attention, self.keys_values):
            attention.forward_qkv = functools.partial(_cached_qkv, attention, keys, values)
        try:
            self.logp, self.cache = self.decoder.forward_one_step(self.ys, causal, self.memory, self.memory_mask,
                                                                  cache=self.cache)
        finally:  # the module computes as before outside the search (training, full recomputes)
            for attention in self.cross_attention:
                del attention.forward_qkv

    def scores(self) -> torch.Tensor:
        return self.logp.float()

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        self.ys = torch.cat([self.ys[rows], new_tokens[:, None]], dim=1)
        self.cache = [layer[rows] for layer in self.cache]
        self._step()


def _cached_qkv(attention, keys, values, query, key, value, expand_kv=False):
    """ESPnet's ``MultiHeadedAttention.forward_qkv`` with the keys and values of the encoder output computed once
    (rows never move between utterances, so each beam's row keeps its utterance's memory)."""
    q = attention.linear_q(query).view(query.size(0), -1, attention.h, attention.d_k).transpose(1, 2)
    return attention.q_norm(q), keys, values
