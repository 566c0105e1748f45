"""A pretrained transformers speech encoder (Whisper, wav2vec2, HuBERT, WavLM) as an ESPnet frontend.

It loads with ``from_pretrained`` from a local folder (or a hub name), returns a learned weighted sum of all its
hidden layers (as S3PRL's featurizer does) and is frozen unless ``freeze: false``.
"""
from __future__ import annotations

from typing import Tuple

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend


class HFSpeechEncoderFrontend(AbsFrontend):
    def __init__(self, name_or_path: str, fs: int = 16000, multilayer_feature: bool = True, freeze: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        if fs != 16000:
            raise ValueError(f"frontend_conf.fs: pretrained speech encoders take 16 kHz audio, got {fs}")
        config = AutoConfig.from_pretrained(name_or_path)
        self.is_whisper = config.model_type == "whisper"
        model = AutoModel.from_pretrained(name_or_path, dtype=torch.float32)  # checkpoints may be fp16
        self.encoder = model.get_encoder() if self.is_whisper else model
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(name_or_path) if self.is_whisper else None
        self.hidden_size = config.d_model if self.is_whisper else config.hidden_size
        layers = (config.encoder_layers if self.is_whisper else config.num_hidden_layers) + 1
        self.layer_weights = torch.nn.Parameter(torch.zeros(layers)) if multilayer_feature else None
        self.freeze = freeze
        if freeze:
            self.encoder.requires_grad_(False)

    def output_size(self) -> int:
        return self.hidden_size

    def _whisper_hidden(self, speech: torch.Tensor, lengths: torch.Tensor):
        # Whisper's encoder only accepts its fixed 30 s window: pad, then keep the frames that cover the audio.
        waves = [s[: int(n)].cpu().numpy() for s, n in zip(speech, lengths)]
        feats = self.feature_extractor(waves, sampling_rate=16000, return_tensors="pt").input_features
        hidden = self.encoder(feats.to(speech.device), output_hidden_states=True).hidden_states
        hop = self.feature_extractor.hop_length * 2  # mel hop, then the encoder's stride-2 convolution
        return hidden, torch.div(lengths + hop - 1, hop, rounding_mode="floor")

    def _wav2vec_hidden(self, speech: torch.Tensor, lengths: torch.Tensor):
        mask = (torch.arange(speech.size(1), device=speech.device)[None] < lengths[:, None]).long()
        normed = (speech - (speech * mask).sum(1, keepdim=True) / lengths[:, None]) * mask
        normed = normed / (normed.pow(2).sum(1, keepdim=True) / lengths[:, None]).sqrt().clamp(min=1e-5)
        hidden = self.encoder(normed, attention_mask=mask, output_hidden_states=True).hidden_states
        return hidden, self.encoder._get_feat_extract_output_lengths(lengths)

    def forward(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        with torch.set_grad_enabled(self.training and not self.freeze):
            hidden, out_lengths = (self._whisper_hidden if self.is_whisper else self._wav2vec_hidden)(speech, lengths)
        if self.layer_weights is None:
            feats = hidden[-1]
        else:
            weights = torch.softmax(self.layer_weights, 0)
            feats = sum(w * h for w, h in zip(weights, hidden))
        out_lengths = out_lengths.clamp(max=feats.size(1))
        return feats[:, : int(out_lengths.max())], out_lengths
