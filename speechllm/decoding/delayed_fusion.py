"""Delayed fusion: an LLM over another vocabulary joins a search over the acoustic model's subword units at word
boundaries (the "combination" paradigm without a shared vocabulary).

The AM searches over its SentencePiece pieces, where ``▁`` starts a word. While a hypothesis spells a word, the LLM
adds nothing; when a candidate starts the next word (or the hypothesis ends), the word just completed is tokenised
by the LLM's own tokenizer (with its leading space, except the first word) and the LLM's log-probability of those
tokens after the hypothesis's earlier words is added, and at EOS also the LLM's end of sentence. Over a whole
hypothesis the added scores sum to ``log P_LLM(words + EOS | BOS)`` computed in one pass, which is what the tests
check, so the result is the same as rescoring complete hypotheses, but applied while the beam is still open.

The interval variant (``interval = N``) fuses only every N-th label instead: the words completed since the last fusion
point are scored together there (and at EOS), which adds the same total later and calls the LLM less often.

Each hypothesis's LLM context is kept as a KV cache keyed by the LLM tokens it has committed: beams sharing a history
share its cache, a word's score is computed once per (history, word), and only the caches of live beams are kept.
"""
from __future__ import annotations

import copy
from typing import Dict, List, Sequence, Tuple

import torch
from transformers import DynamicCache

from speechllm.decoding.scorers import Scorer, SpeechInput

WORD_START = "\u2581"  # SentencePiece's word-start mark


class DelayedLMScorer(Scorer):
    """A partial scorer over the AM's units: ``pieces[i]`` is the spelling of AM label ``i`` (``▁`` starts a word;
    labels in ``special``, e.g. ``<blank>``, ``<unk>``, ``<sos/eos>``, spell nothing); ``interval``: fuse at every
    word boundary (0) or every N-th label."""

    partial = True

    def __init__(self, lm: torch.nn.Module, tokenizer, pieces: Sequence[str], vocab: str, special: Sequence[int] = (),
                 interval: int = 0):
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if bos is None or tokenizer.eos_token_id is None:
            raise ValueError(f"delayed fusion: the LM's tokenizer ({type(tokenizer).__name__}) has no BOS or EOS "
                             "token to frame a sentence with; give an LM whose tokenizer has one")
        if interval < 0:
            raise ValueError(f"delayed fusion: interval must be >= 0 labels (0: every word boundary), got {interval}")
        self.lm, self.tokenizer, self.vocab, self.interval = lm.eval(), tokenizer, vocab, interval
        self.bos_id, self.eos_id = bos, tokenizer.eos_token_id
        special = set(special)
        self.spelling = ["" if i in special else p for i, p in enumerate(pieces)]
        unk = tokenizer.unk_token_id
        if unk is not None:  # a byte-level tokenizer spells anything; others may map characters to <unk>
            unspellable = [p for p in self.spelling if p.strip(WORD_START)
                           and unk in tokenizer(p.strip(WORD_START), add_special_tokens=False)["input_ids"]]
            if unspellable:
                raise ValueError(
                    f"delayed fusion: the LM's tokenizer ({type(tokenizer).__name__}) cannot spell {len(unspellable)} "
                    f"of the AM's pieces (it maps them to {tokenizer.unk_token}), e.g. {unspellable[:5]}: give an LM "
                    "whose tokenizer covers the AM's characters (a byte-level BPE covers all), or train the AM on "
                    "text normalised to the LM's characters")
        self.starts_word = torch.tensor([p.startswith(WORD_START) for p in self.spelling])
        self.device = next(lm.parameters()).device

    # ---- LLM states: (cache after the context, log-probabilities of the next token), keyed by the context ----------
    def _extend(self, context: Tuple[int, ...], new_ids: Sequence[int]) -> float:
        """log P(new_ids | BOS + context); the state after ``context + new_ids`` is kept for the next step."""
        new_ids = tuple(new_ids)
        if (context, new_ids) in self.fresh_scores:
            return self.fresh_scores[context, new_ids]
        cache, next_logprobs = self.states.get(context) or self.fresh_states[context]
        total = 0.0
        if new_ids:
            cache = copy.deepcopy(cache)  # other beams may extend the same context with another word
            ids = torch.tensor([new_ids], device=self.device)
            logits = self.lm(input_ids=ids, past_key_values=cache, use_cache=True).logits[0].float()
            steps = torch.cat([next_logprobs[None], torch.log_softmax(logits[:-1], dim=-1)])
            total = float(steps.gather(1, ids[0, :, None]).sum())
            next_logprobs = torch.log_softmax(logits[-1], dim=-1)
        self.fresh_states[context + new_ids] = (cache, next_logprobs)
        self.fresh_scores[context, new_ids] = total
        return total

    def word_ids(self, first: bool, word: str) -> Tuple[int, ...]:
        """The LLM's tokens of a completed word: with its leading space, unless it is the hypothesis's first
        (tokenised once per search: every step asks again for each beam's word)."""
        key = (first, word)
        if key not in self.tokenized:
            self.tokenized[key] = tuple(self.tokenizer(word if first else " " + word,
                                                       add_special_tokens=False)["input_ids"])
        return self.tokenized[key]

    def completed(self, beam: int) -> Tuple[int, ...]:
        """The beam's unscored words plus the one it is spelling, as LLM tokens (what a word start completes)."""
        context, pending, word = self.context[beam], self.pending[beam], self.word[beam]
        return pending + (self.word_ids(not (context or pending), word) if word else ())

    def fuses_now(self) -> bool:
        """Whether the label chosen in this step is a fusion point: every word boundary, or every N-th label."""
        return self.interval == 0 or (self.labels + 1) % self.interval == 0

    # ---- the scorer interface ------------------------------------------------------------------------------------
    @torch.no_grad()
    def start(self, speech: SpeechInput, beams_per_utterance: int) -> None:
        beams = speech.batch_size * beams_per_utterance
        cache = DynamicCache()
        ids = torch.tensor([[self.bos_id]], device=self.device)
        logits = self.lm(input_ids=ids, past_key_values=cache, use_cache=True).logits[0, -1].float()
        self.states: Dict[Tuple[int, ...], tuple] = {(): (cache, torch.log_softmax(logits, dim=-1))}
        self.fresh_states: Dict[Tuple[int, ...], tuple] = {}  # states and scores computed in this step
        self.fresh_scores: Dict[Tuple[Tuple[int, ...], Tuple[int, ...]], float] = {}
        self.context: List[Tuple[int, ...]] = [()] * beams  # LLM tokens of each beam's scored words
        self.pending: List[Tuple[int, ...]] = [()] * beams  # completed words not scored yet (interval > 0)
        self.word: List[str] = [""] * beams  # the word each beam is spelling
        self.labels = 0  # labels emitted so far (the same for every beam)
        self.tokenized: Dict[Tuple[bool, str], Tuple[int, ...]] = {}

    @torch.no_grad()
    def partial_scores(self, candidates: torch.Tensor) -> torch.Tensor:
        if not self.fuses_now():
            return torch.zeros(candidates.shape, device=candidates.device)
        starts = self.starts_word.to(candidates.device)[candidates.clamp(max=len(self.spelling) - 1)]
        # A candidate that starts a word completes the one being spelled; any other leaves it pending.
        on_start = [self._extend(c, self.completed(b)) for b, c in enumerate(self.context)]
        otherwise = [self._extend(c, p) if p else 0.0 for c, p in zip(self.context, self.pending)]
        on_start, otherwise = (torch.tensor(x, device=candidates.device)[:, None] for x in (on_start, otherwise))
        return torch.where(starts, on_start, otherwise)

    @torch.no_grad()
    def end_scores(self) -> torch.Tensor:
        scores = []
        for beam, context in enumerate(self.context):
            ids = self.completed(beam)
            scores.append(self._extend(context, ids) + self._extend(context + ids, [self.eos_id]))
        return torch.tensor(scores)

    def advance(self, rows: torch.Tensor, new_tokens: torch.Tensor) -> None:
        fuses = self.fuses_now()
        context, pending, word = [], [], []
        for row, token in zip(rows.tolist(), new_tokens.tolist()):
            piece = self.spelling[token] if token < len(self.spelling) else ""
            if piece.startswith(WORD_START) and self.word[row]:  # the word being spelled is complete
                done, spelling = self.completed(row), piece[1:]
            else:
                done, spelling = self.pending[row], self.word[row] + piece.lstrip(WORD_START)
            context.append(self.context[row] + done if fuses else self.context[row])
            pending.append(() if fuses else done)
            word.append(spelling)
        self.context, self.pending, self.word = context, pending, word
        self.labels += 1
        live = set(context)
        self.states = {key: self.states[key] if key in self.states else self.fresh_states[key] for key in live}
        self.fresh_states, self.fresh_scores = {}, {}
