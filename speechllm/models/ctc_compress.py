"""CTC compression: the encoder frames that the CTC head labels alike are averaged into one, blank frames dropped.

Fed one vector per CTC label (about one per output token, in order) instead of every encoder frame, the LLM gets a
prefix several times shorter that runs in step with the text it writes. This is the "CTC compressor" of decoder-only
ASR (Wu et al. 2023, "On decoder-only architecture for speech-to-text and large language model integration";
Tsunoo et al. 2023, "Decoder-only architecture for speech recognition with CTC prompts"). On the CPU demo it did not
raise the toy LLM's dev accuracy (egs2/synth_an4/speechllm1/README.md).
"""
from __future__ import annotations

from typing import Tuple

import torch


def ctc_label_starts(labels: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0) -> torch.Tensor:
    """``(B, T)`` True where a run of one non-blank CTC label starts (CTC reads "a <b> a" as two tokens, "a a" as
    one): the frames of the greedy transcript's tokens. ``labels`` ``(B, T)`` is the CTC argmax."""
    valid = torch.arange(labels.size(1), device=labels.device)[None, :] < lengths[:, None]
    speech = (labels != blank_id) & valid
    previous_label = torch.nn.functional.pad(labels, (1, 0), value=blank_id)[:, :-1]
    previous_speech = torch.nn.functional.pad(speech, (1, 0), value=False)[:, :-1]
    return speech & ((labels != previous_label) | ~previous_speech)


def ctc_compress(
    frames: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor, blank_id: int = 0
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Average each run of equal non-blank CTC labels into one frame.

    frames ``(B, T, D)``, lengths ``(B,)``, labels ``(B, T)`` (the CTC argmax). Returns ``(B, N, D)`` and the
    number of runs per utterance. An utterance with no non-blank frame (an untrained CTC head, or silence) keeps one
    frame, the mean of all its frames, so that the LLM still gets a prefix and gradients still reach the encoder.
    """
    batch, time, _ = frames.shape
    valid = torch.arange(time, device=frames.device)[None, :] < lengths[:, None]
    speech = (labels != blank_id) & valid
    starts = ctc_label_starts(labels, lengths, blank_id)
    run_counts = starts.sum(1)
    empty = run_counts == 0
    run_index = starts.long().cumsum(1) - 1
    # Empty utterances average all their valid frames into run 0.
    member = speech | (empty[:, None] & valid)
    run_index = torch.where(empty[:, None], torch.zeros_like(run_index), run_index)
    out_lengths = torch.where(empty, torch.ones_like(run_counts), run_counts)
    width = int(out_lengths.max())
    flat_index = (torch.arange(batch, device=frames.device)[:, None] * width + run_index.clamp(min=0))[member]
    sums = frames.new_zeros(batch * width, frames.size(-1)).index_add(0, flat_index, frames[member])
    counts = frames.new_zeros(batch * width).index_add(0, flat_index, frames.new_ones(flat_index.numel()))
    compressed = (sums / counts.clamp(min=1)[:, None]).view(batch, width, -1)
    return compressed, out_lengths
