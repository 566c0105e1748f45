"""ESPnet's DefaultFrontend (STFT -> log-mel filterbank), with every utterance's features independent of the batch.

ESPnet's STFT is centred: each signal is reflect-padded by n_fft // 2 at both ends of the *batch* tensor, so a
shorter utterance's last frames see the zeros of the batch padding where, decoded alone, they see its own samples
reflected. Its last two frames then differ (measured: up to 0.85 in log-mel on 0.5 s of noise in a batch with 1.3 s)
and so can its transcript. Here the samples that follow each utterance are its reflection, as if it were alone.
"""
from __future__ import annotations

from typing import Tuple

import torch
from espnet2.asr.frontend.default import DefaultFrontend


class FbankFrontend(DefaultFrontend):
    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        feats, feats_lengths = super().forward(self.reflect_ends(input, input_lengths), input_lengths)
        # reflect_ends may widen the batch for an utterance ending within n_fft // 2 of the longest: the frames of
        # that extra width belong to no utterance, and the encoder's masks expect max(feats_lengths) frames.
        return feats[:, : int(feats_lengths.max())], feats_lengths

    def reflect_ends(self, input: torch.Tensor, input_lengths: torch.Tensor) -> torch.Tensor:
        """``input`` with the ``n_fft // 2`` samples after each shorter utterance's end set to its reflection,
        as torch.stft(center=True, pad_mode="reflect") pads a signal alone."""
        stft = self.stft
        if stft is None or not stft.center or input.dim() != 2 or input.size(0) == 1:
            return input
        pad = stft.n_fft // 2
        lengths = input_lengths.tolist()
        shorter = [i for i, n in enumerate(lengths) if n < input.size(1)]
        if not shorter:
            return input
        needed = max(lengths[i] for i in shorter) + pad - input.size(1)
        # A copy either way: the caller's batch is not changed.
        input = torch.nn.functional.pad(input, (0, needed)) if needed > 0 else input.clone()
        for i in shorter:
            n = lengths[i]
            if n > pad:  # reflection as torch pads: x[n-2], x[n-3], ... (torch refuses shorter signals alone too)
                input[i, n: n + pad] = input[i, n - pad - 1: n - 1].flip(0)
        return input
