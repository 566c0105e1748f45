"""N-best rescoring with a causal LM of any tokenizer (the "combination" paradigm's simplest form).

    nbest = read_nbest("exp/m/decode_x/dev")                    # key -> [Candidate(text, score), ...], best first
    lm_scores = lm_logprobs(lm, tokenizer, texts)               # log P_LM(text + EOS | BOS), batched
    best = rescore(nbest, lm_weight=0.3, length_bonus=0.5)      # key -> the candidate with the best combined score

A candidate's combined score is ``score + lm_weight * lm_logprob + length_bonus * words``: ``score`` is what the
first pass wrote (its weighted log-probability), the LM reads the text re-tokenised by its own tokenizer, so the
first pass and the LM need not share label units. ``tune`` picks both weights on a dev set by a grid search.
The layout read is the one stage 9 writes: the 1-best ``text`` and ``score`` in the decode dir, the others in
``<n>best_recog/``.
"""
from __future__ import annotations

import dataclasses
import itertools
import logging
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from speechllm.data.datadir import read_kv
from speechllm.scoring.align import word_error_rate


@dataclasses.dataclass
class Candidate:
    text: str
    score: float  # the first pass's log-probability (weighted sum of its scorers)
    lm_logprob: float = 0.0

    def combined(self, lm_weight: float, length_bonus: float) -> float:
        return self.score + lm_weight * self.lm_logprob + length_bonus * len(self.text.split())


NBest = Dict[str, List[Candidate]]


def _read_ranked(folder: Path) -> Dict[str, Tuple[str, float]]:
    texts, scores = read_kv(folder / "text"), read_kv(folder / "score")
    missing = sorted(set(texts) - set(scores))
    if missing:
        raise ValueError(f"{folder}/score has no score for {len(missing)} utterance(s) of {folder}/text, e.g. "
                         f"{missing[0]}: decode again (stage 9) rather than mixing decodes")
    out = {}
    for key, text in texts.items():
        try:
            out[key] = (text, float(scores[key]))
        except ValueError:
            raise ValueError(f"{folder}/score: utterance {key}: {scores[key]!r} is not a number") from None
    return out


def read_nbest(decode_dir: str, keys: Optional[Sequence[str]] = None) -> NBest:
    """The n-best lists of a decode dir (1-best in the dir, rank n in ``<n>best_recog/``). With ``keys`` (e.g. the
    test set's ids), an utterance without any hypothesis is an error naming the dir."""
    decode_dir = Path(decode_dir)
    if not (decode_dir / "text").is_file():
        raise FileNotFoundError(f"{decode_dir}/text is missing: decode first (stage 9), with nbest > 1 in the "
                                "decoding config for more than one candidate")
    ranks = [decode_dir] + sorted((p for p in decode_dir.glob("*best_recog") if p.name != "1best_recog"),
                                  key=lambda p: int(p.name.split("best")[0]))
    nbest: NBest = {}
    for folder in ranks:
        for key, (text, score) in _read_ranked(folder).items():
            nbest.setdefault(key, []).append(Candidate(text, score))
    if keys is not None:
        missing = [k for k in keys if k not in nbest]
        if missing:
            raise ValueError(f"{decode_dir}: {len(missing)} of {len(keys)} utterances have no hypothesis, e.g. "
                             f"{missing[0]}; decode them (stage 9 reruns the jobs that did not finish)")
    return nbest


@torch.no_grad()
def lm_logprobs(lm: torch.nn.Module, tokenizer, texts: Sequence[str], batch_size: int = 16) -> List[float]:
    """log P(tokens + EOS | BOS) of each text under ``lm``, with the LM's own tokenizer; batched (right padding)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    eos = tokenizer.eos_token_id
    if bos is None or eos is None:
        raise ValueError(f"the LM's tokenizer ({type(tokenizer).__name__}) has neither a BOS nor an EOS token to "
                         "frame a sentence with")
    device = next(lm.parameters()).device
    out: List[float] = []
    for first in range(0, len(texts), batch_size):
        ids = [[bos, *tokenizer(t, add_special_tokens=False)["input_ids"], eos]
               for t in texts[first:first + batch_size]]
        longest = max(len(i) for i in ids)
        batch = torch.full((len(ids), longest), eos, dtype=torch.long, device=device)
        mask = torch.zeros_like(batch)
        for row, seq in enumerate(ids):
            batch[row, :len(seq)] = torch.tensor(seq, device=device)
            mask[row, :len(seq)] = 1
        logits = lm(input_ids=batch, attention_mask=mask).logits[:, :-1].float()
        picked = torch.log_softmax(logits, dim=-1).gather(2, batch[:, 1:, None])[..., 0]
        out += (picked * mask[:, 1:]).sum(1).tolist()
    return out


def add_lm_scores(nbest: NBest, lm: torch.nn.Module, tokenizer, batch_size: int = 16) -> None:
    """Fill every candidate's ``lm_logprob`` (each distinct text scored once)."""
    texts = sorted({c.text for cands in nbest.values() for c in cands})
    scores = dict(zip(texts, lm_logprobs(lm, tokenizer, texts, batch_size)))
    for cands in nbest.values():
        for c in cands:
            c.lm_logprob = scores[c.text]


def rescore(nbest: NBest, lm_weight: float, length_bonus: float = 0.0) -> Dict[str, Candidate]:
    """Each utterance's candidate with the best combined score (the first-pass order breaks ties)."""
    if lm_weight < 0:
        raise ValueError(f"lm_weight must be >= 0, got {lm_weight}")
    return {key: max(cands, key=lambda c: c.combined(lm_weight, length_bonus)) for key, cands in nbest.items()}


def tune(nbest: NBest, refs: Dict[str, str], normalize: Callable[[str], str],
         lm_weights: Sequence[float], length_bonuses: Sequence[float]) -> Tuple[float, float, List[Tuple]]:
    """The (lm_weight, length_bonus) of the grid with the lowest WER on ``refs`` (the smallest weights among equals),
    and the whole grid as (lm_weight, length_bonus, WER) rows."""
    missing = [k for k in nbest if k not in refs]
    if missing:
        raise ValueError(f"{len(missing)} decoded utterances have no reference, e.g. {missing[0]}: tune on the "
                         "decode of the data dir whose text is given")
    keys = sorted(nbest)
    grid = []
    for weight, bonus in itertools.product(lm_weights, length_bonuses):
        best = rescore(nbest, weight, bonus)
        wer, _ = word_error_rate([normalize(refs[k]) for k in keys], [normalize(best[k].text) for k in keys])
        grid.append((weight, bonus, wer))
        logging.info(f"lm_weight {weight:g} length_bonus {bonus:g}: WER {wer:.2f}")
    weight, bonus, _ = min(grid, key=lambda row: (row[2], row[0], abs(row[1])))
    return weight, bonus, grid
