"""CTC prefix scores for label-synchronous joint CTC/LLM beam search (Watanabe et al. 2017, Algorithm 2).

For each beam (a prefix ``h``) the scorer keeps the forward variables ``r_n(t)`` and ``r_b(t)``: the log-probability
that the first ``t + 1`` encoder frames emit ``h`` ending in a non-blank or a blank frame. ``psi(h + c)`` sums the
probability of every frame alignment that emits ``h + c`` followed by anything; the search adds
``psi(h + c) - psi(h)`` as the CTC score of appending ``c``. Only the candidate tokens the LLM ranks highest are
scored (ESPnet's "pre-beam"), so the cost per step is frames x beams x candidates, whatever the vocabulary size.

A CTC head with a vocabulary apart from the LLM's cannot join this search: CTC and LLM tokens must be the same
(``--ctc_token_type llm``: CTC id = LLM id + 1, blank 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NEG_INF = -1e10  # finite, so that inf - inf never makes NaNs


@dataclass
class CTCPrefixState:
    r_nonblank: torch.Tensor  # (T, beams)
    r_blank: torch.Tensor  # (T, beams)
    psi: torch.Tensor  # (beams,) prefix scores of the current prefixes
    last_token: torch.Tensor  # (beams,) CTC id of each prefix's last token; -1 when empty
    length: int = 0  # labels in every prefix (the search is label-synchronous)


class CTCPrefixScorer:
    def __init__(self, logprobs: torch.Tensor, lengths: torch.Tensor, beams_per_utterance: int, blank_id: int = 0):
        """``logprobs`` (B, T, V): CTC log-posteriors; ``lengths`` (B,) valid frames. Beams are utterance-major
        (beam ``i`` belongs to utterance ``i // beams_per_utterance``), as in the beam search."""
        batch, frames, _ = logprobs.shape
        logprobs = logprobs.float().clone()
        # Past its end an utterance emits blanks with probability 1, so that frame T - 1 holds its final scores.
        beyond = torch.arange(frames, device=logprobs.device)[None, :] >= lengths[:, None]
        logprobs[beyond] = NEG_INF
        logprobs[..., blank_id] = logprobs[..., blank_id].masked_fill(beyond, 0.0)
        self.x = logprobs.transpose(0, 1)  # (T, B, V): never copied per beam, whatever V is
        self.utterance = torch.arange(batch, device=logprobs.device).repeat_interleave(beams_per_utterance)
        self.blank_id = blank_id
        self.vocab_size = logprobs.size(-1)

    def initial_state(self) -> CTCPrefixState:
        r_blank = self.x[:, self.utterance, self.blank_id].cumsum(0)  # (T, beams)
        return CTCPrefixState(
            r_nonblank=torch.full_like(r_blank, NEG_INF),
            r_blank=r_blank,
            psi=torch.zeros(r_blank.size(1), device=r_blank.device),
            last_token=torch.full((r_blank.size(1),), -1, dtype=torch.long, device=r_blank.device),
        )

    def final_scores(self, state: CTCPrefixState) -> torch.Tensor:
        """``(beams,)``: log-probability that the whole utterance is exactly each prefix (the score of EOS)."""
        return torch.logaddexp(state.r_nonblank[-1], state.r_blank[-1])

    def extend(self, state: CTCPrefixState, candidates: torch.Tensor):
        """Prefix scores of each beam followed by each of its ``candidates`` (beams, S) CTC ids.

        Returns ``psi`` (beams, S) and the forward variables ``(T, beams, S)`` of every extension."""
        frames = self.x.size(0)
        outside = candidates >= self.vocab_size  # LLM ids the CTC head has no output for
        x_token = self.x[:, self.utterance[:, None], candidates.clamp(max=self.vocab_size - 1)]  # (T, beams, S)
        x_token = x_token.masked_fill(outside[None], NEG_INF)
        x_blank = self.x[:, self.utterance, self.blank_id][:, :, None]  # (T, beams, 1)
        r_sum = torch.logaddexp(state.r_nonblank, state.r_blank)[:, :, None]
        # A repeated token needs a blank in between: its path may not come from a non-blank end of the prefix.
        repeat = candidates == state.last_token[:, None]
        phi = torch.where(repeat[None], state.r_blank[:, :, None], r_sum)  # (T, beams, S)
        r_nonblank = torch.full_like(x_token, NEG_INF)
        r_blank = torch.full_like(x_token, NEG_INF)
        empty = (state.last_token < 0)[:, None]
        r_nonblank[0] = torch.where(empty, x_token[0], torch.full_like(x_token[0], NEG_INF))
        # An extension of a prefix of L labels cannot end before frame L: those forward variables stay -inf.
        for t in range(max(1, state.length), frames):
            r_nonblank[t] = torch.logaddexp(r_nonblank[t - 1], phi[t - 1]) + x_token[t]
            r_blank[t] = torch.logaddexp(r_nonblank[t - 1], r_blank[t - 1]) + x_blank[t]
        start = r_nonblank[0:1]
        psi = torch.logsumexp(torch.cat([start, phi[:-1] + x_token[1:]], dim=0), dim=0)
        return psi, r_nonblank, r_blank

    @staticmethod
    def advance(state: CTCPrefixState, rows: torch.Tensor, columns: torch.Tensor, candidates: torch.Tensor,
                psi: torch.Tensor, r_nonblank: torch.Tensor, r_blank: torch.Tensor) -> CTCPrefixState:
        """The state after beam ``rows[i]`` appended its candidate ``columns[i]`` (both (beams,))."""
        return CTCPrefixState(
            r_nonblank=r_nonblank[:, rows, columns],
            r_blank=r_blank[:, rows, columns],
            psi=psi[rows, columns],
            last_token=candidates[rows, columns],
            length=state.length + 1,
        )
