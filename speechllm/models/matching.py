"""The matching loss of Pham et al. 2024 ("A comprehensive solution to connect speech encoder and large language
model for ASR"): it pulls the adapter's speech embeddings towards the LLM's embeddings of the transcript.

Speech and text differ in length, so each text token first attends (no parameters) over the utterance's speech
embeddings; the attended vector is then compared with the token's own embedding by mean squared error and cosine
distance. The attention scores are cosine similarities over a temperature, not scaled dot products: token
embeddings are small (an RMS of about 0.02 per dimension is common), and dot products of such vectors give an
almost uniform attention, whose output, the mean of the speech vectors, cannot match any one token. The token
embeddings are the target and get no gradient from this loss: it moves the speech side only. A speech prefix that
lives among the token embeddings is one the LLM can read like text, which is what a frozen or lightly tuned LLM
needs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def matching_loss(
    speech: torch.Tensor,
    speech_lengths: torch.Tensor,
    text_embeds: torch.Tensor,
    text_lengths: torch.Tensor,
    mse_weight: float = 1.0,
    cosine_weight: float = 1.0,
    temperature: float = 0.1,
) -> torch.Tensor:
    """Per-utterance loss ``(B,)``, summed over each transcript's tokens.

    speech ``(B, N, D)`` with ``speech_lengths``; text_embeds ``(B, L, D)`` with ``text_lengths``.
    """
    target = text_embeds.detach().to(speech.dtype)
    scores = F.normalize(target, dim=-1) @ F.normalize(speech, dim=-1).transpose(1, 2) / temperature  # (B, L, N)
    speech_mask = torch.arange(speech.size(1), device=speech.device)[None, :] < speech_lengths[:, None]
    scores = scores.masked_fill(~speech_mask[:, None, :], torch.finfo(scores.dtype).min)
    attended = scores.softmax(-1) @ speech  # (B, L, D)
    # The squared error is relative to the embeddings' mean square, so that a weight means the same for any LLM
    # (with small token embeddings a raw MSE would vanish next to the cosine term).
    scale = target.pow(2).mean().clamp(min=1e-12)
    per_token = (mse_weight * (attended - target).pow(2).mean(-1) / scale
                 + cosine_weight * (1 - F.cosine_similarity(attended, target, dim=-1)))
    text_mask = torch.arange(target.size(1), device=speech.device)[None, :] < text_lengths[:, None]
    return (per_token * text_mask).sum(1)
