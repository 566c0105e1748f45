"""A pretrained transformers speech encoder (Whisper, wav2vec2, HuBERT, WavLM) as an ESPnet frontend.

It loads with ``from_pretrained`` from a local folder (or a hub name) and returns either a learned weighted sum of
all its hidden layers (as S3PRL's featurizer does, ``multilayer_feature: true``) or one chosen layer (``layer``,
default the last). ``finetune``: ``frozen`` (the default; kept in eval mode, so no dropout), ``lora`` (peft LoRA on
``lora_conf.target_modules``, by default r=8 alpha=16 on q_proj and v_proj, as Pham et al. tune their encoders) or
``full``.

Whisper's encoder was trained on 30 s windows. ``pad_to_window: false`` (the default) runs it over the audio's own
frames only: the positional embeddings are cut to the input's length and padded frames of a batch are masked out of
every attention, so an utterance's output does not depend on what it is batched with, and a 2 s utterance costs
100 encoder frames instead of 1500. ``pad_to_window: true`` feeds the 30 s window as OpenAI's decoder does.
Audio longer than the window is refused, never cut (segment long recordings first).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.frontend.abs_frontend import AbsFrontend

from speechllm.models.llm import LoraOptions, set_finetune_mode
from speechllm.models.weight_files import naming_damaged_files

SAMPLE_RATE = 16000
ENCODER_FINETUNE = ("frozen", "lora", "full")
ENCODER_LORA_DEFAULTS = {"r": 8, "alpha": 16}  # Pham et al. (2406.17272) on the speech encoder
WAV2VEC_LIKE = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer")
SUPPORTED = ("whisper",) + WAV2VEC_LIKE


def load_speech_encoder_config(name_or_path: str, option: str = "frontend_conf.name_or_path"):
    """The model's config, with errors that name the option and say what to give."""
    from transformers import AutoConfig

    folder = Path(name_or_path).expanduser()
    if name_or_path.startswith(("/", ".", "~")) and not folder.is_dir():
        raise FileNotFoundError(f"{option}: '{name_or_path}' is not a folder; give a transformers model folder "
                                "(save_pretrained layout with config.json) or a hub name")
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{option}: '{name_or_path}' has no config.json; give the folder written by "
                                "save_pretrained() of a Whisper/wav2vec2/HuBERT/WavLM model")
    config = AutoConfig.from_pretrained(name_or_path)
    if config.model_type not in SUPPORTED:
        raise ValueError(f"{option}: '{name_or_path}' is a '{config.model_type}' model; the hf_speech_encoder "
                         f"frontend takes one of {list(SUPPORTED)}")
    return config


class HFSpeechEncoderFrontend(AbsFrontend):
    def __init__(
        self,
        name_or_path: str,
        fs: int = SAMPLE_RATE,
        multilayer_feature: bool = True,
        layer: int = -1,
        finetune: str = "frozen",
        lora_conf: Optional[dict] = None,
        pad_to_window: bool = False,
    ):
        super().__init__()
        from transformers import AutoFeatureExtractor, AutoModel

        if fs != SAMPLE_RATE:
            raise ValueError(f"frontend_conf.fs: pretrained speech encoders take 16 kHz audio, got {fs}")
        config = load_speech_encoder_config(name_or_path)
        self.is_whisper = config.model_type == "whisper"
        if pad_to_window and not self.is_whisper:
            raise ValueError("frontend_conf.pad_to_window applies to Whisper encoders only; remove it")
        with naming_damaged_files(name_or_path, "frontend_conf.name_or_path"):
            model = AutoModel.from_pretrained(name_or_path, dtype=torch.float32)  # checkpoints may be fp16
        self.encoder = model.get_encoder() if self.is_whisper else model
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path) if self.is_whisper else None
        self.hidden_size = config.d_model if self.is_whisper else config.hidden_size
        num_layers = (config.encoder_layers if self.is_whisper else config.num_hidden_layers) + 1
        if not -num_layers <= layer < num_layers:
            raise ValueError(f"frontend_conf.layer: {layer} is out of range for {num_layers} hidden states "
                             f"(0 = embeddings ... {num_layers - 1} or -1 = last)")
        self.layer = layer
        self.layer_weights = torch.nn.Parameter(torch.zeros(num_layers)) if multilayer_feature else None
        self.pad_to_window = pad_to_window
        if finetune not in ENCODER_FINETUNE:
            raise ValueError(f"frontend_conf.finetune: '{finetune}' is not one of {list(ENCODER_FINETUNE)}")
        if lora_conf and finetune != "lora":
            raise ValueError(f"frontend_conf.lora_conf is set but frontend_conf.finetune is '{finetune}'; set "
                             "finetune: lora")
        lora = (LoraOptions.from_dict({**ENCODER_LORA_DEFAULTS, **(lora_conf or {})}, "frontend_conf.lora_conf")
                if finetune == "lora" else None)
        self.encoder = set_finetune_mode(self.encoder, finetune, lora, where="frontend_conf")
        self.freeze = finetune == "frozen"
        # Set by a model that injects into this encoder's layers (models/visual_injection.py): the frozen weights
        # still never train, but the gradient flows through them to the injection modules.
        self.passes_gradient = False
        if self.freeze:
            self.encoder.eval()

    def output_size(self) -> int:
        return self.hidden_size

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze:  # a frozen encoder never drops out: its outputs are what a dump of them holds
            self.encoder.eval()
        return self

    @property
    def max_seconds(self) -> float:
        """The longest input the encoder takes (Whisper: its window), or inf."""
        if not self.is_whisper:
            return float("inf")
        return self.feature_extractor.n_samples / SAMPLE_RATE

    # ---- Whisper --------------------------------------------------------------------------------------------
    def _log_mel(self, waves: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Each utterance's log-mel on its own (so that batching changes nothing), zero-padded: (B, 80, T)."""
        extractor = self.feature_extractor
        padding = "max_length" if self.pad_to_window else "longest"
        mels = [extractor(w.cpu().numpy(), sampling_rate=SAMPLE_RATE, padding=padding, truncation=False,
                          return_tensors="pt").input_features[0] for w in waves]
        lengths = torch.tensor([len(w) // extractor.hop_length for w in waves])
        width = max(m.size(-1) for m in mels)
        return torch.stack([F.pad(m, (0, width - m.size(-1))) for m in mels]), lengths

    def _whisper_hidden(self, speech: torch.Tensor, lengths: torch.Tensor):
        longest = int(lengths.max()) / SAMPLE_RATE
        if longest > self.max_seconds:
            raise ValueError(f"an utterance of {longest:.1f} s is longer than Whisper's {self.max_seconds:.0f} s "
                             "window; segment long recordings (e.g. by voice activity) before this frontend")
        mel, mel_lengths = self._log_mel([s[: int(n)] for s, n in zip(speech, lengths)])
        mel = mel.to(speech.device)
        mel_lengths = mel_lengths.to(speech.device)
        out_lengths = (mel_lengths + 1) // 2  # the stride-2 convolution
        enc = self.encoder
        x = F.gelu(enc.conv1(mel))
        if not self.pad_to_window:
            # Zero past each utterance's end, as its own zero padding would be, before the stride-2 convolution.
            x = x * (torch.arange(x.size(-1), device=x.device)[None] < mel_lengths[:, None])[:, None]
        x = F.gelu(enc.conv2(x)).transpose(1, 2)
        frames = x.size(1)
        x = x + enc.embed_positions.weight[:frames]
        mask = None
        if not self.pad_to_window:
            padded = torch.arange(frames, device=x.device)[None] >= out_lengths[:, None]  # (B, T)
            mask = torch.zeros(x.size(0), 1, frames, frames, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(padded[:, None, None, :], torch.finfo(x.dtype).min)
        hidden = [x]
        for encoder_layer in enc.layers:
            x = encoder_layer(x, mask)
            hidden.append(x)
        hidden[-1] = enc.layer_norm(x)  # what Whisper's decoder reads
        return hidden, out_lengths

    # ---- wav2vec2 family ---------------------------------------------------------------------------------------
    def _wav2vec_hidden(self, speech: torch.Tensor, lengths: torch.Tensor):
        mask = (torch.arange(speech.size(1), device=speech.device)[None] < lengths[:, None]).long()
        normed = (speech - (speech * mask).sum(1, keepdim=True) / lengths[:, None]) * mask
        normed = normed / (normed.pow(2).sum(1, keepdim=True) / lengths[:, None]).sqrt().clamp(min=1e-5)
        hidden = self.encoder(normed, attention_mask=mask, output_hidden_states=True).hidden_states
        return hidden, self.encoder._get_feat_extract_output_lengths(lengths)

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(self.training and (self.passes_gradient or not self.freeze)):
            hidden, out_lengths = (self._whisper_hidden if self.is_whisper else self._wav2vec_hidden)(speech, lengths)
        if self.layer_weights is None:
            feats = hidden[self.layer]
        else:
            weights = torch.softmax(self.layer_weights, 0)
            feats = sum(w * h for w, h in zip(weights, hidden))
        out_lengths = out_lengths.clamp(max=feats.size(1))
        return feats[:, : int(out_lengths.max())], out_lengths
