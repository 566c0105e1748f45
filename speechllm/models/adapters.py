"""Adapters: from encoder frames to LLM input embeddings, downsampling in time.

Every adapter maps ``(B, T, input_size)`` with lengths to ``(B, ceil(T / downsample), output_size)`` with lengths;
``output_size`` is the LLM's hidden size, filled in by the task. Register new ones in ``ADAPTERS``.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


class Conv1dMLPAdapter(torch.nn.Module):
    """Conv1d with stride ``downsample`` (a learned frame-stacking), then a two-layer MLP to the LLM width."""

    def __init__(
        self,
        input_size: int,
        output_size: int,
        downsample: int = 4,
        kernel_size: int = 0,
        hidden_size: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        if downsample < 1:
            raise ValueError(f"speech_adapter_conf.downsample must be >= 1, got {downsample}")
        self.downsample = downsample
        self.kernel_size = kernel_size or downsample
        if self.kernel_size < downsample:
            raise ValueError(
                f"speech_adapter_conf.kernel_size ({self.kernel_size}) < downsample ({downsample}) would skip frames"
            )
        self.conv = torch.nn.Conv1d(input_size, hidden_size, self.kernel_size, stride=downsample)
        self.mlp = torch.nn.Sequential(
            torch.nn.GELU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden_size, output_size),
            torch.nn.GELU(),
            torch.nn.Linear(output_size, output_size),
        )

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + self.downsample - 1, self.downsample, rounding_mode="floor")

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out_frames = -(-x.size(1) // self.downsample)
        # Pad so that every input frame lands in some window and short inputs still give one frame.
        needed = (out_frames - 1) * self.downsample + self.kernel_size
        x = F.pad(x, (0, 0, 0, max(0, needed - x.size(1))))
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)[:, :out_frames]
        return self.mlp(y), self.output_lengths(lengths)


ADAPTERS = {"conv1d_mlp": Conv1dMLPAdapter}
