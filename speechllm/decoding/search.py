"""Beam search over the speech LLM with one KV cache for the whole batch.

Small strategy objects compose in one loop: logit filters edit next-token log-probabilities (forbidden tokens,
minimum length, n-gram repeats, forced end at the length limit), an optional CTC prefix scorer joins the CTC head's
scores (joint CTC/LLM decoding), a ranker orders finished hypotheses. Each step feeds only the newest token of every
beam to the LLM; the cache is reordered as beams move.
"""
from __future__ import annotations

import dataclasses
import math
from typing import List, Sequence

import torch
from transformers import DynamicCache

from speechllm.decoding.ctc_prefix import CTCPrefixScorer
from speechllm.decoding.options import DecodingOptions
from speechllm.text.tokenizers import CTC_BLANK_ID


@dataclasses.dataclass
class Hypothesis:
    token_ids: List[int]
    logprob: float  # sum of token log-probabilities, EOS included (joint decoding: (1 - w) LLM + w CTC)
    score: float  # what the ranker sorts by


class LogitFilter:
    def apply(self, logprobs: torch.Tensor, tokens: torch.Tensor, step: int) -> None:
        """Edit ``logprobs`` (beams x vocab) in place; ``tokens`` (beams x step) holds what each beam emitted."""
        raise NotImplementedError


class SuppressTokens(LogitFilter):
    def __init__(self, token_ids: Sequence[int]):
        self.token_ids = sorted(set(token_ids))

    def apply(self, logprobs, tokens, step):
        logprobs[:, self.token_ids] = -math.inf


class MinLength(LogitFilter):
    def __init__(self, eos_id: int, min_length: int):
        self.eos_id, self.min_length = eos_id, min_length

    def apply(self, logprobs, tokens, step):
        if step < self.min_length:
            logprobs[:, self.eos_id] = -math.inf


class ForceEndAtMaxLength(LogitFilter):
    """Beams whose utterance reached its own token budget may only emit EOS."""

    def __init__(self, eos_id: int, max_lengths: torch.Tensor):
        self.eos_id, self.max_lengths = eos_id, max_lengths  # one limit per beam

    def apply(self, logprobs, tokens, step):
        at_limit = self.max_lengths <= step
        if at_limit.any():
            eos = logprobs[at_limit, self.eos_id].clone()
            logprobs[at_limit] = -math.inf
            logprobs[at_limit, self.eos_id] = eos


class NoRepeatNGram(LogitFilter):
    def __init__(self, size: int):
        self.size = size

    def apply(self, logprobs, tokens, step):
        n = self.size
        if step < n - 1 or n == 0:
            return
        for beam, row in enumerate(tokens.tolist()):
            context = tuple(row[len(row) - n + 1:]) if n > 1 else ()
            banned = [row[i + n - 1] for i in range(len(row) - n + 1) if tuple(row[i:i + n - 1]) == context]
            if banned:
                logprobs[beam, banned] = -math.inf


class JointCTCScore:
    """Label-synchronous joint decoding: each candidate's score is (1 - w) LLM + w CTC prefix log-probability.

    The CTC head shares the LLM's tokens (CTC id = LLM id + 1). Only the ``ctc_pre_beam`` best tokens of each beam
    by the LLM are CTC-scored; the rest drop out, as in ESPnet's pre-beam. EOS scores the whole-utterance CTC
    probability of the prefix, which is what stops a hallucinating LLM from running on past the speech."""

    def __init__(self, model, encoded: torch.Tensor, encoded_lengths: torch.Tensor, beams_per_utterance: int,
                 options: DecodingOptions):
        self.weight = options.ctc_weight
        self.pre_beam = options.ctc_pre_beam or max(1, int(1.5 * options.beam_size))
        self.scorer = CTCPrefixScorer(model.ctc.log_softmax(encoded), encoded_lengths, beams_per_utterance,
                                      blank_id=CTC_BLANK_ID)
        self.state = self.scorer.initial_state()
        self.pending = None

    def scores(self, llm_logprobs: torch.Tensor, eos_id: int) -> torch.Tensor:
        """Joint scores ``(beams, vocab)`` of every next token, -inf for those outside the pre-beam."""
        w = self.weight
        top = llm_logprobs.topk(min(self.pre_beam, llm_logprobs.size(-1)), dim=-1)
        candidates = top.indices
        live = top.values > -math.inf
        psi, r_nonblank, r_blank = self.scorer.extend(self.state, candidates + 1)  # + 1: past the CTC blank
        joint = torch.full_like(llm_logprobs, -math.inf)
        joint.scatter_(1, candidates, torch.where(
            live, (1 - w) * top.values + w * (psi - self.state.psi[:, None]), torch.full_like(psi, -math.inf)))
        eos_llm = llm_logprobs[:, eos_id]
        eos_ctc = self.scorer.final_scores(self.state) - self.state.psi
        # where(): with w = 1, 0 * -inf would be NaN for an EOS that a filter forbade.
        joint[:, eos_id] = torch.where(eos_llm > -math.inf, (1 - w) * eos_llm + w * eos_ctc, eos_llm)
        self.pending = candidates, psi, r_nonblank, r_blank
        return joint

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        """Beam ``i`` is now beam ``rows[i]`` extended by ``new_tokens[i]`` (EOS on dead beams: state unused)."""
        candidates, psi, r_nonblank, r_blank = self.pending
        hit = candidates[rows] == new_tokens[:, None]
        columns = hit.float().argmax(dim=1)  # rows without a hit are dead beams; their state is never read
        self.state = CTCPrefixScorer.advance(self.state, rows, columns, candidates + 1, psi, r_nonblank, r_blank)


class LengthNormalizedRanker:
    def __init__(self, length_penalty: float):
        self.length_penalty = length_penalty

    def score(self, logprob: float, length: int) -> float:
        return logprob / max(length, 1) ** self.length_penalty if self.length_penalty else logprob


class BeamSearch:
    """Batched beam search; ``model`` is a :class:`speechllm.models.speech_llm.SpeechLLM`."""

    def __init__(self, model, options: DecodingOptions, eos_id: int, suppress_ids: Sequence[int] = ()):
        if options.ctc_weight > 0 and not model.ctc_shares_llm_vocab:
            raise ValueError(
                f"decoding option ctc_weight={options.ctc_weight} needs a CTC head over the LLM's tokens: train "
                "with ctc_token_type: llm (and model_conf.ctc_weight > 0), or decode with ctc_weight: 0"
            )
        self.model = model
        self.options = options
        self.eos_id = eos_id
        self.suppress_ids = [i for i in suppress_ids if i is not None and i != eos_id]
        self.ranker = LengthNormalizedRanker(options.length_penalty)

    def token_limits(self, speech_embed_lengths: torch.Tensor) -> torch.Tensor:
        o = self.options
        limits = torch.full_like(speech_embed_lengths, o.max_length or torch.iinfo(torch.long).max)
        if o.max_length_ratio > 0:
            by_ratio = torch.ceil(speech_embed_lengths.float() * o.max_length_ratio).long()
            limits = torch.minimum(limits, by_ratio)
        return limits.clamp(min=o.min_length + 1)

    def filters(self, limits_per_beam: torch.Tensor) -> List[LogitFilter]:
        o = self.options
        chain: List[LogitFilter] = [ForceEndAtMaxLength(self.eos_id, limits_per_beam)]
        if self.suppress_ids:
            chain.insert(0, SuppressTokens(self.suppress_ids))
        if o.min_length:
            chain.append(MinLength(self.eos_id, o.min_length))
        if o.no_repeat_ngram_size:
            chain.append(NoRepeatNGram(o.no_repeat_ngram_size))
        return chain

    @torch.no_grad()
    def __call__(self, speech: torch.Tensor, speech_lengths: torch.Tensor) -> List[List[Hypothesis]]:
        model, k = self.model, self.options.beam_size
        encoded, encoded_lengths = model.encode(speech, speech_lengths)
        speech_embeds, speech_embeds_lengths = model.speech_embeddings(encoded, encoded_lengths)
        prefix, mask = model.speech_prefix(speech_embeds, speech_embeds_lengths)
        batch = prefix.size(0)
        limits = self.token_limits(speech_embeds_lengths)
        filters = self.filters(limits.repeat_interleave(k))
        joint = None
        if self.options.ctc_weight:
            ctc_in, ctc_lengths = model.ctc_input(encoded, encoded_lengths, speech_embeds, speech_embeds_lengths)
            joint = JointCTCScore(model, ctc_in, ctc_lengths, k, self.options)

        cache = DynamicCache()
        logits = model.run_llm(prefix, mask, past_key_values=cache, logits_to_keep=1).logits[:, -1]
        # All beams of an utterance start identical: expand after the prefix, let only beam 0 compete at step 0.
        cache.batch_repeat_interleave(k)
        logits = logits.repeat_interleave(k, dim=0)
        mask = mask.repeat_interleave(k, dim=0)
        beam_logprob = torch.full((batch, k), -math.inf, device=prefix.device)
        beam_logprob[:, 0] = 0.0
        tokens = torch.zeros(batch * k, 0, dtype=torch.long, device=prefix.device)
        finished: List[List[Hypothesis]] = [[] for _ in range(batch)]

        for step in range(int(limits.max()) + 1):
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            for f in filters:
                f.apply(logprobs, tokens, step)
            if joint is not None:
                logprobs = joint.scores(logprobs, self.eos_id)
            vocab = logprobs.size(-1)
            candidates = (beam_logprob.view(-1, 1) + logprobs).view(batch, k * vocab)
            top_logprob, top_index = candidates.topk(min(2 * k, k * vocab), dim=-1)
            source, next_tokens, next_logprob = [], [], []
            for b in range(batch):
                kept = 0
                for lp, index in zip(top_logprob[b].tolist(), top_index[b].tolist()):
                    if kept == k or lp == -math.inf:
                        break
                    beam, token = divmod(index, vocab)
                    row = b * k + beam
                    if token == self.eos_id:
                        if len(finished[b]) < k:
                            ids = tokens[row].tolist()
                            finished[b].append(Hypothesis(ids, lp, self.ranker.score(lp, len(ids) + 1)))
                        continue
                    source.append(row)
                    next_tokens.append(token)
                    next_logprob.append(lp)
                    kept += 1
                while kept < k:  # fewer live candidates than beams: pad with dead beams
                    source.append(b * k)
                    next_tokens.append(self.eos_id)
                    next_logprob.append(-math.inf)
                    kept += 1
            beam_logprob = torch.tensor(next_logprob, device=prefix.device).view(batch, k)
            alive = (beam_logprob > -math.inf).any(dim=1).tolist()
            if all(len(f) >= k or not live for f, live in zip(finished, alive)):
                break
            source_t = torch.tensor(source, device=prefix.device)
            new_tokens = torch.tensor(next_tokens, device=prefix.device)
            tokens = torch.cat([tokens[source_t], new_tokens[:, None]], dim=1)
            cache.reorder_cache(source_t)
            if joint is not None:
                joint.advance(source_t, new_tokens)
            mask = torch.cat([mask, mask.new_ones(mask.size(0), 1)], dim=1)
            embeds = model.embed_tokens(new_tokens[:, None])
            logits = model.run_llm(embeds, mask, past_key_values=cache, logits_to_keep=1).logits[:, -1]

        results = []
        for b in range(batch):
            # Forced EOS at each utterance's limit guarantees hypotheses; an empty one marks the impossible case.
            hyps = finished[b] or [Hypothesis([], -math.inf, -math.inf)]
            hyps.sort(key=lambda h: h.score, reverse=True)
            results.append(hyps[: self.options.nbest])
        return results
