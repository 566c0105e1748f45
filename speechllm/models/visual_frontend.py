"""The lip encoder of audio-visual recognition: lip ROIs ``(B, T, 96, 96)`` at 25 fps -> ``(B, T, output_size)``.

The shape of auto_avsr's and AV-HuBERT's visual frontend: a 3D convolution over 5 frames (stride 2 in space), batch
norm, activation and a spatial max pool; then a 2D ResNet trunk applied to each frame on its own, and a global
average pool to one vector per frame; then a linear projection to ``output_size``. Time is never subsampled: one
output frame per video frame.

``size``: ``resnet18`` (64-128-256-512 channels, two blocks per stage, about 11 M parameters, as published) or
``tiny`` (16-32-64-128 channels, one block per stage) for CPU demos and tests. ``input_pool``: the ROI averaged over
``input_pool`` x ``input_pool`` pixels before the stem (2: 48 x 48; the convolutions then cost a quarter: CPU demos);
1 (the published shape) reads it whole. ``temporal_layers``: 1-D convolutions over time (``temporal_kernel`` frames,
ReLU) after the projection, the lip encoder's own temporal context beyond the stem's 5 frames (auto_avsr and
AV-HuBERT put a Transformer encoder there; on the synth_av corpus a tiny lip encoder with 2 such layers and a CTC
head left CTC's initial plateau after about 1000 steps, egs2/synth_av/speechllm1/README.md).

The module names (``frontend3D.0``, ``trunk.layer1.0.conv1``, ``...downsample.0``) follow those two projects'
checkpoints, so their lip encoders load with ``init_checkpoint`` and ``checkpoint_prefix`` (e.g.
``encoder.frontend.`` in auto_avsr's; their activation is ``swish`` (auto_avsr) or ``prelu`` (AV-HuBERT)).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

# Channels of the stem and of the four ResNet stages, and residual blocks per stage.
SIZES: Dict[str, Tuple[int, Tuple[int, int, int, int], Tuple[int, int, int, int]]] = {
    "resnet18": (64, (64, 128, 256, 512), (2, 2, 2, 2)),
    "tiny": (16, (16, 32, 64, 128), (1, 1, 1, 1)),
}
ACTIVATIONS = ("relu", "swish", "prelu")
# Grayscale lip-ROI statistics over LRS3 (pixel / 255), the normalisation auto_avsr trains with.
PIXEL_MEAN = 0.421
PIXEL_STD = 0.165


def make_activation(kind: str, channels: int) -> torch.nn.Module:
    if kind == "relu":
        return torch.nn.ReLU()
    if kind == "swish":
        return torch.nn.SiLU()
    return torch.nn.PReLU(num_parameters=channels)


class BasicBlock(torch.nn.Module):
    """Two 3x3 convolutions with batch norm and a residual (a 1x1 strided convolution when the shape changes)."""

    def __init__(self, in_channels: int, channels: int, stride: int, activation_kind: str):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(channels)
        self.relu1 = make_activation(activation_kind, channels)
        self.conv2 = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(channels)
        self.relu2 = make_activation(activation_kind, channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = torch.nn.Sequential(
                torch.nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), torch.nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + residual)


class ResNetTrunk(torch.nn.Module):
    """Four stages of basic blocks (the first keeps the resolution, the others halve it), then a global average."""

    def __init__(self, in_channels: int, stage_channels, blocks_per_stage, activation_kind: str):
        super().__init__()
        for stage, (channels, blocks) in enumerate(zip(stage_channels, blocks_per_stage)):
            stride = 1 if stage == 0 else 2
            layer = [BasicBlock(in_channels, channels, stride, activation_kind)]
            layer += [BasicBlock(channels, channels, 1, activation_kind) for _ in range(blocks - 1)]
            setattr(self, f"layer{stage + 1}", torch.nn.Sequential(*layer))
            in_channels = channels
        self.output_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


class VisualFrontend(torch.nn.Module):
    """``forward(video, lengths) -> (features, lengths)``: ``video`` is ``(B, T, H, W)`` grayscale pixels, uint8 or
    float on the same 0..255 scale (96 x 96 lip ROIs, ``speechllm.data.video.load_roi``); ``features`` is
    ``(B, T, output_size)``, zero past each utterance's length."""

    def __init__(self, output_size: int = 256, size: str = "resnet18", activation: str = "relu",
                 init_checkpoint: str = "", checkpoint_prefix: str = "", input_pool: int = 1,
                 temporal_layers: int = 0, temporal_kernel: int = 5):
        super().__init__()
        if size not in SIZES:
            raise ValueError(f"visual_frontend_conf.size: '{size}' is not one of {list(SIZES)}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"visual_frontend_conf.activation: '{activation}' is not one of {list(ACTIVATIONS)}")
        if output_size < 1:
            raise ValueError(f"visual_frontend_conf.output_size must be >= 1, got {output_size}")
        if input_pool < 1:
            raise ValueError(f"visual_frontend_conf.input_pool must be >= 1 (1: the ROI as it is), got {input_pool}")
        if temporal_layers < 0 or temporal_kernel < 1 or temporal_kernel % 2 == 0:
            raise ValueError(f"visual_frontend_conf: temporal_layers must be >= 0 and temporal_kernel odd and >= 1 "
                             f"(frames centred on each frame), got {temporal_layers} and {temporal_kernel}")
        self.input_pool = input_pool
        stem_channels, stage_channels, blocks_per_stage = SIZES[size]
        self.frontend3D = torch.nn.Sequential(
            torch.nn.Conv3d(1, stem_channels, (5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3), bias=False),
            torch.nn.BatchNorm3d(stem_channels),
            make_activation(activation, stem_channels),
            torch.nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
        )
        self.trunk = ResNetTrunk(stem_channels, stage_channels, blocks_per_stage, activation)
        self.projection = torch.nn.Linear(self.trunk.output_channels, output_size)
        self.temporal = torch.nn.ModuleList(
            torch.nn.Conv1d(output_size, output_size, temporal_kernel, padding=temporal_kernel // 2)
            for _ in range(temporal_layers))
        self._output_size = output_size
        if init_checkpoint:
            load_visual_frontend(self, init_checkpoint, checkpoint_prefix)
        elif checkpoint_prefix:
            raise ValueError("visual_frontend_conf.checkpoint_prefix is set without init_checkpoint; give the "
                             "checkpoint file or remove the prefix")

    @classmethod
    def from_conf(cls, conf: Optional[dict], option: str = "visual_frontend_conf") -> "VisualFrontend":
        """Built from a config mapping: unknown keys and values of the wrong type are errors naming ``option``."""
        from speechllm.models.visual_injection import checked_conf

        return cls(**checked_conf(option, cls, conf))

    def output_size(self) -> int:
        return self._output_size

    def forward(self, video: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if video.dim() != 4:
            raise ValueError(f"the visual frontend takes lip ROIs (batch, frames, height, width), got shape "
                             f"{tuple(video.shape)}")
        batch, frames = video.shape[:2]
        valid = torch.arange(frames, device=video.device)[None] < lengths.to(video.device)[:, None]  # (B, T)
        x = (video.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
        # Padded frames become 0 after normalisation, as the 3D convolution's own zero padding is for an utterance
        # alone: its last frames then see the same neighbours in any batch.
        x = x * valid[:, :, None, None]
        if self.input_pool > 1:
            x = torch.nn.functional.avg_pool2d(x, self.input_pool)
        x = self.frontend3D(x[:, None])  # (B, C, T, H', W')
        x = x.transpose(1, 2).flatten(0, 1)  # each frame on its own through the 2D trunk: (B*T, C, H', W')
        x = self.trunk(x).view(batch, frames, -1)
        x = self.projection(x) * valid[..., None]
        for conv in self.temporal:  # padded frames are zero before each layer, as an utterance's own zero padding
            x = torch.relu(conv(x.transpose(1, 2))).transpose(1, 2) * valid[..., None]
        return x, lengths


def load_visual_frontend(frontend: VisualFrontend, path: str, prefix: str = "") -> None:
    """The lip encoder's weights from a checkpoint file: the keys under ``prefix`` must be exactly the stem's and the
    trunk's (``projection.*`` too if present; otherwise the projection keeps its random initialisation)."""
    option = "visual_frontend_conf.init_checkpoint"
    if not Path(path).is_file():
        raise FileNotFoundError(f"{option}: '{path}' is not a file; give a PyTorch checkpoint (.pt/.pth/.ckpt)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors come in many types
        raise ValueError(f"{option}: '{path}' cannot be read as plain tensors ({error}); save its state dict "
                         "alone with torch.save(checkpoint['model'], 'lip_encoder.pt') and give that file") from None
    for wrapper in ("state_dict", "model", "model_state_dict"):  # Lightning, fairseq, plain training loops
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise ValueError(f"{option}: '{path}' holds a {type(state).__name__}, not a state dict")
    selected = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    if not selected:
        roots = sorted({key.split(".")[0] for key in state})[:10]
        raise ValueError(f"visual_frontend_conf.checkpoint_prefix: no key of '{path}' starts with '{prefix}'; its "
                         f"keys start with {roots} (auto_avsr: 'encoder.frontend.')")
    expected = frontend.state_dict()
    missing = [k for k in expected if k not in selected and not k.startswith(("projection.", "temporal."))
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in selected if k not in expected]
    if missing or unexpected:
        raise ValueError(f"{option}: '{path}' (prefix '{prefix}') does not match visual_frontend_conf (size, "
                         f"activation): missing keys {shorten(missing)}, unexpected keys {shorten(unexpected)}; "
                         "set size/activation to the checkpoint's (auto_avsr: resnet18 swish; AV-HuBERT: resnet18 "
                         "prelu) or fix checkpoint_prefix")
    wrong_shape = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in selected.items()
                   if v.shape != expected[k].shape]
    if wrong_shape:
        raise ValueError(f"{option}: '{path}' has tensors of other shapes: {shorten(wrong_shape)}; set "
                         "visual_frontend_conf.output_size to the checkpoint's projection size or leave the "
                         "projection out of the checkpoint")
    frontend.load_state_dict(selected, strict=False)
    if not any(k.startswith("projection.") for k in selected):
        logging.info(f"{option}: '{path}' has no projection.* weights; the projection starts random")


def shorten(keys: List[str], shown: int = 8) -> str:
    return str(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")
