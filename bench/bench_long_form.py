"""Long recordings through Speech2Text: WER of concatenated utterances against each utterance alone, and peak memory
against the recording's length.

    tools/venv/bin/python bench/bench_long_form.py --model exp/m/packed.zip --data_dir dump/test \
        [--utts 0] [--group_seconds 120] [--pause 0.3] [--minutes 1 5 10] [--segment_seconds 0] [--vad auto]

WER: the data dir's utterances, in order, are joined into recordings of about ``--group_seconds`` with
``--pause`` seconds of silence between them, their references joined the same way. Both are decoded with the same
model and options: every utterance alone (in batches), and the long recordings cut by the segmenter
(speechllm.decoding.segment). The WERs (after ``--normalize``) differ by what the cuts and the lost context cost.

Memory: for each of ``--minutes``, a recording of that length (the utterances repeated) is decoded in a fresh
process; its peak resident memory (ru_maxrss) is printed, with the memory after loading the model and the audio.
It must not grow with the length beyond the audio itself (16 kHz float32: 3.8 MB a minute).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.scoring.align import word_error_rate  # noqa: E402
from speechllm.scoring.normalize import get_normalizer  # noqa: E402

RATE = 16000


def read_waves(data_dir: Path, utts: int = 0):
    from speechllm.data.audio import read_scp_value

    wavs, texts = read_kv(data_dir / "wav.scp"), read_kv(data_dir / "text")
    keys = list(wavs)[: utts or None]
    waves = []
    for key in keys:
        audio = read_scp_value(wavs[key])
        if audio.fs != RATE:
            raise ValueError(f"{data_dir}/wav.scp: {key} is at {audio.fs} Hz; this benchmark takes {RATE} Hz")
        samples = np.asarray(audio.samples, dtype=np.float32)
        waves.append(samples.mean(axis=1) if samples.ndim == 2 else samples)  # (samples, channels) -> mono
    return keys, waves, [texts[k] for k in keys]


def groups(waves, texts, group_seconds: float, pause: float):
    """(recording, reference) pairs of consecutive utterances joined with pauses."""
    silence = np.zeros(int(pause * RATE), dtype=np.float32)
    out, current, refs = [], [], []
    for wave, text in zip(waves, texts):
        current += [wave, silence]
        refs.append(text)
        if sum(len(p) for p in current) >= group_seconds * RATE:
            out.append((np.concatenate(current), " ".join(refs)))
            current, refs = [], []
    if current:
        out.append((np.concatenate(current), " ".join(refs)))
    return out


def peak_memory(args, minutes: float) -> dict:
    """Decode a recording of ``minutes`` in a fresh process; its memory figures."""
    command = [sys.executable, __file__, "--model", args.model, "--data_dir", args.data_dir, "--memory_child",
               str(minutes), "--segment_seconds", str(args.segment_seconds), "--vad", args.vad,
               "--batch_size", str(args.batch_size), "--utts", str(args.utts), "--decoding", args.decoding]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_child(args, s2t) -> None:
    _, waves, _ = read_waves(Path(args.data_dir), args.utts)
    joined = np.concatenate(waves)
    repeats = int(np.ceil(args.memory_child * 60 * RATE / len(joined)))
    recording = np.tile(joined, repeats)[: int(args.memory_child * 60 * RATE)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    text = s2t(recording, sample_rate=RATE, segment_seconds=args.segment_seconds or None)
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"minutes": args.memory_child, "rss_before_mb": round(before), "peak_rss_mb": round(peak),
                      "seconds": round(elapsed, 1), "words": len(text.split()),
                      "segmenter": s2t.segmenter(args.segment_seconds or None).last_method}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="packed.zip, its folder, or a model dir")
    parser.add_argument("--data_dir", required=True, help="a Kaldi data dir of 16 kHz audio (wav.scp, text)")
    parser.add_argument("--utts", type=int, default=0, help="the first N utterances (0: all)")
    parser.add_argument("--group_seconds", type=float, default=120.0)
    parser.add_argument("--pause", type=float, default=0.3)
    parser.add_argument("--minutes", type=float, nargs="*", default=[1, 5, 10])
    parser.add_argument("--segment_seconds", type=float, default=0.0, help="0: the model's default")
    parser.add_argument("--vad", default="auto")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--normalize", default="whisper_en")
    parser.add_argument("--decoding", default="{}", help="decoding options as JSON, e.g. '{\"beam_size\": 4}'")
    parser.add_argument("--memory_child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    from speechllm import Speech2Text

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    s2t = Speech2Text.from_pretrained(args.model, vad=args.vad, batch_size=args.batch_size,
                                      **json.loads(args.decoding))
    if args.memory_child is not None:
        return memory_child(args, s2t)
    normalize = get_normalizer(args.normalize)
    keys, waves, texts = read_waves(Path(args.data_dir), args.utts)
    start = time.perf_counter()
    alone = s2t(list(waves))
    alone_time = time.perf_counter() - start
    wer_alone, words = word_error_rate([normalize(t) for t in texts], [normalize(h) for h in alone])
    recordings = groups(waves, texts, args.group_seconds, args.pause)
    start = time.perf_counter()
    long = s2t([r for r, _ in recordings], segment_seconds=args.segment_seconds or None)
    long_time = time.perf_counter() - start
    wer_long, _ = word_error_rate([normalize(ref) for _, ref in recordings], [normalize(h) for h in long])
    segmenter = s2t.segmenter(args.segment_seconds or None)
    seconds = sum(len(w) for w in waves) / RATE
    print(f"{args.data_dir}: {len(keys)} utterances, {seconds:.0f} s, {words} words ({args.normalize} normaliser); "
          f"{torch.get_num_threads()} threads")
    print(f"  each utterance alone:            WER {wer_alone:5.1f}  ({alone_time:6.1f} s)")
    print(f"  {len(recordings)} recordings of ~{args.group_seconds:.0f} s, cut at most every "
          f"{segmenter.max_seconds:.0f} s by {segmenter.last_method or 'no cut'}: WER {wer_long:5.1f}  "
          f"({long_time:6.1f} s)")
    for minutes in args.minutes:
        m = peak_memory(args, minutes)
        print(f"  {minutes:4g} min recording: peak RSS {m['peak_rss_mb']} MB (after loading model and audio: "
              f"{m['rss_before_mb']} MB), {m['seconds']} s, {m['words']} words, cut by {m['segmenter']}")


if __name__ == "__main__":
    main()
