"""The speech LLM: speech encoder -> adapter -> decoder-only LLM, with an optional CTC head on the encoder.

The LLM reads ``[BOS, prompt, speech embeddings, prompt_suffix, text, EOS]`` as input embeddings and is trained to
predict the text and EOS only. With the cross-attention interface (``models/cross_attention.py``) the speech
embeddings are read by gated cross-attention blocks in the LLM's layers instead, and the prefix is only
``[BOS, prompt, prompt_suffix]``. The prefix (everything before the text) is *left*-padded so that in a batch every
text starts at the same position: training then asks the LLM for logits on the text region alone (cheap with a
150k vocabulary), and decoding appends tokens to all utterances in lock-step with one KV cache.

Audio-visual (``visual_frontend`` and ``visual_injection`` given; ``models/visual_injection.py``): lip features are
injected into the layers of the frozen speech foundation model (the SFM: the ``hf_speech_encoder`` frontend, or
the encoder), and each utterance is recognised in one mode, ``asr`` (audio), ``vsr`` (lips) or ``avsr`` (both),
drawn per utterance in training (modality dropout) and chosen by the decoding task; the LLM reads the mode's task
prompt. ``injection_pretraining`` (stage 1) trains the visual parts alone to give, from corrupted audio and the
video, the SFM's representations of the clean audio; no LLM loss.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from espnet2.asr.ctc import CTC
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.torch_utils.device_funcs import force_gatherable
from espnet2.train.abs_espnet_model import AbsESPnetModel

from speechllm.models.adapters import CTCPosteriorAdapter
from speechllm.models.cross_attention import LLMCrossAttention, SpeechMemory
from speechllm.models.ctc_compress import ctc_compress as compress_by_ctc
from speechllm.models.ctc_compress import ctc_label_starts
from speechllm.models.embedding_ctc import EmbeddingCTC
from speechllm.models.matching import matching_loss
from speechllm.models.positions import aligned_prefix_positions
from speechllm.models.pretrained_parts import LeavesOutFrozenPretrained
from speechllm.models.visual_injection import (MODES, AudioCorruption, ModalityDropout, VisualInjection,
                                               injection_pretraining_loss, modes_for_task, sfm_layers)
from speechllm.text.tokenizers import CTC_BLANK_ID

IGNORE_ID = -1  # padding value of integer sequences in ESPnet's collate function
SPEECH_POSITIONS = ("sequential", "aligned")


def injected_sfm(frontend: Optional[torch.nn.Module], encoder: Optional[torch.nn.Module]) -> torch.nn.Module:
    """The speech foundation model that visual injection enters: the frontend when it is a transformer speech
    encoder (hf_speech_encoder), else the encoder."""
    for part in (frontend, encoder):
        if part is not None:
            try:
                sfm_layers(part)
                return part
            except ValueError:
                pass
    raise ValueError("visual_injection_conf: neither the frontend nor the encoder has transformer layers to inject "
                     "into; use frontend: hf_speech_encoder (Whisper, HuBERT, WavLM, wav2vec2) or an encoder")


class SpeechLLM(LeavesOutFrozenPretrained, AbsESPnetModel):
    def __init__(
        self,
        frontend: Optional[AbsFrontend],
        specaug: Optional[AbsSpecAug],
        normalize: Optional[AbsNormalize],
        encoder: Optional[AbsEncoder],
        adapter: torch.nn.Module,
        llm: torch.nn.Module,
        bos_id: Optional[int],
        eos_id: int,
        prompt_ids: Sequence[int] = (),
        prompt_suffix_ids: Sequence[int] = (),
        prompt_variant_ids: Sequence[Sequence[int]] = (),
        ctc: Optional[CTC] = None,
        ctc_weight: float = 0.0,
        ctc_shares_llm_vocab: bool = False,
        lsm_weight: float = 0.0,
        ctc_compress: bool = False,
        length_normalized_loss: bool = False,
        matching_weight: float = 0.0,
        cross_attention: Optional[LLMCrossAttention] = None,
        visual_frontend: Optional[torch.nn.Module] = None,
        visual_injection: Optional[VisualInjection] = None,
        modality_dropout: Optional[ModalityDropout] = None,
        task_prompt_ids: Sequence[Sequence[int]] = (),
        injection_pretraining: bool = False,
        audio_corruption: Optional[AudioCorruption] = None,
        speech_positions: str = "sequential",
        visual_ctc: Optional[CTC] = None,
        visual_ctc_weight: float = 0.0,
    ):
        super().__init__()
        if speech_positions not in SPEECH_POSITIONS:
            raise ValueError(f"model_conf.speech_positions: '{speech_positions}' is not one of {list(SPEECH_POSITIONS)}")
        if speech_positions == "aligned" and (cross_attention is not None or ctc is None or not ctc_shares_llm_vocab
                                              or isinstance(ctc, EmbeddingCTC)):
            raise ValueError("model_conf.speech_positions aligned spreads the speech over the positions of the text "
                             "that the CTC head hears: it needs the prefix interface and a CTC head on the encoder "
                             "over the LLM's tokens (ctc_token_type: llm, model_conf.ctc_weight > 0)")
        if speech_positions == "aligned" and not prompt_suffix_ids:
            raise ValueError("model_conf.speech_positions aligned: the first token is predicted from the element after "
                             "the speech, which must sit at the text's start: set model_conf.prompt_suffix (one "
                             "token is enough, e.g. '<s>' for the toy LLM or ':')")
        if (visual_frontend is None) != (visual_injection is None):
            raise ValueError("an audio-visual model needs both visual_frontend_conf and visual_injection_conf")
        if visual_injection is not None and (modality_dropout is None or len(task_prompt_ids) != len(MODES)):
            raise ValueError(f"an audio-visual model needs a modality dropout and the prompts of {list(MODES)}")
        if visual_injection is not None and prompt_variant_ids:
            raise ValueError("model_conf.prompt_variants: an audio-visual model reads the task prompts of its modes "
                             "(model_conf.task_prompts); remove prompt_variants")
        if injection_pretraining and (visual_injection is None or audio_corruption is None):
            raise ValueError("model_conf.injection_pretraining needs visual_frontend_conf and visual_injection_conf "
                             "(the parts it trains) and audio_corruption_conf")
        if (visual_ctc is None) != (visual_ctc_weight == 0) or visual_ctc_weight < 0 or (
                visual_ctc is not None and visual_frontend is None):
            raise ValueError(f"model_conf.visual_ctc_weight ({visual_ctc_weight}) must be > 0 exactly when the lip "
                             "encoder has a CTC head, which an audio-visual model with a CTC vocabulary builds")
        if not 0.0 <= ctc_weight < 1.0:
            raise ValueError(f"model_conf.ctc_weight must be in [0, 1), got {ctc_weight}")
        if ctc_weight > 0 and ctc is None:
            raise ValueError("model_conf.ctc_weight > 0 needs a CTC vocabulary: --ctc_bpemodel or "
                             "--ctc_token_type llm")
        if ctc_compress and (ctc is None or ctc_weight == 0):
            raise ValueError("model_conf.ctc_compress needs a trained CTC head: set model_conf.ctc_weight > 0")
        # ctc_head llm_embeddings: the CTC head reads the speech embeddings (the adapter's output), not the encoder.
        self.ctc_on_speech_embeddings = isinstance(ctc, EmbeddingCTC)
        if isinstance(adapter, CTCPosteriorAdapter):
            if ctc is None or not ctc_shares_llm_vocab or self.ctc_on_speech_embeddings:
                raise ValueError("speech_adapter ctc_posterior weighs the LLM's embeddings by the CTC head's posteriors "
                                 "over the LLM's tokens: set ctc_token_type: llm and model_conf.ctc_head: encoder")
            adapter.bind(ctc.log_softmax, lambda: llm.get_input_embeddings().weight)
        if ctc_compress and self.ctc_on_speech_embeddings:
            raise ValueError("model_conf.ctc_compress compresses the adapter's input by the CTC head's labels, but "
                             "ctc_head llm_embeddings reads the adapter's output: use ctc_head encoder")
        self.frontend = frontend
        self.specaug = specaug
        self.normalize = normalize
        self.encoder = encoder
        self.adapter = adapter
        self.llm = llm
        self.ctc = ctc
        self.ctc_weight = ctc_weight
        self.ctc_shares_llm_vocab = ctc_shares_llm_vocab  # CTC id = LLM id + 1: joint CTC/LLM decoding works
        self.lsm_weight = lsm_weight
        self.ctc_compress = ctc_compress
        self.length_normalized_loss = length_normalized_loss
        self.matching_weight = matching_weight
        self.eos_id = eos_id
        self.aligned_positions = speech_positions == "aligned"
        self.cross_attention = cross_attention  # None: the speech embeddings are the LLM's prefix
        if cross_attention is not None:
            cross_attention.attach(llm)
        # Speech embeddings enter the LLM at the scale of its own token embeddings: layer-normalised, then times a
        # learned scale that starts at the embeddings' RMS. Unscaled, the adapter's outputs grow to 100x the token
        # embeddings, and a pre-norm LLM then cannot change the speech positions' residual stream.
        # An adapter whose output is made of the LLM's embeddings (ctc_posterior) is at that scale already.
        self.speech_norm = self.speech_scale = None
        if not getattr(adapter, "in_llm_space", False):
            embedding_rms = llm.get_input_embeddings().weight.detach().float().pow(2).mean().sqrt().item()
            hidden_size = llm.get_input_embeddings().weight.size(1)
            self.speech_norm = torch.nn.LayerNorm(hidden_size, elementwise_affine=False)
            self.speech_scale = torch.nn.Parameter(torch.tensor(float(embedding_rms)))
        self.bos_id = bos_id
        prefix_head = self.prompt_head(prompt_ids)
        # RoPE LLMs run past max_position_embeddings but read garbage there: the context is a hard limit here.
        self.max_positions = getattr(llm.config, "max_position_embeddings", None)
        prompt_length = len(prefix_head) + len(prompt_suffix_ids)
        if self.max_positions and prompt_length >= self.max_positions // 2:
            raise ValueError(f"model_conf.prompt and prompt_suffix take {prompt_length} LLM tokens, half or more of "
                             f"the LLM's context of {self.max_positions} positions, leaving too little for speech and "
                             "text: shorten them")
        self.register_buffer("prompt_ids", torch.tensor(prefix_head, dtype=torch.long), persistent=False)
        # Instruction variants: in training each utterance reads the prompt or one of them, drawn uniformly.
        self.num_prompt_variants = len(prompt_variant_ids)
        for i, ids in enumerate(prompt_variant_ids):
            self.register_buffer(f"prompt_variant_{i}", torch.tensor(self.prompt_head(ids), dtype=torch.long),
                                 persistent=False)
        self.register_buffer("prompt_suffix_ids", torch.tensor(list(prompt_suffix_ids), dtype=torch.long),
                             persistent=False)
        self.visual_frontend = visual_frontend
        self.visual_injection = visual_injection
        if visual_injection is not None:
            # A frozen SFM runs without gradients; with injection its weights still never train, but the gradient
            # must flow through its layers to the injection modules.
            injected_sfm(frontend, encoder).passes_gradient = True
        self.modality_dropout = modality_dropout  # in decoding too: the audio a vsr utterance reads instead
        self.injection_pretraining = injection_pretraining
        self.audio_corruption = audio_corruption
        self.visual_ctc, self.visual_ctc_weight = visual_ctc, visual_ctc_weight
        for mode, ids in zip(MODES, task_prompt_ids):
            self.register_buffer(f"task_prompt_{mode}", torch.tensor(self.prompt_head(ids), dtype=torch.long),
                                 persistent=False)

    @property
    def is_audio_visual(self) -> bool:
        return self.visual_injection is not None

    # ---- speech side -------------------------------------------------------------------------------------------
    def extract_feats(self, speech: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend output ``(B, T, D)``. ``speech`` is a waveform batch ``(B, samples)``, or ``(B, T, D)`` already
        computed by a frozen frontend (``speechllm.bin.dump_frontend``), which is then used as it is."""
        speech = speech[:, : lengths.max()]
        if self.frontend is None:
            return speech, lengths
        if speech.dim() == 3:
            if speech.size(-1) != self.frontend.output_size():
                raise ValueError(
                    f"speech features have dimension {speech.size(-1)} but the frontend outputs "
                    f"{self.frontend.output_size()}: they were dumped with another frontend config; rerun the "
                    "frontend dumping stage with this model's config"
                )
            return speech, lengths
        return self.frontend(speech, lengths)

    def encode(self, speech: torch.Tensor, lengths: torch.Tensor, video: Optional[torch.Tensor] = None,
               video_lengths: Optional[torch.Tensor] = None, modes: Optional[torch.Tensor] = None,
               visual: Optional[Tuple[torch.Tensor, torch.Tensor]] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encoder output (what the CTC head and the adapter read) and its lengths. An audio-visual model reads each
        utterance in its mode ``modes`` ``(B,)`` (indices into MODES; default asr): vsr replaces the audio
        (``modality_dropout.apply``), vsr and avsr inject the visual features of ``video`` ``(B, T, 96, 96)``
        (``visual``: the lip encoder's output and lengths, when the caller has them already)."""
        if not self.is_audio_visual:
            if video is not None or modes is not None:
                raise ValueError("this model is audio-only (no visual_frontend_conf/visual_injection_conf): it "
                                 "reads no video and decodes task asr only")
            return self.encode_audio(speech, lengths)
        if speech.dim() == 3:
            raise ValueError("visual injection runs inside the SFM, so an audio-visual model reads audio, not dumped "
                             "frontend outputs: train and decode without --dump_frontend")
        if modes is None:
            modes = modes_for_task("asr", speech.size(0))
        speech, present = self.modality_dropout.apply(speech, lengths, modes)
        if not bool(present.any()):
            with self.visual_injection.without_visual():
                return self.encode_audio(speech, lengths)
        if video is None and visual is None:
            raise ValueError("an audio-visual model decoding task vsr or avsr needs the lip ROIs: give the data name "
                             "'video' (--data_path_and_name_and_type dump/<set>/roi.scp,video,npy)")
        features, feature_lengths = visual if visual is not None else self.visual_frontend(video, video_lengths)
        with self.visual_injection.visual(features, feature_lengths, present):
            return self.encode_audio(speech, lengths)

    def encode_audio(self, speech: torch.Tensor, lengths: torch.Tensor, specaug: bool = True
                     ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Frontend, specaug (in training), normalize and encoder on ``speech``, injected with whatever visual
        features the caller set (``encode``)."""
        feats, feats_lengths = self.extract_feats(speech, lengths)
        if self.specaug is not None and self.training and specaug:
            feats, feats_lengths = self.specaug(feats, feats_lengths)
        if self.normalize is not None:
            feats, feats_lengths = self.normalize(feats, feats_lengths)
        if self.encoder is None:
            return feats, feats_lengths
        encoded, encoded_lengths, _ = self.encoder(feats, feats_lengths)
        return encoded, encoded_lengths

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        return self.llm.get_input_embeddings()(ids)

    def speech_embeddings(
        self, encoded: torch.Tensor, encoded_lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The adapter's output at the scale of the LLM's token embeddings ``(B, N, D)``, and its lengths."""
        if self.ctc_compress:
            with torch.no_grad():
                labels = self.ctc.argmax(encoded)
            encoded, encoded_lengths = compress_by_ctc(encoded, encoded_lengths, labels, blank_id=CTC_BLANK_ID)
        # Frames past an utterance's end hold whatever the frontend made of the batch's padding: zero them, so that
        # the adapter's last window reads what it reads for the utterance alone (or from a dump of its features).
        valid = torch.arange(encoded.size(1), device=encoded.device)[None] < encoded_lengths[:, None]
        encoded = encoded * valid[..., None].to(encoded.dtype)
        speech_embeds, speech_lengths = self.adapter(encoded, encoded_lengths)
        if self.speech_norm is not None:
            speech_embeds = self.speech_norm(speech_embeds) * self.speech_scale
        return speech_embeds.to(self.llm.get_input_embeddings().weight.dtype), speech_lengths

    def prompt_head(self, prompt_ids: Sequence[int]) -> List[int]:
        """``[BOS] + prompt_ids``: what the LLM reads before the speech."""
        return ([self.bos_id] if self.bos_id is not None else []) + [int(i) for i in prompt_ids]

    def task_prompts(self, modes: torch.Tensor) -> List[torch.Tensor]:
        """Each utterance's ``[BOS, task prompt]`` ids of its mode (an audio-visual model)."""
        return [getattr(self, f"task_prompt_{MODES[int(mode)]}") for mode in modes]

    def training_prompts(self, batch: int, modes: Optional[torch.Tensor] = None) -> Optional[List[torch.Tensor]]:
        """Each utterance's ``[BOS, prompt]`` ids: its mode's task prompt (an audio-visual model), or drawn from the
        prompt and its variants; None without either."""
        if modes is not None:
            return self.task_prompts(modes)
        if not self.num_prompt_variants:
            return None
        choices = [self.prompt_ids] + [getattr(self, f"prompt_variant_{i}") for i in range(self.num_prompt_variants)]
        return [choices[int(i)] for i in torch.randint(len(choices), (batch,))]

    def speech_prefix(
        self, speech_embeds: torch.Tensor, speech_lengths: torch.Tensor,
        prompts: Optional[Sequence[torch.Tensor]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ``[BOS, prompt, speech, suffix]`` embeddings ``(B, P, D)`` and their mask ``(B, P)`` (with
        cross-attention ``[BOS, prompt, suffix]``). ``prompts``: each utterance's ``[BOS, prompt]`` ids instead of
        the model's (instruction variants in training; a decoding prompt)."""
        heads = [self.embed_tokens(ids) for ids in prompts] if prompts is not None else None
        head = self.embed_tokens(self.prompt_ids)
        tail = self.embed_tokens(self.prompt_suffix_ids)
        batch = speech_embeds.size(0)
        rows = []
        for i in range(batch):
            n = 0 if self.cross_attention is not None else int(speech_lengths[i])  # cross-attention reads it
            speech = speech_embeds[i, :n]
            rows.append(torch.cat([head if heads is None else heads[i], speech, tail], dim=0))
        width = max(row.size(0) for row in rows)
        prefix = speech_embeds.new_zeros(batch, width, head.size(-1))
        mask = torch.zeros(batch, width, dtype=torch.long, device=speech_embeds.device)
        for i, row in enumerate(rows):
            prefix[i, width - row.size(0):] = row
            mask[i, width - row.size(0):] = 1
        return prefix, mask

    def speech_memory(self, speech_embeds: torch.Tensor, speech_lengths: torch.Tensor) -> Optional[SpeechMemory]:
        """What the cross-attention blocks read (None with the prefix interface)."""
        return None if self.cross_attention is None else SpeechMemory(speech_embeds, speech_lengths)

    def encode_speech(self, speech: torch.Tensor, lengths: torch.Tensor, video: Optional[torch.Tensor] = None,
                      video_lengths: Optional[torch.Tensor] = None, modes: Optional[torch.Tensor] = None):
        """Everything the search's scorers read of a batch, computed once (speechllm.decoding.scorers.SpeechInput);
        ``video``, ``video_lengths`` and ``modes``: as ``encode``."""
        from speechllm.decoding.scorers import SpeechInput

        encoded, encoded_lengths = self.encode(speech, lengths, video, video_lengths, modes)
        speech_embeds, speech_lengths = self.speech_embeddings(encoded, encoded_lengths)
        heard = self.ctc_length(encoded, encoded_lengths) if self.aligned_positions else None
        return SpeechInput(encoded, encoded_lengths, speech_embeds, speech_lengths, heard)

    def ctc_input(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor, speech_embeds: torch.Tensor,
                  speech_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """What the CTC head reads: the encoder output, or the speech embeddings (ctc_head llm_embeddings)."""
        if self.ctc_on_speech_embeddings:
            return speech_embeds, speech_lengths
        return encoded, encoded_lengths

    def ctc_log_probs(self, speech) -> Tuple[torch.Tensor, torch.Tensor]:
        """The CTC head's log-posteriors ``(B, T, V)`` and valid lengths for the search's CTC prefix scorer."""
        ctc_in, lengths = self.ctc_input(speech.encoded, speech.encoded_lengths, speech.speech_embeds,
                                         speech.speech_lengths)
        return self.ctc.log_softmax(ctc_in), lengths

    # ---- LLM side ----------------------------------------------------------------------------------------------
    @staticmethod
    def position_ids(mask: torch.Tensor) -> torch.Tensor:
        """Positions counted over real tokens only, so left padding does not shift them."""
        return (mask.cumsum(-1) - 1).clamp(min=0)

    def prefix_positions(self, prefix_mask: torch.Tensor, speech_lengths: torch.Tensor,
                         text_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Position ids of the left-padded prefix ``(B, P)`` and of each utterance's first text input ``(B,)``.

        sequential: one position per element, the text after the suffix. aligned (``speech_positions``,
        models/positions.py): the speech spread evenly over the positions of the ``text_lengths`` tokens it says
        (fractional rotary positions), so that a rotary head finds each token's speech at a fixed relative distance
        instead of learning the alignment from content alone, which a small LLM trained on little speech does not.
        Training spreads the speech over the transcript's length, decoding over the length the CTC head hears
        (``SpeechInput.heard_lengths``; with ctc_compress, the number of speech embeddings). (Spreading it over the CTC head's length in training too, which is poor in
        the first epochs, lost the gain on the demo: dev accuracy 0.522 after 4 epochs against 0.575.)"""
        if not self.aligned_positions:
            positions = self.position_ids(prefix_mask)
            return positions, positions[:, -1] + 1
        return aligned_prefix_positions(prefix_mask, speech_lengths, len(self.prompt_suffix_ids), text_lengths)

    def positions_with_text(self, prefix_mask: torch.Tensor, speech_lengths: torch.Tensor,
                            text_lengths: torch.Tensor, text_width: int) -> torch.Tensor:
        """``(B, P + text_width)`` position ids of the prefix followed by ``text_width`` text inputs (training, and
        anything that scores a whole transcript at once): the speech spread over the transcript's length."""
        before, start = self.prefix_positions(prefix_mask, speech_lengths, text_lengths)
        text = start[:, None] + torch.arange(text_width, device=prefix_mask.device)[None]
        return torch.cat([before.to(text.dtype), text], dim=1)

    @torch.no_grad()
    def ctc_length(self, encoded: torch.Tensor, encoded_lengths: torch.Tensor) -> torch.Tensor:
        """How many tokens the CTC head hears in each utterance ``(B,)`` (its greedy transcript's length): the text
        length that aligned speech positions assume in decoding."""
        return ctc_label_starts(self.ctc.argmax(encoded), encoded_lengths, CTC_BLANK_ID).sum(-1)

    def run_llm(self, inputs_embeds, attention_mask, past_key_values=None, logits_to_keep: int = 0, position_ids=None,
                memory: Optional[SpeechMemory] = None):
        """The LLM over ``inputs_embeds``; ``memory`` is the speech that the cross-attention interface reads (one row
        per input row)."""
        if position_ids is None:
            position_ids = self.position_ids(attention_mask)
            if past_key_values is not None:
                position_ids = position_ids[:, -inputs_embeds.size(1):]
        if self.cross_attention is not None:
            if memory is None or memory.embeds.size(0) != inputs_embeds.size(0):
                raise ValueError("the cross-attention interface needs the speech memory of every input row")
            self.cross_attention.memory = memory
        try:
            return self.llm(
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                use_cache=past_key_values is not None,
                logits_to_keep=logits_to_keep,
            )
        finally:
            if self.cross_attention is not None:
                self.cross_attention.memory = None

    def targets_with_eos(self, text: torch.Tensor, text_lengths: torch.Tensor) -> torch.Tensor:
        """``(B, T+1)`` of text ids followed by EOS, padded with IGNORE_ID."""
        batch = text.size(0)
        targets = text.new_full((batch, int(text_lengths.max()) + 1), IGNORE_ID)
        for i in range(batch):
            n = int(text_lengths[i])
            targets[i, :n] = text[i, :n]
            targets[i, n] = self.eos_id
        return targets

    def check_context(self, prefix_mask: torch.Tensor, text_lengths: torch.Tensor) -> None:
        """An utterance whose prompt, speech and text do not fit the LLM's context is an error that says the fix."""
        needed = prefix_mask.sum(-1) + text_lengths + 1
        if self.max_positions and int(needed.max()) > self.max_positions:
            i = int(needed.argmax())
            raise ValueError(
                f"an utterance needs {int(needed[i])} LLM positions ({int(prefix_mask[i].sum())} of prompt and speech, "
                f"{int(text_lengths[i]) + 1} of text and EOS), more than the LLM's context of {self.max_positions}: "
                "leave out long utterances (run.sh --max_duration) or downsample more (speech_adapter_conf.downsample)")

    def llm_loss(self, prefix, prefix_mask, text, text_lengths, memory: Optional[SpeechMemory] = None,
                 speech_lengths: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """The LLM's loss and token accuracy on the text after ``prefix``; ``speech_lengths``: the speech
        embeddings' lengths (aligned speech positions need them)."""
        self.check_context(prefix_mask, text_lengths)
        targets = self.targets_with_eos(text, text_lengths)
        target_mask = targets != IGNORE_ID
        # Input text = targets without their last column (the final EOS is predicted, never read).
        inputs = targets[:, :-1].clamp(min=0)
        inputs_embeds = torch.cat([prefix, self.embed_tokens(inputs)], dim=1)
        attention_mask = torch.cat([prefix_mask, target_mask[:, :-1].long()], dim=1)
        position_ids = (self.positions_with_text(prefix_mask, speech_lengths, text_lengths, inputs.size(1))
                        if self.aligned_positions else None)
        # Logits of the last prefix position and every text position predict targets[:, 0..T].
        logits = self.run_llm(inputs_embeds, attention_mask, logits_to_keep=targets.size(1), memory=memory,
                              position_ids=position_ids).logits
        logits = logits.float()
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),
            targets.reshape(-1),
            ignore_index=IGNORE_ID,
            label_smoothing=self.lsm_weight,
            reduction="sum",
        )
        # ESPnet's convention (length_normalized_loss: false): per utterance, summed over its tokens, like its CTC
        # loss, so that ctc_weight weighs two losses of one scale; a per-token mean would make the LLM's about
        # 1/(tokens per utterance) of the CTC head's in the shared encoder's gradient.
        loss = loss / (target_mask.sum().clamp(min=1) if self.length_normalized_loss else targets.size(0))
        correct = (logits.argmax(-1) == targets) & target_mask
        accuracy = correct.sum().float() / target_mask.sum().clamp(min=1)
        return loss, accuracy

    # ---- ESPnet model interface ---------------------------------------------------------------------------------
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        text_ctc: Optional[torch.Tensor] = None,
        text_ctc_lengths: Optional[torch.Tensor] = None,
        video: Optional[torch.Tensor] = None,
        video_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        batch = speech.size(0)
        if self.is_audio_visual and video is None:
            raise ValueError("an audio-visual model trains on lip ROIs: give the data name 'video' "
                             "(--train_data_path_and_name_and_type dump/<set>/roi.scp,video,npy)")
        if self.injection_pretraining:
            return self.pretraining_forward(speech, speech_lengths, video, video_lengths, text_ctc, text_ctc_lengths)
        # The lip encoder runs once for its CTC head and the injection (which would otherwise run it itself).
        visual = self.visual_frontend(video, video_lengths) if self.visual_ctc is not None else None
        modes = None
        if self.is_audio_visual:  # modality dropout in training; validation reads both modalities
            modes = (self.modality_dropout.draw_modes(batch) if self.training
                     else modes_for_task("avsr", batch)).to(speech.device)
        encoded, encoded_lengths = self.encode(speech, speech_lengths, video, video_lengths, modes, visual)
        speech_embeds, speech_embeds_lengths = self.speech_embeddings(encoded, encoded_lengths)
        prompts = self.training_prompts(batch, modes) if self.training or modes is not None else None
        prefix, prefix_mask = self.speech_prefix(speech_embeds, speech_embeds_lengths, prompts)
        loss_llm, accuracy = self.llm_loss(prefix, prefix_mask, text, text_lengths,
                                           memory=self.speech_memory(speech_embeds, speech_embeds_lengths),
                                           speech_lengths=speech_embeds_lengths)
        stats = {"loss_llm": loss_llm.detach(), "acc": accuracy.detach()}
        loss = loss_llm
        if self.ctc is not None and self.ctc_weight > 0:
            if text_ctc is None:
                raise ValueError("model_conf.ctc_weight > 0 but the batch has no 'text_ctc': use the preprocessor")
            text_ctc = text_ctc[:, : max(1, int(text_ctc_lengths.max()))]
            ctc_in, ctc_lengths = self.ctc_input(encoded, encoded_lengths, speech_embeds, speech_embeds_lengths)
            loss_ctc = self.ctc(ctc_in, ctc_lengths, text_ctc, text_ctc_lengths)
            stats["loss_ctc"] = loss_ctc.detach()
            loss = (1 - self.ctc_weight) * loss_llm + self.ctc_weight * loss_ctc
        if self.visual_ctc is not None:
            loss_visual_ctc = self.visual_ctc_loss(visual, text_ctc, text_ctc_lengths)
            stats["loss_visual_ctc"] = loss_visual_ctc.detach()
            loss = loss + self.visual_ctc_weight * loss_visual_ctc
        if self.matching_weight > 0:
            per_utterance = matching_loss(speech_embeds, speech_embeds_lengths,
                                          self.embed_tokens(text.clamp(min=0)), text_lengths)
            loss_matching = per_utterance.sum() / (text_lengths.sum() if self.length_normalized_loss else batch)
            stats["loss_matching"] = loss_matching.detach()
            loss = loss + self.matching_weight * loss_matching
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch), loss.device)
        return loss, stats, weight

    def pretraining_forward(self, speech: torch.Tensor, speech_lengths: torch.Tensor, video: torch.Tensor,
                            video_lengths: torch.Tensor, text_ctc: Optional[torch.Tensor] = None,
                            text_ctc_lengths: Optional[torch.Tensor] = None
                            ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Stage 1: the injected SFM on corrupted audio with the video learns the plain SFM's output on the clean
        audio (plus the lip encoder's own CTC loss, visual_ctc_weight). The noise is babble: the batch's other
        utterances summed (white noise for a batch of one)."""
        batch = speech.size(0)
        speech = speech[:, : int(speech_lengths.max())]
        noise = sum(speech.roll(shift, dims=0) for shift in range(1, min(batch, 4))) if batch > 1 else None
        corrupted, _ = self.audio_corruption(speech, speech_lengths, noise)
        features, feature_lengths = self.visual_frontend(video, video_lengths)
        loss = injection_pretraining_loss(
            lambda audio, lengths: self.encode_audio(audio, lengths, specaug=False), self.visual_injection,
            speech, corrupted, speech_lengths, features, feature_lengths)
        stats = {"loss_injection": loss.detach()}
        if self.visual_ctc is not None:
            loss_visual_ctc = self.visual_ctc_loss((features, feature_lengths), text_ctc, text_ctc_lengths)
            stats["loss_visual_ctc"] = loss_visual_ctc.detach()
            loss = loss + self.visual_ctc_weight * loss_visual_ctc
        stats["loss"] = loss.detach()
        loss, stats, weight = force_gatherable((loss, stats, batch), loss.device)
        return loss, stats, weight

    def visual_ctc_loss(self, visual: Tuple[torch.Tensor, torch.Tensor], text_ctc: Optional[torch.Tensor],
                        text_ctc_lengths: Optional[torch.Tensor]) -> torch.Tensor:
        """The lip encoder's CTC loss on the transcript (``visual``: its output and lengths)."""
        if text_ctc is None:
            raise ValueError("model_conf.visual_ctc_weight > 0 but the batch has no 'text_ctc': use the preprocessor")
        text_ctc = text_ctc[:, : max(1, int(text_ctc_lengths.max()))]
        return self.visual_ctc(visual[0], visual[1], text_ctc, text_ctc_lengths)

    def collect_feats(self, speech: torch.Tensor, speech_lengths: torch.Tensor, **kwargs) -> Dict[str, torch.Tensor]:
        feats, feats_lengths = self.extract_feats(speech, speech_lengths)
        return {"feats": feats, "feats_lengths": feats_lengths}

    # ---- checkpoints: frozen LLM and frontend weights are left out (models/pretrained_parts.py) ------------------
    PRETRAINED_PARTS = ("llm.", "frontend.")
