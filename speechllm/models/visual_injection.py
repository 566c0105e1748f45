"""Visual injection into a frozen speech foundation model (SFM), as UASR-LLM (arXiv 2510.22961) does: lip features
enter the hidden states of chosen SFM layers, so that one frozen SFM hears audio, reads lips, or both.

* ``VisualInjection``: one small module per chosen layer, run on that layer's *input* by a forward pre-hook (as
  ``models/cross_attention.py`` attaches its blocks to the LLM: no module of the SFM is replaced, its weights stay
  where they are and never train). ``kind``:

  - ``gated_add``: ``h + tanh(g) * proj(LN(v))``, ``v`` the visual features resampled to the SFM's frame rate;
  - ``cross_attention``: ``h + tanh(g) * xattn(LN(h), LN(v))``, each SFM frame attending to the visual frames
    within ``window`` frames of its own time (the band keeps the time alignment that plain attention would lose).

  Every gate starts at 0: the untrained injected SFM is exactly the SFM. The visual features of the current batch
  reach the hooks through ``with injection.visual(features, lengths, present): run the SFM``; ``with
  injection.without_visual():`` runs the SFM alone (the clean targets of stage 1); an injected layer run outside
  both is an error, not a silent audio-only model. ``detach()`` removes the hooks.
* ``resample_visual``: 25 fps visual features to the SFM's frame rate (50 for Whisper's encoder and for
  HuBERT/WavLM/wav2vec2; ``sfm_fps`` for the toolkit's own encoders after subsampling), frame centres aligned in
  time, nearest or linear.
* ``ModalityDropout``: each training utterance becomes audio-only (ASR: no visual injection), video-only (VSR: the
  audio replaced by silence or weak noise) or both (AVSR), with configured probabilities.
* ``AudioCorruption`` and ``injection_pretraining_loss``: stage 1, the injected SFM on corrupted audio (noise
  mixed, a span masked, or no audio at all) with the video learns to give the frozen SFM's representations of the
  clean audio.
* ``task_prompt``: the LLM instruction of each mode.

Each configurable class takes its keys as constructor arguments (their defaults are the config's defaults);
``from_conf`` checks a config mapping against them with ``check_conf_keys``.
"""
from __future__ import annotations

import contextlib
import inspect
import math
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from speechllm.tasks.conf_types import check_conf_keys

MODES = ("asr", "vsr", "avsr")  # audio only, video only, both: the index is the mode's id in tensors
ASR, VSR, AVSR = range(3)
CORRUPTIONS = ("clean", "noise", "mask", "missing")
INJECTION_KINDS = ("gated_add", "cross_attention")
RESAMPLE_METHODS = ("nearest", "linear")
VIDEO_ONLY_AUDIO = ("silence", "noise")
VISUAL_FPS = 25.0  # lip ROIs (speechllm.data.video.ROI_FPS)

# Where speech models keep their layers: transformers Whisper encoder (``layers``) and WhisperModel
# (``encoder.layers``), HuBERT/WavLM/wav2vec2 (``encoder.layers``), HFSpeechEncoderFrontend (``encoder.layers`` or
# ``encoder.encoder.layers``), ESPnet encoders (``encoders``).
SFM_LAYER_PATHS = ("layers", "encoder.layers", "model.encoder.layers", "encoder.encoder.layers", "encoders",
                   "encoder.encoders")


# ---- configuration ----------------------------------------------------------------------------------------------
def signature_defaults(target: Callable, given: Sequence[str] = ()) -> dict:
    """The keyword defaults of a class's constructor or a function, less the arguments the code fills in."""
    function = target.__init__ if inspect.isclass(target) else target
    return {name: p.default for name, p in inspect.signature(function).parameters.items()
            if p.default is not inspect.Parameter.empty and name not in given}


def checked_conf(option: str, target: Callable, conf: Optional[dict], given: Sequence[str] = ()) -> dict:
    """``conf`` completed with ``target``'s defaults; an unknown key or a value of the wrong type is an error that
    names ``option`` and the valid keys."""
    return check_conf_keys(option, {} if conf is None else conf, signature_defaults(target, given))


# ---- finding the SFM's layers and frame rate --------------------------------------------------------------------
def sfm_layers(sfm: torch.nn.Module, option: str = "visual_injection_conf") -> torch.nn.Module:
    """The SFM's list of transformer layers, in order (a ModuleList, or ESPnet's MultiSequential)."""
    base = sfm.get_base_model() if hasattr(sfm, "get_base_model") else sfm  # under peft's wrapper
    for path in SFM_LAYER_PATHS:
        module = base
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, (torch.nn.ModuleList, torch.nn.Sequential)) and len(module):
            return module
    raise ValueError(f"{option}: cannot find the layers of {type(base).__name__} (looked for "
                     f"{', '.join(SFM_LAYER_PATHS)}); use a Whisper/HuBERT/WavLM/wav2vec2 encoder or an ESPnet "
                     "encoder, or add the path of its layers to speechllm.models.visual_injection.SFM_LAYER_PATHS")


def _find_config(sfm: torch.nn.Module):
    for module in (sfm, getattr(sfm, "encoder", None)):
        config = getattr(module, "config", None)
        if getattr(config, "model_type", None):
            return config
    return None


def sfm_frame_rate(sfm: torch.nn.Module, sample_rate: int = 16000) -> Optional[float]:
    """Frames per second of a transformers SFM's layers (Whisper 50, wav2vec2 family 16 kHz / 320 = 50); None
    for other models (ESPnet encoders: 100 / subsampling, which the config must give)."""
    config = _find_config(sfm)
    if config is None:
        return None
    if config.model_type == "whisper":
        return 50.0  # 10 ms mel hop, then the encoder's stride-2 convolution
    if hasattr(config, "conv_stride"):
        return sample_rate / math.prod(config.conv_stride)
    return None


def sfm_hidden_size(sfm: torch.nn.Module) -> int:
    config = _find_config(sfm)
    for key in ("d_model", "hidden_size"):
        if config is not None and getattr(config, key, None):
            return int(getattr(config, key))
    if callable(getattr(sfm, "output_size", None)):
        return int(sfm.output_size())
    raise ValueError(f"cannot tell the hidden size of {type(sfm).__name__} (no config.d_model/hidden_size, no "
                     "output_size()); build VisualInjection(..., sfm_hidden_size=...) and attach() it yourself")


# ---- resampling -------------------------------------------------------------------------------------------------
def resampled_lengths(lengths: torch.Tensor, source_fps: float, target_fps: float) -> torch.Tensor:
    """Frames at ``target_fps`` that cover ``lengths`` frames at ``source_fps`` (at least 1 per utterance)."""
    seconds = lengths.double() / source_fps
    return torch.ceil(seconds * target_fps - 1e-6).long().clamp(min=1)


def source_positions(frames: int, source_fps: float, target_fps: float, device=None) -> torch.Tensor:
    """Where each target frame's centre falls, in source frames (source frame ``k`` is centred at ``k``)."""
    return (torch.arange(frames, device=device, dtype=torch.float64) + 0.5) * (source_fps / target_fps) - 0.5


def resample_visual(features: torch.Tensor, lengths: torch.Tensor, target_frames: Optional[int] = None,
                    source_fps: float = VISUAL_FPS, target_fps: float = 50.0,
                    method: str = "nearest") -> Tuple[torch.Tensor, torch.Tensor]:
    """``(B, T, D)`` at ``source_fps`` -> ``(B, target_frames, D)`` at ``target_fps``, and the new lengths.

    Each target frame takes the source frame(s) at the same time (frame centres aligned; ``nearest``: the closest
    one, ``linear``: the two around it weighted by distance), within the utterance's own frames only. Frames past
    the new length (``ceil(seconds * target_fps)``, cut to ``target_frames``) are zero. ``target_frames``: the
    SFM's frame count for the batch (default: the longest new length)."""
    if method not in RESAMPLE_METHODS:
        raise ValueError(f"visual_injection_conf.resample: '{method}' is not one of {list(RESAMPLE_METHODS)}")
    lengths = lengths.to(features.device)
    new_lengths = resampled_lengths(lengths, source_fps, target_fps)
    if target_frames is None:
        target_frames = int(new_lengths.max())
    new_lengths = new_lengths.clamp(max=target_frames)
    last = (lengths - 1).clamp(min=0)[:, None].double()  # (B, 1): the utterance's last source frame
    positions = source_positions(target_frames, source_fps, target_fps, features.device)[None]
    positions = torch.minimum(positions.clamp(min=0.0), last)  # (B, T')

    def frames_at(index: torch.Tensor) -> torch.Tensor:  # (B, T') source frame indices -> (B, T', D)
        return torch.gather(features, 1, index[..., None].expand(-1, -1, features.size(-1)))

    if method == "nearest":
        out = frames_at(torch.floor(positions + 0.5).long())
    else:
        low = torch.floor(positions).long()
        high = torch.minimum(low + 1, last.long())
        weight = (positions - low).to(features.dtype)[..., None]
        out = frames_at(low) * (1 - weight) + frames_at(high) * weight
    valid = torch.arange(target_frames, device=features.device)[None] < new_lengths[:, None]
    return out * valid[..., None].to(out.dtype), new_lengths


class VisualBatch:
    """The visual features of the batch the SFM is running on, as the injection modules read them: resampled to
    the SFM's frame count (``aligned``), or as the band of nearby visual frames of each SFM frame (``nearby``).
    ``present`` ``(B,)``: utterances with video; the others get no injection at all (audio-only)."""

    def __init__(self, features: torch.Tensor, lengths: torch.Tensor, present: Optional[torch.Tensor],
                 visual_fps: float, sfm_fps: float, resample: str):
        if features.dim() != 3:
            raise ValueError(f"visual features must be (batch, frames, dims), got shape {tuple(features.shape)}")
        self.features = features
        self.lengths = lengths.to(features.device)
        if present is None:
            present = torch.ones(features.size(0), dtype=torch.bool)
        self.present = present.to(features.device, torch.bool)
        self.visual_fps = visual_fps
        self.sfm_fps = sfm_fps
        self.resample = resample
        self._aligned: Dict[int, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._nearby: Dict[Tuple[int, int], torch.Tensor] = {}

    def check_batch(self, hidden: torch.Tensor) -> None:
        if hidden.size(0) != self.features.size(0):
            raise ValueError(f"an injected SFM layer runs on a batch of {hidden.size(0)} but the visual features "
                             f"given to injection.visual() are a batch of {self.features.size(0)}")

    def aligned(self, frames: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(B, frames, D)`` visual features at the SFM's rate and ``(B, frames)`` where they are valid."""
        if frames not in self._aligned:
            out, lengths = resample_visual(self.features, self.lengths, frames, self.visual_fps, self.sfm_fps,
                                           self.resample)
            valid = torch.arange(frames, device=out.device)[None] < lengths[:, None]
            self._aligned[frames] = (out, valid & self.present[:, None])
        return self._aligned[frames]

    def nearby(self, frames: int, window: int) -> torch.Tensor:
        """``(B, frames, T_video)``: the valid visual frames within ``window`` frames of each SFM frame's time."""
        if (frames, window) not in self._nearby:
            centre = source_positions(frames, self.visual_fps, self.sfm_fps, self.features.device)
            video_frames = torch.arange(self.features.size(1), device=self.features.device)
            near = (video_frames[None, :] - centre[:, None]).abs() <= window + 0.5  # (frames, T_video)
            valid = video_frames[None] < self.lengths[:, None]  # (B, T_video)
            self._nearby[(frames, window)] = near[None] & valid[:, None] & self.present[:, None, None]
        return self._nearby[(frames, window)]


# ---- injection modules ------------------------------------------------------------------------------------------
class GatedAddition(torch.nn.Module):
    """``h + tanh(gate) * proj(LN(v))`` on the frames with video; the gate starts at 0."""

    def __init__(self, visual_size: int, hidden_size: int, dropout: float = 0.0):
        super().__init__()
        self.norm = torch.nn.LayerNorm(visual_size)
        self.dropout = torch.nn.Dropout(dropout)
        self.projection = torch.nn.Linear(visual_size, hidden_size)
        self.gate = torch.nn.Parameter(torch.zeros(()))

    def forward(self, hidden: torch.Tensor, visual: VisualBatch) -> torch.Tensor:
        features, valid = visual.aligned(hidden.size(1))
        update = self.projection(self.dropout(self.norm(features.to(self.projection.weight.dtype))))
        update = torch.tanh(self.gate) * update * valid[..., None]
        return hidden + update.to(hidden.dtype)


class GatedCrossAttention(torch.nn.Module):
    """``h + tanh(gate) * xattn(LN(h), LN(v))``: each SFM frame attends to the visual frames within ``window`` of
    its time; frames with none (past the video's end, or no video) are left as they are. The gate starts at 0."""

    def __init__(self, visual_size: int, hidden_size: int, num_heads: int = 4, window: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"visual_injection_conf.num_heads: {num_heads} does not divide the SFM's hidden size "
                             f"{hidden_size}")
        if window < 0:
            raise ValueError(f"visual_injection_conf.window must be >= 0 (video frames each side), got {window}")
        self.num_heads = num_heads
        self.window = window
        self.hidden_norm = torch.nn.LayerNorm(hidden_size)
        self.visual_norm = torch.nn.LayerNorm(visual_size)
        self.query = torch.nn.Linear(hidden_size, hidden_size)
        self.key = torch.nn.Linear(visual_size, hidden_size)
        self.value = torch.nn.Linear(visual_size, hidden_size)
        self.output = torch.nn.Linear(hidden_size, hidden_size)
        self.dropout = torch.nn.Dropout(dropout)
        self.gate = torch.nn.Parameter(torch.zeros(()))

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(x.size(0), x.size(1), self.num_heads, -1).transpose(1, 2)  # (B, heads, T, D/heads)

    def forward(self, hidden: torch.Tensor, visual: VisualBatch) -> torch.Tensor:
        allowed = visual.nearby(hidden.size(1), self.window)  # (B, T_sfm, T_video)
        dtype = self.query.weight.dtype
        video = self.visual_norm(visual.features.to(dtype))
        query = self.heads(self.query(self.hidden_norm(hidden.to(dtype))))
        key, value = self.heads(self.key(video)), self.heads(self.value(video))
        scores = query @ key.transpose(-1, -2) / math.sqrt(query.size(-1))
        scores = scores.masked_fill(~allowed[:, None], float("-inf"))
        # A frame with no visual frame in reach has only -inf scores: its weights are NaN, set to 0 (no update).
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        attended = (self.dropout(weights) @ value).transpose(1, 2).reshape(hidden.shape[0], hidden.shape[1], -1)
        update = torch.tanh(self.gate) * self.output(attended) * allowed.any(-1)[..., None]
        return hidden + update.to(hidden.dtype)


_WITHOUT_VISUAL = object()  # the hooks' state inside injection.without_visual()


class VisualInjection(torch.nn.Module):
    """Injection modules before the SFM layers ``layers`` (default: every ``every``-th layer from the first).
    ``visual_size``, ``sfm_hidden_size`` and ``sfm_num_layers`` come from the visual frontend and the SFM
    (``for_sfm`` reads them); the rest is ``visual_injection_conf``. ``sfm_fps`` is checked against the SFM's own
    frame rate where the SFM tells it (transformers models)."""

    def __init__(self, visual_size: int, sfm_hidden_size: int, sfm_num_layers: int,
                 layers: Optional[Sequence[int]] = None, every: int = 1, kind: str = "gated_add",
                 num_heads: int = 4, window: int = 2, visual_fps: float = VISUAL_FPS, sfm_fps: float = 50.0,
                 resample: str = "nearest", dropout: float = 0.0):
        super().__init__()
        option = "visual_injection_conf"
        if kind not in INJECTION_KINDS:
            raise ValueError(f"{option}.kind: '{kind}' is not one of {list(INJECTION_KINDS)}")
        if resample not in RESAMPLE_METHODS:
            raise ValueError(f"{option}.resample: '{resample}' is not one of {list(RESAMPLE_METHODS)}")
        if every < 1:
            raise ValueError(f"{option}.every must be >= 1, got {every}")
        if visual_fps <= 0 or sfm_fps <= 0:
            raise ValueError(f"{option}.visual_fps and sfm_fps must be > 0, got {visual_fps} and {sfm_fps}")
        if layers is not None and (not isinstance(layers, (list, tuple))
                                   or not all(isinstance(i, int) and not isinstance(i, bool) for i in layers)):
            raise ValueError(f"{option}.layers: expected a list of layer indices, got {layers!r}")
        self.layers: List[int] = list(range(0, sfm_num_layers, every)) if layers is None else sorted(set(layers))
        bad = [i for i in self.layers if not 0 <= i < sfm_num_layers]
        if bad or not self.layers:
            raise ValueError(f"{option}.layers: {list(layers or [])} must be indices of the SFM's {sfm_num_layers} "
                             f"layers (0..{sfm_num_layers - 1}); index i injects into the input of layer i")
        self.sfm_num_layers = sfm_num_layers
        self.kind = kind
        self.visual_fps = float(visual_fps)
        self.sfm_fps = float(sfm_fps)
        self.resample = resample
        if kind == "gated_add":
            blocks = [GatedAddition(visual_size, sfm_hidden_size, dropout) for _ in self.layers]
        else:
            blocks = [GatedCrossAttention(visual_size, sfm_hidden_size, num_heads, window, dropout)
                      for _ in self.layers]
        self.blocks = torch.nn.ModuleList(blocks)
        self.hook_calls = [0] * len(self.layers)  # runs of each block: what the tests and a debugger read
        self._handles: list = []
        self._batch = None  # a VisualBatch, _WITHOUT_VISUAL, or None outside both context managers

    @classmethod
    def for_sfm(cls, sfm: torch.nn.Module, visual_size: int, conf: Optional[dict] = None,
                option: str = "visual_injection_conf") -> "VisualInjection":
        """Built from ``conf`` for ``sfm`` (its layer count and hidden size read from it) and attached to it."""
        given = ("visual_size", "sfm_hidden_size", "sfm_num_layers")
        conf = checked_conf(option, cls, conf, given)
        num_layers = len(sfm_layers(sfm, option))
        injection = cls(visual_size=visual_size, sfm_hidden_size=sfm_hidden_size(sfm), sfm_num_layers=num_layers,
                        **conf)
        injection.attach(sfm)
        return injection

    # ---- hooks ------------------------------------------------------------------------------------------------
    def attach(self, sfm: torch.nn.Module) -> None:
        """Forward pre-hooks on the chosen layers of ``sfm``: each runs its block on the layer's input."""
        if self._handles:
            raise RuntimeError("this VisualInjection is already attached to an SFM; call detach() first")
        layers = sfm_layers(sfm)
        if len(layers) != self.sfm_num_layers:
            raise ValueError(f"visual injection was built for {self.sfm_num_layers} SFM layers but "
                             f"{type(sfm).__name__} has {len(layers)}")
        rate = sfm_frame_rate(sfm)
        if rate is not None and abs(rate - self.sfm_fps) > 1e-6:
            raise ValueError(f"visual_injection_conf.sfm_fps: {self.sfm_fps:g} but {type(sfm).__name__}'s layers "
                             f"run at {rate:g} frames per second; set sfm_fps: {rate:g}")
        for block_index, layer_index in enumerate(self.layers):
            self._handles.append(layers[layer_index].register_forward_pre_hook(self._hook(block_index),
                                                                               with_kwargs=True))

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _hook(self, block_index: int):
        def inject(module, args, kwargs):
            if self._batch is None:
                raise RuntimeError("an SFM layer with visual injection ran without visual features: run the SFM "
                                   "inside `with injection.visual(features, lengths, present):`, or inside "
                                   "`with injection.without_visual():` for the audio-only SFM")
            if self._batch is _WITHOUT_VISUAL:
                return None
            self.hook_calls[block_index] += 1
            block = self.blocks[block_index]
            if not args:
                kwargs["hidden_states"] = block(kwargs["hidden_states"], self._batch)
                return args, kwargs
            first = args[0]
            if isinstance(first, tuple):  # ESPnet encoders with relative positions pass (x, pos_emb)
                first = (self._run(block, first[0]),) + tuple(first[1:])
            else:
                first = self._run(block, first)
            return (first,) + tuple(args[1:]), kwargs
        return inject

    def _run(self, block: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        self._batch.check_batch(hidden)
        return block(hidden, self._batch)

    @contextlib.contextmanager
    def visual(self, features: torch.Tensor, lengths: torch.Tensor,
               present: Optional[torch.Tensor] = None) -> Iterator[None]:
        """Within this block the SFM's injected layers read ``features`` ``(B, T_video, visual_size)`` at
        ``visual_fps`` with ``lengths``; ``present`` ``(B,)`` bool (default all): utterances without it run as the
        plain SFM (audio-only)."""
        previous = self._batch
        self._batch = VisualBatch(features, lengths, present, self.visual_fps, self.sfm_fps, self.resample)
        try:
            yield
        finally:
            self._batch = previous

    @contextlib.contextmanager
    def without_visual(self) -> Iterator[None]:
        """Within this block the SFM runs exactly as it was, as if nothing were attached."""
        previous = self._batch
        self._batch = _WITHOUT_VISUAL
        try:
            yield
        finally:
            self._batch = previous


# ---- modality dropout -------------------------------------------------------------------------------------------
def check_probabilities(option: str, probabilities: Dict[str, float]) -> None:
    negative = [k for k, p in probabilities.items() if p < 0]
    if negative:
        raise ValueError(f"{option}.{negative[0]}: a probability must be >= 0, got {probabilities[negative[0]]}")
    total = sum(probabilities.values())
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"{option}: {' + '.join(probabilities)} = {total:g}; they must add up to 1")


def draw(probabilities: Sequence[float], batch: int, generator: Optional[torch.Generator]) -> torch.Tensor:
    """``batch`` indices drawn with ``probabilities`` (CPU; the caller moves them)."""
    edges = torch.tensor(list(probabilities), dtype=torch.float64).cumsum(0)
    uniform = torch.rand(batch, generator=generator, dtype=torch.float64)
    return torch.bucketize(uniform, edges[:-1], right=True)


def valid_samples(speech: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    return torch.arange(speech.size(1), device=speech.device)[None] < lengths.to(speech.device)[:, None]


class ModalityDropout:
    """In training, each utterance is drawn audio-only (ASR), video-only (VSR) or audio-visual (AVSR) with
    ``audio_only_prob`` / ``video_only_prob`` / ``audio_visual_prob`` (``modality_dropout_conf``). Video-only
    replaces the waveform by ``video_only_audio``: ``silence`` (zeros) or ``noise`` (white noise of standard
    deviation ``noise_std``), so nothing of the speech reaches the SFM; audio-only gives the utterance no visual
    injection (``present`` False)."""

    def __init__(self, audio_only_prob: float = 0.25, video_only_prob: float = 0.25,
                 audio_visual_prob: float = 0.5, video_only_audio: str = "silence", noise_std: float = 0.01):
        option = "modality_dropout_conf"
        check_probabilities(option, {"audio_only_prob": audio_only_prob, "video_only_prob": video_only_prob,
                                     "audio_visual_prob": audio_visual_prob})
        if video_only_audio not in VIDEO_ONLY_AUDIO:
            raise ValueError(f"{option}.video_only_audio: '{video_only_audio}' is not one of {list(VIDEO_ONLY_AUDIO)}")
        if noise_std < 0:
            raise ValueError(f"{option}.noise_std must be >= 0, got {noise_std}")
        self.probabilities = (audio_only_prob, video_only_prob, audio_visual_prob)  # in the order of MODES
        self.video_only_audio = video_only_audio
        self.noise_std = noise_std

    @classmethod
    def from_conf(cls, conf: Optional[dict], option: str = "modality_dropout_conf") -> "ModalityDropout":
        return cls(**checked_conf(option, cls, conf))

    def draw_modes(self, batch: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``(batch,)`` mode ids (indices into MODES)."""
        return draw(self.probabilities, batch, generator)

    def apply(self, speech: torch.Tensor, lengths: torch.Tensor, modes: torch.Tensor,
              generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The waveforms ``(B, samples)`` of each utterance's mode and ``present`` ``(B,)``: whether its visual
        features are injected. Decoding calls it with every utterance in the decoding task's mode."""
        modes = modes.to(speech.device)
        video_only = modes == VSR
        if bool(video_only.any()):
            if self.video_only_audio == "silence":
                replacement = torch.zeros_like(speech)
            else:
                noise = torch.randn(speech.shape, generator=generator, dtype=speech.dtype)
                valid = valid_samples(speech, lengths)
                valid = valid.view(valid.shape + (1,) * (speech.dim() - 2))  # dumped features: (B, T, D)
                replacement = noise.to(speech.device) * self.noise_std * valid
            shape = (-1,) + (1,) * (speech.dim() - 1)
            speech = torch.where(video_only.view(shape), replacement, speech)
        return speech, modes != ASR

    def __call__(self, speech: torch.Tensor, lengths: torch.Tensor, generator: Optional[torch.Generator] = None
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(speech, present, modes)`` for a training batch."""
        modes = self.draw_modes(speech.size(0), generator).to(speech.device)
        speech, present = self.apply(speech, lengths, modes, generator)
        return speech, present, modes


def modes_for_task(task: str, batch: int) -> torch.Tensor:
    """Every utterance in one decoding task's mode (``asr``, ``vsr`` or ``avsr``)."""
    if task not in MODES:
        raise ValueError(f"decoding task '{task}' is not one of {list(MODES)}")
    return torch.full((batch,), MODES.index(task), dtype=torch.long)


def task_prompt(mode: Union[int, str], asr: str = "Transcribe the audio.",
                vsr: str = "Transcribe the lip movements.",
                avsr: str = "Transcribe the audio and the lip movements.") -> str:
    """The LLM instruction of a mode (its name or id); ``asr``/``vsr``/``avsr`` are the config's prompts
    (``checked_conf("model_conf.task_prompts", task_prompt, conf, given=("mode",))``)."""
    name = MODES[int(mode)] if not isinstance(mode, str) else mode
    if name not in MODES:
        raise ValueError(f"mode '{mode}' is not one of {list(MODES)}")
    return {"asr": asr, "vsr": vsr, "avsr": avsr}[name]


# ---- stage 1: injection pretraining -----------------------------------------------------------------------------
class AudioCorruption:
    """Stage 1's corrupted audio, drawn per utterance (``audio_corruption_conf``): ``clean_prob`` left as it is,
    ``noise_prob`` mixed with noise at an SNR drawn in [``snr_low``, ``snr_high``] dB (the given noise waveforms,
    e.g. babble, or white noise), ``mask_prob`` one span of up to ``mask_fraction`` of it zeroed, ``missing_prob``
    all zeros (the video alone must give the clean audio's representations)."""

    def __init__(self, clean_prob: float = 0.1, noise_prob: float = 0.4, mask_prob: float = 0.25,
                 missing_prob: float = 0.25, snr_low: float = -5.0, snr_high: float = 10.0,
                 mask_fraction: float = 0.5):
        option = "audio_corruption_conf"
        check_probabilities(option, {"clean_prob": clean_prob, "noise_prob": noise_prob, "mask_prob": mask_prob,
                                     "missing_prob": missing_prob})
        if snr_low > snr_high:
            raise ValueError(f"{option}: snr_low ({snr_low}) > snr_high ({snr_high})")
        if not 0 < mask_fraction <= 1:
            raise ValueError(f"{option}.mask_fraction must be in (0, 1], got {mask_fraction}")
        self.probabilities = (clean_prob, noise_prob, mask_prob, missing_prob)  # in the order of CORRUPTIONS
        self.snr_low = snr_low
        self.snr_high = snr_high
        self.mask_fraction = mask_fraction

    @classmethod
    def from_conf(cls, conf: Optional[dict], option: str = "audio_corruption_conf") -> "AudioCorruption":
        return cls(**checked_conf(option, cls, conf))

    def __call__(self, speech: torch.Tensor, lengths: torch.Tensor, noise: Optional[torch.Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(corrupted, kinds)``: waveforms ``(B, samples)`` of the same lengths and each one's corruption id
        (an index into CORRUPTIONS). ``noise``: ``(B, samples)`` noise waveforms (default: white noise)."""
        batch, samples = speech.shape
        kinds = draw(self.probabilities, batch, generator)
        valid = valid_samples(speech, lengths)
        out = speech.clone()
        for i, kind in enumerate(kinds.tolist()):
            n = int(lengths[i])
            if CORRUPTIONS[kind] == "noise":
                source = (noise[i, :n] if noise is not None
                          else torch.randn(n, generator=generator, dtype=speech.dtype).to(speech.device))
                snr = self.snr_low + (self.snr_high - self.snr_low) * float(torch.rand(1, generator=generator))
                speech_power = speech[i, :n].pow(2).mean().clamp(min=1e-10)
                noise_power = source.pow(2).mean().clamp(min=1e-10)
                out[i, :n] = speech[i, :n] + source * torch.sqrt(speech_power / (noise_power * 10 ** (snr / 10)))
            elif CORRUPTIONS[kind] == "mask":
                span = max(1, int(n * self.mask_fraction * float(torch.rand(1, generator=generator))))
                start = int(torch.randint(0, max(1, n - span + 1), (1,), generator=generator))
                out[i, start:start + span] = 0.0
            elif CORRUPTIONS[kind] == "missing":
                out[i] = 0.0
        return out * valid, kinds


def injection_pretraining_loss(run_sfm: Callable[[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]],
                               injection: VisualInjection, clean: torch.Tensor, corrupted: torch.Tensor,
                               lengths: torch.Tensor, visual: torch.Tensor, visual_lengths: torch.Tensor,
                               present: Optional[torch.Tensor] = None, distance: str = "l1") -> torch.Tensor:
    """Stage 1's loss: the distance between the injected SFM's output on ``corrupted`` audio with the video and
    the plain SFM's output on the ``clean`` audio (the target: no injection, no gradient), averaged over the valid
    frames and dimensions. ``run_sfm(speech, lengths) -> (hidden (B, T, D), hidden_lengths)`` runs the SFM, e.g. a
    frontend's forward; it must keep gradients through the SFM (its weights still do not train)."""
    if distance not in ("l1", "l2"):
        raise ValueError(f"injection_pretraining_conf.distance: '{distance}' is not one of ['l1', 'l2']")
    with torch.no_grad(), injection.without_visual():
        target, target_lengths = run_sfm(clean, lengths)
    with injection.visual(visual, visual_lengths, present):
        predicted, _ = run_sfm(corrupted, lengths)
    frames = min(target.size(1), predicted.size(1))
    difference = predicted[:, :frames] - target[:, :frames].detach()
    per_frame = (difference.abs() if distance == "l1" else difference.pow(2)).mean(-1)  # (B, frames)
    valid = torch.arange(frames, device=per_frame.device)[None] < target_lengths.to(per_frame.device)[:, None]
    return (per_frame * valid).sum() / valid.sum().clamp(min=1)
