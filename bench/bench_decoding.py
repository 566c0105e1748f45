"""Decoding speed of a trained speech LLM: the LLM alone against joint CTC/LLM decoding, by beam and batch size.

    tools/venv/bin/python bench/bench_decoding.py [--model_dir egs2/synth_an4/speechllm1/exp/train]
        [--model_file valid.acc.ave.pth] [--wav_scp egs2/synth_an4/speechllm1/dump/test/wav.scp] [--utts 64]

Runs from the recipe dir (the config's relative paths). Prints one line per setting: utterances per second, the
real-time factor (decoding seconds per audio second), and tokens per hypothesis. Uses 1 thread unless
OMP_NUM_THREADS says otherwise, like the recipe's decoding jobs.
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

from speechllm.speech2text import Speech2Text  # noqa: E402
from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.decoding.options import DecodingOptions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", default="egs2/synth_an4/speechllm1/exp/train")
    parser.add_argument("--model_file", default="valid.acc.ave.pth")
    parser.add_argument("--wav_scp", default="egs2/synth_an4/speechllm1/dump/test/wav.scp")
    parser.add_argument("--utts", type=int, default=64)
    args = parser.parse_args()
    model_dir, wav_scp = Path(args.model_dir).resolve(), Path(args.wav_scp).resolve()
    os.chdir(model_dir.parents[1])  # the recipe dir: configs name the LLM and token files relative to it
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    waves = []
    for path in list(read_kv(wav_scp).values())[: args.utts]:
        audio, _ = sf.read(path, dtype="float32")
        waves.append(torch.from_numpy(audio))
    audio_seconds = sum(w.numel() for w in waves) / 16000
    print(f"{len(waves)} utterances, {audio_seconds:.1f} s of audio, {torch.get_num_threads()} thread(s)")

    for ctc_weight in (0.0, 0.5):
        for beam, batch in ((1, 1), (4, 1), (4, 8)):
            options = DecodingOptions(beam_size=beam, ctc_weight=ctc_weight)
            speech2text = Speech2Text(str(model_dir / "config.yaml"), str(model_dir / args.model_file), options)
            tokens = 0
            start = time.perf_counter()
            for i in range(0, len(waves), batch):
                chunk = waves[i:i + batch]
                lengths = torch.tensor([w.numel() for w in chunk])
                padded = torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True)
                tokens += sum(len(nbest[0].token_ids) for nbest in speech2text.decode(padded, lengths))
            elapsed = time.perf_counter() - start
            print(f"ctc_weight {ctc_weight:.1f}  beam {beam}  batch {batch}:  {len(waves) / elapsed:6.1f} utt/s  "
                  f"RTF {elapsed / audio_seconds:.4f}  {tokens / len(waves):.1f} tokens/hyp")


if __name__ == "__main__":
    main()
