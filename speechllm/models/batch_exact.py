"""Decoding a padded batch exactly as each of its utterances alone, with ESPnet's frontends and encoders.

Two ESPnet parts make an utterance's encoder output depend on the batch it is padded into:

* ``DefaultFrontend``'s STFT pads the signal's ends by reflection; in a batch a shorter utterance's last frames see
  the batch's zero padding instead. ``PerUtteranceFrontend`` runs the frontend on each utterance alone (cheap next to
  the encoder) and pads the features afterwards.
* The ``Conv2dSubsampling*`` input layers slice the mask of the whole padded batch (``mask[:, :, :-2:2]``), so an
  utterance shorter than the batch keeps one or two frames more than alone, computed from padding, which every
  other frame then attends to. ``exact_subsampling_masks`` recomputes each utterance's mask as the layer computes it
  for that utterance alone.

``make_batch_exact(model)`` applies both to a model with ``frontend`` and ``encoder.embed`` (ESPnet's ASR model, the
speech LLM); for decoding: training keeps ESPnet's behaviour.
"""
from __future__ import annotations

import types
from typing import Dict

import torch


class PerUtteranceFrontend(torch.nn.Module):
    """ESPnet's frontend run on each utterance of a padded batch alone, its features padded afterwards."""

    def __init__(self, frontend: torch.nn.Module):
        super().__init__()
        self.frontend = frontend

    def output_size(self) -> int:
        return self.frontend.output_size()

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor):
        if speech.size(0) == 1:
            return self.frontend(speech, lengths)
        feats = [self.frontend(speech[i:i + 1, :n], lengths[i:i + 1])[0][0] for i, n in enumerate(lengths.tolist())]
        feats_lengths = torch.tensor([f.size(0) for f in feats], device=speech.device)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), feats_lengths


# (end cut, step) of each mask slice ``mask[:, :, :-cut:step]`` of ESPnet's subsampling layers, in order: the frames
# an utterance of n frames keeps alone, without running the layer's convolutions again.
MASK_SLICES = {
    "Conv2dSubsampling": ((2, 2), (2, 2)),
    "Conv2dSubsampling1": ((2, 1), (2, 1)),
    "Conv2dSubsampling2": ((2, 2), (2, 1)),
    "Conv2dSubsampling6": ((2, 2), (4, 3)),
    "Conv2dSubsampling8": ((2, 2), (2, 2), (2, 2)),
}


def frames_alone(slices, n: int) -> int:
    for cut, step in slices:
        n = len(range(0, n - cut, step))
    return n


def exact_subsampling_masks(embed: torch.nn.Module) -> None:
    """Make ``embed`` (an ESPnet subsampling layer: ``forward(x, mask) -> (x, mask)``) return, for each utterance,
    the mask it returns for that utterance alone. The instance's ``forward`` is replaced rather than the module
    wrapped: ESPnet's encoders choose their code path by ``isinstance(self.embed, Conv2dSubsampling)``."""
    if getattr(embed, "_exact_masks", False):
        return
    class_forward = type(embed).forward
    slices = MASK_SLICES.get(type(embed).__name__)
    lengths_alone: Dict[int, int] = {}  # input frames -> output frames of an utterance alone (other layers)

    def forward(self, x, x_mask):
        y, y_mask = class_forward(self, x, x_mask)
        if x_mask is None or y_mask is None or x.size(0) == 1:
            return y, y_mask
        out = []
        for n in x_mask[:, 0].sum(-1).tolist():
            if slices is not None:
                out.append(frames_alone(slices, n))
                continue
            if n not in lengths_alone:  # a layer of unknown slicing: ask it, on an utterance of n frames alone
                alone = torch.ones(1, 1, n, dtype=torch.bool, device=x.device)
                lengths_alone[n] = int(class_forward(self, x.new_zeros(1, n, x.size(2)), alone)[1].sum())
            out.append(lengths_alone[n])
        frames = torch.arange(y_mask.size(-1), device=y_mask.device)
        return y, frames[None, None, :] < torch.tensor(out, device=y_mask.device)[:, None, None]

    embed.forward = types.MethodType(forward, embed)
    embed._exact_masks = True


def make_batch_exact(model: torch.nn.Module) -> None:
    from espnet2.asr.frontend.default import DefaultFrontend

    if isinstance(getattr(model, "frontend", None), DefaultFrontend):
        model.frontend = PerUtteranceFrontend(model.frontend)
    embed = getattr(getattr(model, "encoder", None), "embed", None)
    if embed is not None and "Subsampling" in type(embed).__name__:
        exact_subsampling_masks(embed)
