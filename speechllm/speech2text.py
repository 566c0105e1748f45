"""A trained speech LLM, ready to use from Python::

    from speechllm import Speech2Text
    s2t = Speech2Text.from_pretrained("exp/m/packed.zip")      # a packed model, or its unpacked folder
    s2t("a.wav")                                               # -> "the transcript"
    s2t(samples, sample_rate=8000)                             # numpy array or torch tensor, any rate, mono or not
    s2t(["a.wav", "b.flac"], nbest=3, beam_size=8)             # batches of batch_size; n-best lists of (text, score)
    s2t("meeting.wav", segment_seconds=20)                     # long audio: cut at pauses, segments decoded in batches

Audio at another sample rate is resampled (scipy's polyphase filter); several channels are averaged (with a note in
the log). A recording longer than the maximum segment length (``segment_seconds``; default: the model's longest
training utterance, within the frontend's window where it has one, Whisper's 30 s, else 30 s, and at most what fits
in half the LLM's context) is cut into segments at pauses (speechllm.decoding.segment: Silero VAD when installed,
else low-energy points), never truncated; the segments are decoded in batches of ``batch_size`` and their texts
joined in order. ``Speech2Text.decode`` is the low-level call on padded waveform (or dumped feature) batches; it
does not segment.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import List, Optional, Sequence, Union

import humanfriendly
import numpy as np
import torch

from speechllm.decoding.options import TASKS, DecodingOptions
from speechllm.decoding.scorers import vocab_tag
from speechllm.decoding.search import BeamSearch, Hypothesis
from speechllm.decoding.segment import MIN_SEGMENT_SECONDS, Segmenter, default_max_seconds
from speechllm.models.visual_injection import modes_for_task
from speechllm.text.tokenizers import prompt_label_ids

# Model files a folder may hold, in the order they are preferred: an unpacked archive's, then a recipe's.
MODEL_FILES = ("model.pth", "valid.acc.ave.pth", "valid.loss.ave.pth")
AudioInput = Union[str, Path, np.ndarray, torch.Tensor]
VideoInput = Union[str, Path, np.ndarray, torch.Tensor]  # lip ROIs (frames, 96, 96) at 25 fps, or a .npy of them
DEFAULT_SEGMENT_SECONDS = 30.0  # the maximum segment length of a frontend without a window of its own
PROBE_SECONDS = 4.0  # audio encoded once to learn how many LLM positions a second of speech takes


@dataclasses.dataclass
class Transcript:
    """One hypothesis of a whole recording: its segments' hypotheses of the same rank, joined in order."""

    text: str
    token_ids: List[int]
    logprob: float  # summed over the segments
    segments: int = 1


def load_lip_rois(video: VideoInput) -> np.ndarray:
    """Lip ROIs ``(frames, 96, 96)`` from an array or a ``.npy`` file (what utils/extract_lip_roi.sh writes)."""
    if isinstance(video, (str, Path)):
        from speechllm.data.video import load_roi

        if not str(video).endswith(".npy"):
            raise ValueError(f"video {video}: give the lip ROIs as a .npy array (frames, 96, 96) at 25 fps; extract "
                             "them from a video file first with utils/extract_lip_roi.sh")
        video = load_roi(str(video))  # checked as the data-dir contract checks roi.scp files
    rois = video.detach().cpu().numpy() if isinstance(video, torch.Tensor) else np.asarray(video)
    if rois.ndim != 3:
        raise ValueError(f"video: lip ROIs must be shaped (frames, height, width), got {rois.shape}")
    return rois


def load_audio(audio: AudioInput, sample_rate: Optional[int], target_rate: int) -> np.ndarray:
    """Mono float32 samples at ``target_rate`` from a file path, or an array/tensor at ``sample_rate`` (default:
    ``target_rate``) shaped (samples,), (samples, channels) or (channels, samples)."""
    from speechllm.data.audio import resample

    origin = "array"
    if isinstance(audio, (str, Path)):
        import soundfile

        origin = str(audio)
        if sample_rate is not None:
            raise ValueError(f"{origin}: sample_rate is read from the file; give it only with arrays")
        try:
            samples, sample_rate = soundfile.read(origin, dtype="float32", always_2d=True)
        except (OSError, RuntimeError) as error:  # soundfile's LibsndfileError is a RuntimeError
            raise ValueError(f"cannot read audio file '{origin}': {error}") from None
    elif isinstance(audio, (np.ndarray, torch.Tensor)):
        samples = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else audio
        if samples.dtype.kind in "iu":  # integer PCM
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max + 1)
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim == 2 and samples.shape[0] < samples.shape[1]:
            samples = samples.T  # (channels, samples), as torchaudio gives
        if samples.ndim not in (1, 2) or samples.size == 0:
            raise ValueError(f"audio array of shape {tuple(samples.shape)}: expected (samples,) or "
                             "(samples, channels) with at least one sample")
    else:
        raise TypeError(f"cannot transcribe a {type(audio).__name__}: give a file path, a numpy array or a tensor")
    if samples.ndim == 2:
        if samples.shape[1] > 1:
            logging.info(f"{origin}: {samples.shape[1]} channels averaged into one")
        samples = samples.mean(axis=1)
    sample_rate = sample_rate or target_rate
    if sample_rate != target_rate:
        samples = resample(samples, sample_rate, target_rate).astype(np.float32)
    return samples


class Speech2Text:
    """A trained speech LLM, or an AED + CTC acoustic model trained by ESPnet's ASRTask (alone or fused with an LLM:
    the combination paradigm), and its search, ready to call on audio. The kind is read from the training config."""

    def __init__(self, train_config: str, model_file: Optional[str], options: DecodingOptions = DecodingOptions(),
                 device: str = "cpu", dtype: str = "float32", segment_seconds: Optional[float] = None,
                 vad: str = "auto", batch_size: int = 8):
        from speechllm.models.batch_exact import make_batch_exact
        from speechllm.models.espnet_am import ESPnetAM, is_espnet_asr_config

        self.is_am = is_espnet_asr_config(train_config)
        if self.is_am:
            self.model = ESPnetAM.from_files(train_config, model_file, device).to(dtype=getattr(torch, dtype))
            self.tokenizer, args = self.model.tokenizer, self.model.args
        else:
            from speechllm.tasks.speech_llm import SpeechLLMTask, load_label_tokenizer

            model, args = SpeechLLMTask.build_model_from_file(train_config, None, device)
            if model_file:  # strict, unlike ESPnet's loader: a checkpoint of another model must not load silently
                model.load_state_dict(torch.load(model_file, map_location=device, weights_only=True), strict=True)
            make_batch_exact(model)  # a padded batch decodes as each of its utterances alone
            self.model = model.to(dtype=getattr(torch, dtype)).eval()
            self.tokenizer = load_label_tokenizer(args)
        self.args = args
        self.options = options
        self.device = device
        self.dtype = getattr(torch, dtype)
        rate = (args.frontend_conf or {}).get("fs", 16000)  # what the frontend takes; ESPnet configs may say "16k"
        self.sample_rate = int(humanfriendly.parse_size(rate) if isinstance(rate, str) else rate)
        self.longest_train_seconds = getattr(args, "longest_train_seconds", None)  # None in older configs
        self.search = self._search(options)
        logging.info(f"decoding with {self.search}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size  # the most segments (or short recordings) decoded at once
        self.vad = vad
        self.segment_seconds = segment_seconds or None  # None (or 0): default_segment_seconds()
        self._segmenters = {}
        if self.segment_seconds is not None:
            self.segmenter()  # a bad length or vad fails now, not at the first long recording

    def _search(self, options: DecodingOptions) -> BeamSearch:
        suppress = [self.tokenizer.bos_token_id, self.tokenizer.pad_token_id]
        suppress += getattr(self.tokenizer, "suppressed_ids", list)()  # --token_type bpe: the prompt's LLM tokens
        lm = lm_tokenizer = lm_vocab = None
        if options.lm:  # shallow fusion with an external causal LM: label by label, or at word boundaries
            from speechllm.models.llm import load_causal_lm, load_tokenizer

            lm = load_causal_lm(options.lm, finetune="frozen").to(self.device, self.dtype)
            lm_tokenizer = load_tokenizer(options.lm)
            lm_vocab = vocab_tag(lm_tokenizer)
        if options.task != "asr" and not self.is_audio_visual:
            raise ValueError(f"decoding option task {options.task}: this model is audio-only (trained without "
                             "visual_injection_conf); decode it with task asr")
        if self.is_am:
            return BeamSearch.for_aed(self.model, options, lm=lm, lm_tokenizer=lm_tokenizer, lm_vocab=lm_vocab)
        prompt_ids = (prompt_label_ids(self.tokenizer, options.prompt, "decoding option prompt") if options.prompt
                      else None)
        if prompt_ids is None and self.is_audio_visual:  # the prompt of the task, as in training
            from speechllm.tasks.speech_llm import task_prompts

            prompt = task_prompts(self.args)[TASKS.index(options.task)]
            prompt_ids = prompt_label_ids(self.tokenizer, prompt, "model_conf.task_prompts")
        return BeamSearch.for_speech_llm(self.model, options, eos_id=self.tokenizer.eos_token_id,
                                         suppress_ids=suppress, vocab=vocab_tag(self.tokenizer), lm=lm,
                                         lm_vocab=lm_vocab, bos_id=self.tokenizer.bos_token_id,
                                         prompt_ids=prompt_ids)

    @classmethod
    def from_pretrained(cls, path: str, model_file: Optional[str] = None, device: str = "cpu",
                        dtype: str = "float32", segment_seconds: Optional[float] = None, vad: str = "auto",
                        batch_size: int = 8, **decoding) -> "Speech2Text":
        """A packed model (``packed.zip`` of stage 11), its unpacked folder, or a recipe's model dir (with
        ``config.yaml`` and one of MODEL_FILES, or ``model_file``). Other keyword arguments are decoding options.
        ``segment_seconds`` (maximum segment length of long recordings), ``vad`` (auto, silero or none) and
        ``batch_size`` (segments decoded at once): see ``transcribe``."""
        from speechllm.bin.pack import resolve_config, unpack

        path = Path(path)
        options = DecodingOptions.from_dict(decoding, where="Speech2Text.from_pretrained")
        long_form = dict(segment_seconds=segment_seconds, vad=vad, batch_size=batch_size)
        if path.is_file():
            train_config, packed_model = unpack(str(path))
            return cls(train_config, model_file or packed_model, options, device, dtype, **long_form)
        if not (path / "config.yaml").is_file():
            raise FileNotFoundError(f"{path}: neither a packed model (.zip) nor a folder with config.yaml; give "
                                    "exp/<model>/packed.zip (stage 11) or a model dir")
        if model_file is None:
            found = [path / name for name in MODEL_FILES if (path / name).is_file()]
            if not found:
                present = sorted(p.name for p in path.glob("*.pth"))
                raise FileNotFoundError(f"{path} holds none of {list(MODEL_FILES)}; pass model_file= (it has: "
                                        f"{present or 'no .pth file'})")
            model_file = str(found[0])
        packed = (path / "meta.yaml").is_file()  # an unpacked archive: its paths are relative to the folder
        train_config = str(resolve_config(path) if packed else path / "config.yaml")
        return cls(train_config, model_file, options, device, dtype, **long_form)

    @property
    def is_audio_visual(self) -> bool:
        return getattr(self.model, "is_audio_visual", False)

    # ---- low level: padded batches -------------------------------------------------------------------------
    def decode(self, speech: torch.Tensor, lengths: Optional[torch.Tensor] = None,
               search: Optional[BeamSearch] = None, video: Optional[torch.Tensor] = None,
               video_lengths: Optional[torch.Tensor] = None) -> List[List[Hypothesis]]:
        """n-best hypotheses of a padded batch: waveforms (B, samples) or dumped frontend features (B, T, D); an
        audio-visual model reads ``video`` (B, T, 96, 96) lip ROIs too, in the search's decoding task."""
        search = search or self.search
        if speech.dim() == 1:
            speech = speech[None]
        if lengths is None:
            lengths = torch.full((speech.size(0),), speech.size(1), dtype=torch.long)
        visual = {}
        if self.is_audio_visual:
            if video is not None:
                if video_lengths is None:
                    video_lengths = torch.full((video.size(0),), video.size(1), dtype=torch.long)
                visual = dict(video=video.to(self.device), video_lengths=video_lengths.to(self.device))
            visual["modes"] = modes_for_task(search.options.task, speech.size(0)).to(self.device)
        elif video is not None:
            raise ValueError("video given to an audio-only model (trained without visual_injection_conf); decode "
                             "it from the audio alone")
        with torch.no_grad():
            encoded = self.model.encode_speech(speech.to(self.device), lengths.to(self.device), **visual)
        return search(encoded)

    def text(self, hyp: Hypothesis) -> str:
        return " ".join(self.tokenizer.decode(hyp.token_ids, skip_special_tokens=True).split())

    def transcript(self, hyp: Hypothesis) -> Transcript:
        return Transcript(text=self.text(hyp), token_ids=list(hyp.token_ids), logprob=hyp.logprob)

    # ---- long recordings -----------------------------------------------------------------------------------
    def default_segment_seconds(self) -> float:
        """The longest training utterance (a model trained on 5 s utterances writes loops over 30 s of speech),
        within the frontend's window (Whisper: 30 s), else 30 s; at most what takes half the LLM's context (the
        other half is for the prompt and the text)."""
        seconds = default_max_seconds(getattr(self.model.frontend, "max_seconds", float("inf")),
                                      DEFAULT_SEGMENT_SECONDS)
        if self.longest_train_seconds:
            seconds = min(seconds, max(self.longest_train_seconds, MIN_SEGMENT_SECONDS))
        positions = getattr(self.model, "max_positions", None)
        if positions and self.model.frontend is not None:
            probe = torch.zeros(1, int(PROBE_SECONDS * self.sample_rate), dtype=self.dtype, device=self.device)
            with torch.no_grad():
                encoded = self.model.encode_speech(probe, torch.tensor([probe.size(1)], device=self.device))
            per_second = float(encoded.speech_lengths[0]) / PROBE_SECONDS
            if per_second > 0:
                seconds = min(seconds, (positions // 2) / per_second)
        return seconds

    def segmenter(self, segment_seconds: Optional[float] = None) -> Segmenter:
        """The segmenter of recordings longer than ``segment_seconds`` (default: the constructor's, else
        ``default_segment_seconds()``), made once per length."""
        seconds = segment_seconds or self.segment_seconds
        if seconds not in self._segmenters:
            self._segmenters[seconds] = Segmenter(seconds or max(1.0, self.default_segment_seconds()), self.vad)
        return self._segmenters[seconds]

    def transcribe(self, waves: Sequence[Union[np.ndarray, torch.Tensor]], search: Optional[BeamSearch] = None,
                   batch_size: Optional[int] = None, segment_seconds: Optional[float] = None,
                   videos: Optional[Sequence[np.ndarray]] = None) -> List[List[Transcript]]:
        """n-best transcripts of mono waveforms at ``self.sample_rate``: recordings longer than the maximum segment
        length are cut (``segmenter``), the segments and short recordings decoded in batches of ``batch_size``, and
        each recording's segment hypotheses of the same rank joined. ``videos``: each recording's lip ROIs (an
        audio-visual model); recordings are then decoded whole, as the model was trained."""
        batch_size = batch_size or self.batch_size
        if videos is not None and len(videos) != len(waves):
            raise ValueError(f"{len(videos)} lip-ROI arrays for {len(waves)} recordings: give one per recording")
        segmenter = self.segmenter(segment_seconds) if videos is None else None
        pieces = []  # (recording, samples), in order
        for index, wave in enumerate(waves):
            wave = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
            spans = segmenter(wave, self.sample_rate) if segmenter else [(0, len(wave))]
            for start, end in spans:
                pieces.append((index, wave[start:end]))
        hyps: List[List[Hypothesis]] = []
        for first in range(0, len(pieces), batch_size):
            chunk = [torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
                     for _, samples in pieces[first:first + batch_size]]
            lengths = torch.tensor([len(p) for p in chunk])
            batch = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True).to(self.dtype)
            visual = {}
            if videos is not None:
                rois = [torch.from_numpy(np.asarray(videos[index], dtype=np.float32))
                        for index, _ in pieces[first:first + batch_size]]
                visual = dict(video=torch.nn.utils.rnn.pad_sequence(rois, batch_first=True),
                              video_lengths=torch.tensor([len(r) for r in rois]))
            hyps += self.decode(batch, lengths, search, **visual)
        results: List[List[Transcript]] = [[] for _ in waves]
        by_recording: List[List[List[Hypothesis]]] = [[] for _ in waves]
        for (index, _), nbest in zip(pieces, hyps):
            by_recording[index].append(nbest)
        for index, segments in enumerate(by_recording):
            ranks = min(len(nbest) for nbest in segments)
            for rank in range(ranks):
                chosen = [nbest[rank] for nbest in segments]
                texts = [self.text(h) for h in chosen]
                results[index].append(Transcript(
                    text=" ".join(t for t in texts if t), token_ids=[i for h in chosen for i in h.token_ids],
                    logprob=sum(h.logprob for h in chosen), segments=len(chosen)))
        return results

    # ---- high level: audio in, text out --------------------------------------------------------------------
    def __call__(self, audio: Union[AudioInput, Sequence[AudioInput]], sample_rate: Optional[int] = None,
                 nbest: Optional[int] = None, batch_size: Optional[int] = None,
                 segment_seconds: Optional[float] = None,
                 video: Optional[Union[VideoInput, Sequence[VideoInput]]] = None, **decoding):
        """The transcript of one input (a str), or of a list of inputs (a list of str), decoded in batches of
        ``batch_size`` (default ``self.batch_size``). Inputs longer than ``segment_seconds`` are cut at pauses and
        their segments' texts joined. With ``nbest=N``: lists of N (text, score) pairs instead (a long input's k-th
        hypothesis joins its segments' k-th ones). ``video``: an audio-visual model's lip ROIs (frames, 96, 96) at
        25 fps, an array or a .npy file, one per input (a list for a list), read in the decoding task (``task="vsr"``
        or ``"avsr"``; the model's default otherwise). Other keyword arguments override decoding options."""
        single = not isinstance(audio, (list, tuple))
        inputs = [audio] if single else list(audio)
        if not inputs:
            return []
        videos = None
        if video is not None:
            videos = [load_lip_rois(v) for v in ([video] if single else list(video))]
        search = self.search
        if nbest is not None or decoding:
            changes = dict(decoding, **({"nbest": nbest} if nbest is not None else {}))
            if nbest is not None and "beam_size" not in decoding:
                changes["beam_size"] = max(self.options.beam_size, nbest)
            unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(DecodingOptions)})
            if unknown:
                raise TypeError(f"Speech2Text: unknown decoding option(s) {unknown}; valid: "
                                f"{sorted(f.name for f in dataclasses.fields(DecodingOptions))}")
            search = self._search(dataclasses.replace(self.options, **changes))
        waves = [load_audio(x, sample_rate, self.sample_rate) for x in inputs]
        transcripts = self.transcribe(waves, search, batch_size, segment_seconds, videos)
        if nbest is None:
            results = [nbest_list[0].text for nbest_list in transcripts]
        else:
            results = [[(t.text, t.logprob) for t in nbest_list] for nbest_list in transcripts]
        return results[0] if single else results
