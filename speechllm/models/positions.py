"""Rotary position ids of the speech LLM's left-padded prefix ``[BOS, prompt, speech, suffix]`` when the speech is
*aligned* (``model_conf.speech_positions: aligned``): one place for the rule that SpeechLLM and the toy LLM's
pretraining (speechllm.bin.prepare_tokens) share.

The positions of ``[BOS, prompt, suffix, text]`` count on as if the speech were not there, and the N speech
embeddings are spread evenly over the positions of the L tokens they say: embedding t sits at
``Q + S - 1 + (t + 0.5) L / N`` (Q: BOS and prompt, S: suffix), so the token predicted at position p (by the suffix's
last element for the first token, then by each text token) has its speech around p + 0.5 in every utterance.
"""
from __future__ import annotations

from typing import Tuple

import torch


def aligned_prefix_positions(prefix_mask: torch.Tensor, speech_lengths: torch.Tensor, suffix: int,
                             text_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Position ids ``(B, P)`` (float; 0 on padding) of a left-padded prefix whose rows are ``[head, speech x
    speech_lengths, suffix x suffix]``, and each row's first text position ``(B,)``."""
    batch, width = prefix_mask.shape
    speech_lengths = speech_lengths.to(prefix_mask.device)
    head = prefix_mask.sum(-1) - speech_lengths - suffix
    index = torch.arange(width, device=prefix_mask.device)[None].expand(batch, -1)
    offset = index - (width - prefix_mask.sum(-1))[:, None]  # 0 at each row's first real element
    spoken = (offset >= head[:, None]) & (offset < (head + speech_lengths)[:, None])
    frame = (offset - head[:, None]).float()
    per_frame = text_lengths.to(prefix_mask.device).float().clamp(min=1) / speech_lengths.clamp(min=1).float()
    speech_position = (head + suffix - 1)[:, None].float() + (frame + 0.5) * per_frame[:, None]
    other_position = torch.where(offset >= (head + speech_lengths)[:, None],
                                 offset - speech_lengths[:, None], offset).float()
    positions = torch.where(spoken, speech_position, other_position)
    positions = torch.where(prefix_mask.bool(), positions, torch.zeros_like(positions))
    return positions, (head + suffix).float()
