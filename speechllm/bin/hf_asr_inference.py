#!/usr/bin/env python3
"""Decode a Kaldi wav.scp with a transformers speech seq2seq model (Whisper's own decoder, as a reference recogniser).

    python -m speechllm.bin.hf_asr_inference --model_dir /models/whisper-tiny.en --wav_scp data/test/wav.scp \\
        --output_dir exp/whisper_tiny_en/decode/test [--key_file keys.1.scp] [--batch_size 8] [--num_beams 1] \\
        [--ngpu 0] [--dtype float32]

Writes ESPnet's layout, like speechllm.bin.speechllm_inference: OUTPUT_DIR/1best_recog/text (the hypothesis as the
model writes it, cased and punctuated: score it with `speechllm.bin.score_text --normalize whisper_en`) and
OUTPUT_DIR/1best_recog/score (the hypothesis's total log-probability; `nan` for a long-form utterance).

The model is a folder written by save_pretrained that AutoProcessor and AutoModelForSpeechSeq2Seq load (Whisper,
Speech2Text, a SpeechEncoderDecoder, ...). Decoding is greedy unless --num_beams > 1. A Whisper folder whose
generation_config.json lacks Whisper's decoding settings (a converted checkpoint) gets them from its tokenizer, as
openai-whisper's decoder sets them: the <|notimestamps|> prompt and the suppression of non-speech symbols.

Audio is read as the recipes read it (files of any format libsndfile reads, `command |`, Kaldi ark), resampled to the
model's rate and mixed down to mono if needed. An utterance longer than the model's window (Whisper: 30 s) is decoded
with transformers' long-form (sequential, timestamp-based) generation, one at a time; a model without long-form
generation refuses it with an error naming the utterance. Nothing is ever cut.
At the end the log gives the real-time factor (decoding time over audio duration, model loading excluded).
"""
from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechllm.data.audio import AudioError, read_scp_value, resample
from speechllm.data.datadir import read_kv, write_kv

LOG = logging.getLogger("hf_asr_inference")


class InferenceError(Exception):
    """Bad input: the message names the file or utterance and says how to fix it."""


@dataclass
class Utterance:
    key: str
    samples: np.ndarray  # float32 mono at the model's rate
    seconds: float


# ---------------------------------------------------------------------------------------------------------------
# Inputs.

def read_wav_scp(wav_scp: Path, key_file: Path | None) -> list[tuple[str, str]]:
    """(key, wav.scp value) pairs in wav.scp order, restricted to the keys of `key_file` (its first column)."""
    if not wav_scp.is_file():
        raise InferenceError(f"wav.scp '{wav_scp}' does not exist: pass a Kaldi data dir's wav.scp "
                             "(utils/validate_data_dir.sh checks one)")
    try:
        entries = read_kv(wav_scp, "wav.scp")
    except Exception as error:  # speechllm.data.datadir reports the line and the fix
        raise InferenceError(f"{wav_scp}: {error}") from None
    if not entries:
        raise InferenceError(f"wav.scp '{wav_scp}' is empty: nothing to decode")
    if key_file is None:
        return list(entries.items())
    if not key_file.is_file():
        raise InferenceError(f"--key_file '{key_file}' does not exist")
    keys = [line.split(maxsplit=1)[0] for line in key_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    unknown = [key for key in keys if key not in entries]
    if unknown:
        raise InferenceError(f"--key_file '{key_file}' lists {len(unknown)} utterance(s) that {wav_scp} lacks, "
                             f"e.g. '{unknown[0]}': make the key file from the same wav.scp")
    wanted = set(keys)
    return [(key, value) for key, value in entries.items() if key in wanted]


def check_files_exist(entries: list[tuple[str, str]], wav_scp: Path) -> None:
    """Plain-path entries must name existing files (checked before the model loads; pipes and arks are read later)."""
    for key, value in entries:
        ark = re.fullmatch(r"(.+):[0-9]+", value)
        if value.endswith("|") or os.path.isfile(value) or (ark and os.path.isfile(ark[1])):
            continue
        hint = " (relative paths are read from the current directory: run from the recipe dir)" \
            if not os.path.isabs(value) else ""
        raise InferenceError(f"{wav_scp}: utterance '{key}': audio file '{value}' does not exist{hint}; fix the "
                             "path in wav.scp, or drop the utterance (utils/fix_data_dir.sh after deleting it)")


def load_utterance(key: str, value: str, wav_scp: Path, fs: int) -> Utterance:
    try:
        audio = read_scp_value(value)
    except AudioError as error:
        raise InferenceError(f"{wav_scp}: utterance '{key}': {error.message}; fix: {error.fix}") from None
    samples = audio.samples
    if samples.shape[0] == 0:
        raise InferenceError(f"{wav_scp}: utterance '{key}' has no samples ('{value}'): drop it from the data dir "
                             "(utils/fix_data_dir.sh) or regenerate the audio")
    if not np.all(np.isfinite(samples)):
        raise InferenceError(f"{wav_scp}: utterance '{key}' has NaN or infinite samples ('{value}'): regenerate it")
    if samples.shape[1] > 1:
        LOG.warning(f"utterance '{key}' has {samples.shape[1]} channels: decoding their mean")
    mono = samples.mean(axis=1)
    if audio.fs != fs:
        mono = resample(mono, audio.fs, fs)
    return Utterance(key, mono.astype(np.float32), len(mono) / fs)


# ---------------------------------------------------------------------------------------------------------------
# The model.

def whisper_non_speech_tokens(tokenizer) -> list[int]:
    """openai-whisper's `Tokenizer.non_speech_tokens`: tokens of symbols that are not speech, suppressed in decoding
    (speaker tags, brackets, music notes...), computed the same way from the model's own tokenizer."""
    symbols = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』')
    symbols += "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
    miscellaneous = set("♩♪♫♬♭♮♯")

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    result = {encode(" -")[0], encode(" '")[0]}
    for symbol in symbols + sorted(miscellaneous):
        for tokens in (encode(symbol), encode(" " + symbol)):
            if len(tokens) == 1 or symbol in miscellaneous:
                result.add(tokens[0])
    return sorted(result)


def complete_whisper_generation_config(model, tokenizer) -> list[str]:
    """Fill the Whisper decoding settings a converted checkpoint's generation_config.json may lack, from the
    tokenizer, as openai-whisper sets them (suppress_tokens="-1"); returns the names of the fields it set."""
    config = model.generation_config
    vocab = tokenizer.get_vocab()
    filled = []

    def token_id(token: str) -> int | None:
        return vocab.get(token)

    if getattr(config, "no_timestamps_token_id", None) is None and token_id("<|notimestamps|>") is not None:
        config.no_timestamps_token_id = token_id("<|notimestamps|>")
        filled.append("no_timestamps_token_id")
    multilingual = model.config.vocab_size >= 51865
    if getattr(config, "is_multilingual", None) is None:
        config.is_multilingual = multilingual
        filled.append("is_multilingual")
    if multilingual and getattr(config, "lang_to_id", None) is None:
        from transformers.models.whisper.tokenization_whisper import LANGUAGES

        config.lang_to_id = {f"<|{code}|>": token_id(f"<|{code}|>") for code in LANGUAGES
                             if token_id(f"<|{code}|>") is not None}
        config.task_to_id = {task: token_id(f"<|{task}|>") for task in ("transcribe", "translate")}
        filled += ["lang_to_id", "task_to_id"]
    if getattr(config, "suppress_tokens", None) is None:
        specials = [token_id(t) for t in ("<|translate|>", "<|transcribe|>", "<|startoftranscript|>",
                                          "<|startofprev|>", "<|startoflm|>", "<|nospeech|>", "<|nocaptions|>")]
        config.suppress_tokens = sorted(set(whisper_non_speech_tokens(tokenizer))
                                        | {t for t in specials if t is not None})
        filled.append("suppress_tokens")
    if getattr(config, "max_initial_timestamp_index", None) is None:
        config.max_initial_timestamp_index = 50  # openai-whisper's max_initial_timestamp=1.0 s, in 0.02 s steps
        filled.append("max_initial_timestamp_index")
    return filled


class Recognizer:
    """A transformers speech seq2seq model, its processor and its generate(), on batches of waveforms."""

    def __init__(self, model_dir: str, device: str = "cpu", dtype: str = "float32", num_beams: int = 1,
                 max_new_tokens: int | None = None):
        folder = Path(model_dir)
        if not folder.is_dir():
            raise InferenceError(f"model folder '{model_dir}' does not exist: pass --model_dir a folder written by "
                                 "save_pretrained (config.json, the weights, preprocessor_config.json and the "
                                 "tokenizer files), e.g. a copy of openai/whisper-tiny.en")
        missing = [name for name in ("config.json", "preprocessor_config.json") if not (folder / name).is_file()]
        if missing:
            raise InferenceError(f"model folder '{model_dir}' lacks {', '.join(missing)}: it must hold both the "
                                 "model and its processor (save both with save_pretrained into the same folder)")
        import torch  # imported once the folder looks right: transformers takes seconds to import
        from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

        try:
            self.processor = AutoProcessor.from_pretrained(model_dir)
            self.model = AutoModelForSpeechSeq2Seq.from_pretrained(model_dir, dtype=getattr(torch, dtype))
        except (OSError, ValueError, KeyError) as error:
            raise InferenceError(f"model folder '{model_dir}' cannot be loaded as a transformers speech seq2seq "
                                 f"model with its processor ({type(error).__name__}: {error}); use a folder that "
                                 "AutoModelForSpeechSeq2Seq and AutoProcessor load (Whisper, Speech2Text, ...)"
                                 ) from None
        self.model = self.model.to(device).eval()
        self.torch = torch
        self.device = device
        self.feature_extractor = getattr(self.processor, "feature_extractor", self.processor)
        self.tokenizer = getattr(self.processor, "tokenizer", None)
        if self.tokenizer is None:
            raise InferenceError(f"model folder '{model_dir}': its processor has no tokenizer to turn token ids "
                                 "into text; save the tokenizer into the folder too")
        self.fs = int(self.feature_extractor.sampling_rate)
        self.is_whisper = self.model.config.model_type == "whisper"
        # The feature extractor's fixed input window in samples (Whisper: 30 s), None if it has none. Only Whisper has
        # long-form generation past it; another model with a window refuses longer utterances (check_length).
        self.window = getattr(self.feature_extractor, "n_samples", None)
        if self.is_whisper:
            filled = complete_whisper_generation_config(self.model, self.tokenizer)
            if filled:
                LOG.info(f"{model_dir}: generation_config.json lacks Whisper's decoding settings; set from the "
                         f"tokenizer as openai-whisper does: {', '.join(filled)}")
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.window_text = f"{self.window / self.fs:g} s" if self.window else "none"

    def _generation_config(self, long_form: bool = False):
        """The model's generation config with this run's search settings (passed whole: generate() warns when
        a config and loose generation arguments are mixed)."""
        config = copy.deepcopy(self.model.generation_config)
        limit = getattr(self.model.config, "max_target_positions", None)
        if self.max_new_tokens:
            max_new_tokens = self.max_new_tokens
        elif limit:  # the default max_length (20 tokens) would cut sentences; Whisper's prompt takes <= 4 tokens
            max_new_tokens = limit // 2 if long_form else limit - 4
        else:
            max_new_tokens = 256
        config.update(num_beams=self.num_beams, do_sample=False, max_new_tokens=max_new_tokens, max_length=None,
                      output_scores=not long_form, return_dict_in_generate=not long_form)
        return config

    def _generate(self, inputs: dict, **kwargs):
        """model.generate, with transformers' own warnings about its Whisper internals (the config it mixes with
        its own arguments, the max_length it sets, the attention mask a 30 s padded batch does not need) quieted."""
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        if self.is_whisper:
            hf_logging.set_verbosity_error()
        try:
            with self.torch.inference_mode():
                return self.model.generate(**inputs, **kwargs)
        finally:
            hf_logging.set_verbosity(level)

    def _text(self, token_ids) -> str:
        return " ".join(self.tokenizer.decode(token_ids, skip_special_tokens=True).split())

    def check_length(self, utt: Utterance) -> None:
        if self.window and len(utt.samples) > self.window and not self.is_whisper:
            raise InferenceError(f"utterance '{utt.key}' is {utt.seconds:.1f} s, longer than the model's "
                                 f"{self.window_text} window, and this model has no long-form generation: cut it "
                                 "into segments (a Kaldi segments file) first")

    def decode_batch(self, utts: list[Utterance]) -> list[tuple[str, float]]:
        """(text, total log-probability) of each short utterance (within the window), decoded together."""
        torch = self.torch
        inputs = self.feature_extractor([u.samples for u in utts], sampling_rate=self.fs, return_tensors="pt",
                                        return_attention_mask=not self.is_whisper,
                                        **({} if self.is_whisper else {"padding": True}))
        inputs = {name: value.to(self.device) for name, value in inputs.items()}
        for name, value in inputs.items():
            if value.is_floating_point():
                inputs[name] = value.to(self.model.dtype)
        out = self._generate(inputs, generation_config=self._generation_config())
        sequences = out.sequences
        try:
            steps = self.model.compute_transition_scores(sequences, out.scores, getattr(out, "beam_indices", None),
                                                         normalize_logits=self.num_beams == 1)
            # Padding after EOS scores 0 in greedy search; -inf entries (suppressed tokens never chosen) do not occur.
            scores = [float(row[torch.isfinite(row)].sum()) for row in steps.float()]
        except Exception as error:  # a model whose generate output compute_transition_scores does not handle
            LOG.debug(f"no scores: {error}")
            scores = [math.nan] * len(utts)
        return [(self._text(seq), score) for seq, score in zip(sequences, scores)]

    def decode_long(self, utt: Utterance) -> tuple[str, float]:
        """Whisper's long-form transcription of one utterance over its window (sequential, timestamp-based)."""
        torch = self.torch
        inputs = self.feature_extractor(utt.samples, sampling_rate=self.fs, return_tensors="pt", truncation=False,
                                        padding="longest", return_attention_mask=True)
        inputs = {name: value.to(self.device) for name, value in inputs.items()}
        inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        sequences = self._generate(inputs, generation_config=self._generation_config(long_form=True),
                                   return_timestamps=True)
        if not torch.is_tensor(sequences):
            sequences = sequences["sequences"]
        return self._text(sequences[0]), math.nan


# ---------------------------------------------------------------------------------------------------------------
# The run.

def inference(model_dir: str, wav_scp: Path, output_dir: Path, key_file: Path | None = None, batch_size: int = 1,
              num_beams: int = 1, ngpu: int = 0, dtype: str = "float32", max_new_tokens: int | None = None,
              recognizer: Recognizer | None = None) -> dict:
    """Decode and write OUTPUT_DIR/1best_recog/{text,score}; returns counts and timings. `recognizer`: one already
    loaded (then model_dir, num_beams, ngpu, dtype and max_new_tokens are its own)."""
    if batch_size < 1 or num_beams < 1:
        raise InferenceError("--batch_size and --num_beams must be at least 1")
    if ngpu > 1:
        raise InferenceError("--ngpu must be 0 or 1 (run several jobs, e.g. with --key_file, for more GPUs)")
    entries = read_wav_scp(wav_scp, key_file)  # before the model loads: bad input fails fast
    check_files_exist(entries, wav_scp)
    if recognizer is None:
        if ngpu == 1:
            import torch

            if not torch.cuda.is_available():
                raise InferenceError("--ngpu 1 but torch sees no CUDA device: use --ngpu 0")
        recognizer = Recognizer(model_dir, "cuda" if ngpu else "cpu", dtype, num_beams, max_new_tokens)
    num_beams = recognizer.num_beams
    texts: dict[str, str] = {}
    scores: dict[str, str] = {}
    audio_seconds = 0.0
    start, cpu_start = time.perf_counter(), time.process_time()
    pending: list[Utterance] = []
    long_count = 0

    def flush() -> None:
        if pending:
            for utt, (text, score) in zip(pending, recognizer.decode_batch(pending)):
                texts[utt.key], scores[utt.key] = text, f"{score:.4f}"
            LOG.info(f"decoded {len(texts)}/{len(entries)} utterances; last: {pending[-1].key}")
            pending.clear()

    for key, value in entries:
        utt = load_utterance(key, value, wav_scp, recognizer.fs)
        recognizer.check_length(utt)
        audio_seconds += utt.seconds
        if recognizer.window and len(utt.samples) > recognizer.window:
            LOG.info(f"utterance '{key}' is {utt.seconds:.1f} s, over the {recognizer.window_text} window: "
                     "long-form generation")
            text, score = recognizer.decode_long(utt)
            texts[key], scores[key] = text, f"{score:.4f}"
            long_count += 1
            continue
        pending.append(utt)
        if len(pending) == batch_size:
            flush()
    flush()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = output_dir / "1best_recog"
    out.mkdir(parents=True, exist_ok=True)
    write_kv(out / "text", texts)
    write_kv(out / "score", scores)
    rtf = seconds / audio_seconds if audio_seconds else math.nan
    cpu_rtf = cpu_seconds / audio_seconds if audio_seconds else math.nan
    LOG.info(f"{len(texts)} utterances ({long_count} long-form), {audio_seconds:.1f} s of audio decoded in "
             f"{seconds:.1f} s: real-time factor {rtf:.3f} (CPU time {cpu_seconds:.1f} s, {cpu_rtf:.3f} x real time; "
             f"{recognizer.device}, {torch_threads()} torch thread(s), batch {batch_size}, beams {num_beams})")
    return {"utterances": len(texts), "long_form": long_count, "audio_seconds": audio_seconds,
            "decode_seconds": seconds, "cpu_seconds": cpu_seconds, "rtf": rtf, "cpu_rtf": cpu_rtf}


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log_level", default="INFO", type=lambda x: x.upper())
    parser.add_argument("--model_dir", required=True,
                        help="folder of a transformers speech seq2seq model and its processor (save_pretrained)")
    parser.add_argument("--wav_scp", type=Path, default=None, help="Kaldi wav.scp to decode")
    parser.add_argument("--data_path_and_name_and_type", default=None,
                        help="ESPnet style 'PATH,speech,sound' (as speechllm_inference takes): PATH is the wav.scp")
    parser.add_argument("--key_file", type=Path, default=None, help="decode only these utterance ids (first column)")
    parser.add_argument("--output_dir", type=Path, required=True, help="writes OUTPUT_DIR/1best_recog/{text,score}")
    parser.add_argument("--batch_size", type=int, default=1, help="utterances per generate() call")
    parser.add_argument("--num_beams", type=int, default=1, help="1: greedy search (default); N: beam search")
    parser.add_argument("--max_new_tokens", type=int, default=None,
                        help="token limit per utterance (default: the model's decoder length less the prompt)")
    parser.add_argument("--ngpu", type=int, default=0, choices=(0, 1))
    parser.add_argument("--dtype", default="float32", choices=["float16", "bfloat16", "float32"])
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    wav_scp = args.wav_scp
    if args.data_path_and_name_and_type:
        path, _, kind = (args.data_path_and_name_and_type.split(",") + ["", ""])[:3]
        if kind not in ("sound", "kaldi_ark") or wav_scp:
            print("hf_asr_inference: error: --data_path_and_name_and_type must be 'WAV_SCP,speech,sound' and "
                  "excludes --wav_scp", file=sys.stderr)
            return 2
        wav_scp = Path(path)
    if wav_scp is None:
        print("hf_asr_inference: error: --wav_scp (or --data_path_and_name_and_type) is required", file=sys.stderr)
        return 2
    try:
        inference(args.model_dir, wav_scp, args.output_dir, args.key_file, args.batch_size, args.num_beams,
                  args.ngpu, args.dtype, args.max_new_tokens)
    except InferenceError as error:
        print(f"hf_asr_inference: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
