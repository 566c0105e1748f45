"""Batched beam search over named scorers with weights, one loop for every decoding method.

The model encodes once (``SpeechInput``); the search composes scorers (speechllm.decoding.scorers: the speech LLM
with its KV cache, an AED decoder, the CTC prefix scorer, an external LM label by label or at word boundaries
(speechllm.decoding.delayed_fusion), a length bonus), small logit filters that edit the proposing scorer's next-token
log-probabilities (forbidden tokens, minimum length, n-gram repeats, forced end at the length limit) and a ranker of
finished hypotheses, as openai-whisper's decoder composes its Inference, filters and ranker. The proposer is the
speech LLM (``llm``) or an acoustic model's decoder (``decoder``). Each step:

1. the proposer's log-probabilities go through the filters;
2. every full scorer adds its weighted log-probabilities (a token the filters forbade stays forbidden);
3. partial scorers (CTC, delayed fusion) score only the ``pre_beam`` best tokens of each beam by the full scorers'
   weighted sum (ESPnet's pre-beam), and EOS;
4. each utterance keeps its ``beam_size`` best extensions; hypotheses that chose EOS are finished;
5. every scorer advances its state to the surviving beams.

A hypothesis's ``logprob`` is the weighted sum of its scorers' log-probabilities, EOS included.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence

import torch

from speechllm.decoding.options import DecodingOptions
from speechllm.decoding.scorers import (AEDDecoderScorer, CausalLMScorer, CTCScorer, LengthBonus, Scorer,
                                        SpeechInput, SpeechLLMScorer)

LLM = "llm"  # the speech LLM's scorer: it proposes the candidates and its filters apply
DECODER = "decoder"  # an AED acoustic model's decoder, the proposer of an AM's search


@dataclasses.dataclass
class Hypothesis:
    token_ids: List[int]
    logprob: float  # weighted sum of the scorers' log-probabilities, EOS included
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


class LengthNormalizedRanker:
    def __init__(self, length_penalty: float):
        self.length_penalty = length_penalty

    def score(self, logprob: float, length: int) -> float:
        return logprob / max(length, 1) ** self.length_penalty if self.length_penalty else logprob


class BeamSearch:
    """Batched beam search over ``scorers`` (name -> Scorer) weighted by ``weights`` (name -> float); the full scorer
    named ``proposer`` proposes candidates and its filters apply. ``BeamSearch.for_speech_llm`` and
    ``BeamSearch.for_aed`` build the usual sets from decoding options."""

    def __init__(self, scorers: Dict[str, Scorer], weights: Dict[str, float], options: DecodingOptions, eos_id: int,
                 suppress_ids: Sequence[int] = (), max_positions: Optional[int] = None, proposer: str = LLM):
        if proposer not in scorers or scorers[proposer].partial:
            raise ValueError(f"the search needs a full scorer named '{proposer}' to propose candidates; got "
                             f"{sorted(scorers)}")
        missing = sorted(set(scorers) - set(weights))
        if missing:
            raise ValueError(f"scorers {missing} have no weight")
        other = {name: s.vocab for name, s in scorers.items() if s.vocab != scorers[proposer].vocab}
        if other:
            raise ValueError(f"scorers {sorted(other)} score other label units than the proposer '{proposer}' "
                             f"({scorers[proposer].vocab} vs {other}); scores of different vocabularies cannot be "
                             "added label by label: give them the same tokenizer, or fuse an LM of another "
                             "vocabulary at word boundaries (decoding option lm_fusion: delayed)")
        self.scorers, self.weights, self.proposer = scorers, weights, proposer
        self.options = options
        self.eos_id = eos_id
        self.suppress_ids = [i for i in suppress_ids if i is not None and i != eos_id]
        self.max_positions = max_positions
        self.ranker = LengthNormalizedRanker(options.length_penalty)

    def __str__(self) -> str:
        parts = [f"{name} {type(s).__name__} x {self.weights[name]:g}" for name, s in self.scorers.items()]
        return f"BeamSearch(beam {self.options.beam_size}, proposer {self.proposer}: {', '.join(parts)})"

    @classmethod
    def for_speech_llm(cls, model, options: DecodingOptions, eos_id: int, suppress_ids: Sequence[int] = (),
                       vocab: str = "llm", lm: Optional[torch.nn.Module] = None, lm_vocab: Optional[str] = None,
                       bos_id: Optional[int] = None, prompt_ids: Optional[Sequence[int]] = None) -> "BeamSearch":
        """The speech LLM (weight 1 - ctc_weight), its CTC head (ctc_weight), an external LM (lm_weight) and a
        length bonus, as ``options`` asks. ``vocab`` tags the speech LLM's tokenizer (scorers.vocab_tag);
        ``prompt_ids``: a decoding prompt instead of the model's (decoding option prompt)."""
        if options.ctc_weight > 0 and not model.ctc_shares_llm_vocab:
            raise ValueError(
                f"decoding option ctc_weight={options.ctc_weight} needs a CTC head over the LLM's tokens: train "
                "with ctc_token_type: llm (and model_conf.ctc_weight > 0), or decode with ctc_weight: 0"
            )
        if options.lm_fusion == "delayed":
            raise ValueError("decoding option lm_fusion: delayed fuses an LM of another vocabulary with an acoustic "
                             "model's subword search; the speech LLM fuses an LM over its own tokenizer label by "
                             "label (lm_fusion: label)")
        scorers: Dict[str, Scorer] = {LLM: SpeechLLMScorer(model, vocab, prompt_ids)}
        weights = {LLM: 1.0 - options.ctc_weight}
        if options.ctc_weight > 0:
            scorers["ctc"], weights["ctc"] = CTCScorer(model.ctc_log_probs, vocab, id_offset=1), options.ctc_weight
        if options.lm_weight > 0:
            if lm is None:
                raise ValueError("decoding option lm_weight > 0 needs an external LM (decoding option lm)")
            scorers["lm"] = CausalLMScorer(lm, bos_id if bos_id is not None else eos_id, lm_vocab or vocab)
            weights["lm"] = options.lm_weight
        if options.length_bonus:
            vocab_size = model.llm.get_input_embeddings().weight.size(0)
            scorers["length_bonus"] = LengthBonus(vocab_size, eos_id, vocab)
            weights["length_bonus"] = options.length_bonus
        return cls(scorers, weights, options, eos_id, suppress_ids, model.max_positions)

    @classmethod
    def for_aed(cls, am, options: DecodingOptions, lm: Optional[torch.nn.Module] = None, lm_tokenizer=None,
                lm_vocab: Optional[str] = None) -> "BeamSearch":
        """An AED + CTC acoustic model (speechllm.models.espnet_am.ESPnetAM): its decoder (weight 1 - ctc_weight)
        and CTC head (ctc_weight), as ESPnet's joint CTC/attention decoding; an external LM (lm_weight) label by
        label over the AM's own units (lm_fusion: label; an LM trained on the AM's BPE, speechllm.bin.lm_train
        --token_type bpe) or at word boundaries with the LM's own tokenizer
        (lm_fusion: delayed); a length bonus."""
        from speechllm.decoding.delayed_fusion import DelayedLMScorer
        from speechllm.models.espnet_am import lm_ids_of_am_labels

        if options.prompt:
            raise ValueError("decoding option prompt is read by a speech LLM; an acoustic model reads no prompt: "
                             "remove it")
        vocab, eos_id = am.vocab, am.eos_id
        scorers: Dict[str, Scorer] = {DECODER: AEDDecoderScorer(am.decoder, am.sos_id, vocab)}
        weights = {DECODER: 1.0 - options.ctc_weight}
        if options.ctc_weight > 0:
            scorers["ctc"], weights["ctc"] = CTCScorer(am.ctc_log_probs, vocab, id_offset=0), options.ctc_weight
        if options.lm_weight > 0:
            if lm is None:
                raise ValueError("decoding option lm_weight > 0 needs an external LM (decoding option lm)")
            if options.lm_fusion == "delayed":
                scorers["lm"] = DelayedLMScorer(lm, lm_tokenizer, am.token_list, vocab, special=am.special_ids,
                                                interval=options.lm_fusion_interval)
            else:  # an LM over the AM's own BPE (its ids mapped), or refused below as other units
                lm_ids = lm_ids_of_am_labels(am.token_list, lm_tokenizer)
                scorers["lm"] = (CausalLMScorer(lm, lm_tokenizer.bos_token_id, vocab, lm_ids) if lm_ids else
                                 CausalLMScorer(lm, am.sos_id, lm_vocab or ""))
            weights["lm"] = options.lm_weight
        if options.length_bonus:
            scorers["length_bonus"] = LengthBonus(len(am.token_list), eos_id, vocab)
            weights["length_bonus"] = options.length_bonus
        return cls(scorers, weights, options, eos_id, [am.tokenizer.blank_id], proposer=DECODER)

    def token_limits(self, speech_lengths: torch.Tensor) -> torch.Tensor:
        o = self.options
        limits = torch.full_like(speech_lengths, o.max_length or torch.iinfo(torch.long).max)
        if o.max_length_ratio > 0:
            by_ratio = torch.ceil(speech_lengths.float() * o.max_length_ratio).long()
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

    def step_scores(self, tokens: torch.Tensor, step: int, filters: List[LogitFilter]) -> torch.Tensor:
        """Weighted scores ``(beams, vocab)`` of every next token; -inf for what may not follow."""
        proposed = self.scorers[self.proposer].scores()
        for f in filters:
            f.apply(proposed, tokens, step)
        forbidden = proposed == -math.inf
        total = self.weights[self.proposer] * proposed.masked_fill(forbidden, 0.0)  # 0 * -inf: NaN with weight 0
        for name, scorer in self.scorers.items():
            if name != self.proposer and not scorer.partial:
                total = total + self.weights[name] * scorer.scores()
        total = total.masked_fill(forbidden, -math.inf)
        partial = [(name, s) for name, s in self.scorers.items() if s.partial]
        if not partial:
            return total
        # Partial scorers see only the best candidates by the full scorers' weighted sum (ESPnet's pre-beam on
        # "full") and EOS; the rest drop out.
        pre_beam = self.options.ctc_pre_beam or max(1, int(1.5 * self.options.beam_size))
        top = total.topk(min(pre_beam, total.size(-1)), dim=-1)
        candidates, live = top.indices, top.values > -math.inf
        picked = top.values
        for name, scorer in partial:
            picked = picked + self.weights[name] * scorer.partial_scores(candidates)
        joint = torch.full_like(total, -math.inf)
        joint.scatter_(1, candidates, torch.where(live, picked, torch.full_like(picked, -math.inf)))
        eos = total[:, self.eos_id]
        for name, scorer in partial:
            eos = eos + self.weights[name] * scorer.end_scores()
        joint[:, self.eos_id] = torch.where(forbidden[:, self.eos_id], torch.full_like(eos, -math.inf), eos)
        return joint

    @torch.no_grad()
    def __call__(self, speech: SpeechInput) -> List[List[Hypothesis]]:
        k, batch = self.options.beam_size, speech.batch_size
        device = speech.encoded.device
        for scorer in self.scorers.values():
            scorer.start(speech, k)
        limits = self.token_limits(speech.speech_lengths)
        if self.max_positions:  # the transcript stops where the LLM's context ends
            limits = torch.minimum(limits, self.max_positions - 1 - self.scorers[self.proposer].prefix_lengths)
        filters = self.filters(limits.repeat_interleave(k))
        # All beams of an utterance start identical: only beam 0 competes at step 0.
        beam_logprob = torch.full((batch, k), -math.inf, device=device)
        beam_logprob[:, 0] = 0.0
        tokens = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
        finished: List[List[Hypothesis]] = [[] for _ in range(batch)]
        # k_ended: an utterance stops once k hypotheses ended, and an ended one frees its beam slot (the 2k best
        # candidates fill k live beams). espnet: an ended hypothesis takes one of the k slots, and the utterance runs
        # on until no beam is left or its length limit (ESPnet's BeamSearch with maxlenratio > 0).
        espnet_rule = self.options.end_rule == "espnet"

        # Utterances still searched (their original indices): one that has finished leaves the batch, so that it
        # costs the scorers nothing while the others run on.
        active = list(range(batch))
        for step in range(int(limits.max()) + 1):
            logprobs = self.step_scores(tokens, step, filters)
            vocab = logprobs.size(-1)
            candidates = (beam_logprob.view(-1, 1) + logprobs).view(len(active), k * vocab)
            top_logprob, top_index = candidates.topk(min(2 * k, k * vocab), dim=-1)
            source, next_tokens, next_logprob, staying = [], [], [], []
            for b, (utterance, row_logprobs, row_indices) in enumerate(
                    zip(active, top_logprob.tolist(), top_index.tolist())):
                ended = finished[utterance]
                kept = taken = 0
                rows, row_tokens, row_kept = [], [], []
                for lp, index in zip(row_logprobs, row_indices):
                    if kept == k or lp == -math.inf or (espnet_rule and taken == k):
                        break
                    taken += 1
                    beam, token = divmod(index, vocab)
                    row = b * k + beam
                    if token == self.eos_id:
                        if espnet_rule or len(ended) < k:
                            ids = tokens[row].tolist()
                            ended.append(Hypothesis(ids, lp, self.ranker.score(lp, len(ids) + 1)))
                        continue
                    rows.append(row)
                    row_tokens.append(token)
                    row_kept.append(lp)
                    kept += 1
                if not rows or (len(ended) >= k and not espnet_rule):
                    continue  # the utterance has finished
                padding = k - kept  # fewer live candidates than beams: dead beams fill the rest
                source += rows + [b * k] * padding
                next_tokens += row_tokens + [self.eos_id] * padding
                next_logprob += row_kept + [-math.inf] * padding
                staying.append(utterance)
            if not staying:
                break
            if len(staying) < len(active):
                active = staying
                filters = self.filters(limits[active].repeat_interleave(k))
            beam_logprob = torch.tensor(next_logprob, device=device).view(len(active), k)
            source_t = torch.tensor(source, device=device)
            new_tokens = torch.tensor(next_tokens, device=device)
            tokens = torch.cat([tokens[source_t], new_tokens[:, None]], dim=1)
            for scorer in self.scorers.values():
                scorer.advance(source_t, new_tokens)

        results = []
        for b in range(batch):
            # Forced EOS at each utterance's limit guarantees hypotheses; an empty one marks the impossible case.
            hyps = finished[b] or [Hypothesis([], -math.inf, -math.inf)]
            hyps.sort(key=lambda h: h.score, reverse=True)
            results.append(hyps[: self.options.nbest])
        return results
