"""Whisper's encoder as a frontend, with and without its 30 s window: speed, and what the encoder output is worth.

    tools/venv/bin/python bench/bench_whisper_frontend.py --model_dir ../shared/models/whisper-tiny.en \
        --data_dir egs2/synth_english/speechllm1/dump/real_all [--data_dir ...] [--utts 0] [--normalize whisper_en]

For each data dir and each setting (``pad_to_window`` true: every utterance fed as a 30 s window, as Whisper was
trained; false: only the audio's own frames, speechllm's default), it runs speechllm's ``hf_speech_encoder``
frontend (the code that training and the feature dump run) and prints:

* encoder throughput: seconds of audio encoded per second (1 thread unless OMP_NUM_THREADS says otherwise), and
  the time one pass over the data dir takes: what ``--dump_frontend true`` saves in every training epoch;
* the WER of Whisper's own decoder (greedy, batch 1) reading that encoder output: a measure of how much of the
  speech the encoder output still carries, independent of any adapter or LLM.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import soundfile as sf  # noqa: E402
import torch  # noqa: E402

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.models.hf_speech_encoder import HFSpeechEncoderFrontend  # noqa: E402
from speechllm.scoring.align import word_error_rate  # noqa: E402
from speechllm.scoring.normalize import get_normalizer  # noqa: E402


def decoder_of(model_dir: str):
    from transformers import WhisperForConditionalGeneration, WhisperTokenizer

    model = WhisperForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, WhisperTokenizer.from_pretrained(model_dir)


@torch.no_grad()
def transcribe(model, tokenizer, encoder_output: torch.Tensor, max_tokens: int = 96) -> str:
    """Greedy decoding from a given encoder output, with Whisper's English no-timestamps prompt."""
    prompt = [tokenizer.convert_tokens_to_ids(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
    tokens = torch.tensor([prompt])
    eos = tokenizer.eos_token_id
    for _ in range(max_tokens):
        logits = model(encoder_outputs=(encoder_output[None],), decoder_input_ids=tokens).logits[0, -1]
        token = int(logits.argmax())
        if token == eos:
            break
        tokens = torch.cat([tokens, torch.tensor([[token]])], dim=1)
    return tokenizer.decode(tokens[0, len(prompt):], skip_special_tokens=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="a transformers Whisper folder")
    parser.add_argument("--data_dir", action="append", required=True, help="Kaldi data dirs (wav.scp, text)")
    parser.add_argument("--utts", type=int, default=0, help="first N utterances of each (0: all)")
    parser.add_argument("--normalize", default="whisper_en", help="normaliser of references and hypotheses")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    normalize = get_normalizer(args.normalize)
    model, tokenizer = decoder_of(args.model_dir)
    frontends = {pad: HFSpeechEncoderFrontend(args.model_dir, multilayer_feature=False, pad_to_window=pad).eval()
                 for pad in (True, False)}
    print(f"{torch.get_num_threads()} thread(s); WER after the {args.normalize} normaliser")
    for data_dir in map(Path, args.data_dir):
        wavs, texts = read_kv(data_dir / "wav.scp"), read_kv(data_dir / "text")
        keys = list(wavs)[: args.utts or None]
        waves = [torch.from_numpy(sf.read(wavs[k], dtype="float32")[0]) for k in keys]
        seconds = sum(len(w) for w in waves) / 16000
        for pad, frontend in frontends.items():
            outputs, start = [], time.perf_counter()
            with torch.no_grad():
                for wave in waves:
                    feats, lengths = frontend(wave[None], torch.tensor([len(wave)]))
                    outputs.append(feats[0, : int(lengths[0])])
            encode_time = time.perf_counter() - start
            # Whisper's decoder reads every frame it was given: the whole window when padded.
            full = []
            with torch.no_grad():
                for wave in waves if pad else []:
                    mel = frontend.feature_extractor(wave.numpy(), sampling_rate=16000,
                                                     return_tensors="pt").input_features
                    full.append(frontend.encoder(mel).last_hidden_state[0])
            hyps = [transcribe(model, tokenizer, out) for out in (full if pad else outputs)]
            wer, words = word_error_rate([normalize(texts[k]) for k in keys], [normalize(h) for h in hyps])
            print(f"{data_dir.name:<20} pad_to_window={str(pad).lower():<5} {len(keys):>5} utts {seconds:7.1f} s "
                  f"audio: encoder {seconds / encode_time:7.1f} s audio/s ({encode_time:6.1f} s per pass), "
                  f"Whisper decoder on it: WER {wer:5.1f} ({words} words)")


if __name__ == "__main__":
    main()
