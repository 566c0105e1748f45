"""A CTC head on the speech embeddings the LLM reads, scored against the LLM's own token embeddings.

``model_conf.ctc_head: llm_embeddings``. The logit of token v at speech position t is the dot product of the speech
embedding s_t with the LLM's input embedding of v (times a learned scale); the blank has a learned vector of its own.
Its loss therefore pulls each speech embedding towards the embedding of the token being spoken, in the space the
LLM reads, which a frozen LLM can then read almost as text. It runs at the adapter's rate (12.5 Hz after 4x
downsampling of 50 Hz features), where a linear head on the encoder would run at 50 Hz with a (vocab x dim) matrix
of its own: 19M parameters for Whisper tiny.en's 384 dims and SmolLM2's 49k tokens, none here.

Vocabulary: the CTC-id convention of speechllm.text.tokenizers (blank 0, CTC id = LLM id + 1), so joint CTC/LLM
decoding works as with the linear head. It offers what the search and the model use of ESPnet's CTC:
``forward`` (loss), ``log_softmax`` and ``argmax``.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F


class EmbeddingCTC(torch.nn.Module):
    def __init__(self, odim: int, token_embeddings: Callable[[], torch.Tensor], blank_token_id: Optional[int] = None):
        """``odim``: blank + LLM tokens; ``token_embeddings()`` returns the LLM's input embedding matrix (V, D),
        looked up at each call, so that a fine-tuned LLM's embeddings are the ones scored against.
        ``blank_token_id``: an LLM token that stands for the blank (its embedding scores the blank, and it is never
        a label itself), for an LLM taught to read CTC paths with it; otherwise the blank has a vector of its own."""
        super().__init__()
        weight = token_embeddings()
        if weight.size(0) < odim - 1:
            raise ValueError(f"ctc_head llm_embeddings: the LLM has {weight.size(0)} token embeddings, fewer than "
                             f"its tokenizer's {odim - 1} tokens")
        self.odim = odim
        self._token_embeddings = token_embeddings  # a getter: the LLM's weights are not this module's
        self.blank_token_id = blank_token_id
        dim = weight.size(1)
        rms = weight.detach().float().pow(2).mean().sqrt().item()
        self.blank = torch.nn.Parameter(torch.randn(dim) * rms) if blank_token_id is None else None
        # Initial logits of unit scale: a dot product of two vectors of RMS r in D dims has std sqrt(D) r^2.
        self.log_scale = torch.nn.Parameter(torch.tensor(-math.log(math.sqrt(dim) * rms * rms)))

    def logits(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """(B, T, odim): blank, then the LLM's tokens in their own order."""
        tokens = self._token_embeddings()[: self.odim - 1].to(hs_pad.dtype)
        blank = self.blank if self.blank_token_id is None else tokens[self.blank_token_id]
        table = torch.cat([blank[None].to(hs_pad.dtype), tokens], dim=0)
        logits = (hs_pad @ table.T) * self.log_scale.exp()
        if self.blank_token_id is not None:  # the blank token is the blank, never a label
            logits[..., self.blank_token_id + 1] = torch.finfo(logits.dtype).min
        return logits

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        return F.log_softmax(self.logits(hs_pad).float(), dim=-1)

    def argmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        return self.logits(hs_pad).argmax(dim=-1)

    def forward(self, hs_pad: torch.Tensor, hlens: torch.Tensor, ys_pad: torch.Tensor,
                ys_lens: torch.Tensor) -> torch.Tensor:
        """CTC loss summed over each utterance, averaged over the batch (as ESPnet's CTC with reduce=True)."""
        logprobs = self.log_softmax(hs_pad).transpose(0, 1)  # (T, B, odim)
        targets = torch.cat([ys[:n] for ys, n in zip(ys_pad, ys_lens)])
        loss = F.ctc_loss(logprobs, targets, hlens, ys_lens, blank=0, reduction="sum", zero_infinity=True)
        return loss / hs_pad.size(0)
