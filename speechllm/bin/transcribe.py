#!/usr/bin/env python3
"""Transcribe audio files with a trained speech LLM; prints ``id<TAB>text`` per input.

    speechllm-transcribe exp/m/packed.zip a.wav b.flac ...       # ids are the file names
    speechllm-transcribe exp/m/packed.zip - < wav.scp            # a Kaldi wav.scp ('id path' or 'id command |')
    speechllm-transcribe MODEL a.wav --beam_size 8 --nbest 3 --batch_size 8 --device cuda

MODEL is a packed model (stage 11's packed.zip), its unpacked folder, or a recipe's model dir. A progress bar goes
to stderr when it is a terminal.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

from speechllm.decoding.options import DecodingOptions


def inputs_of(paths: List[str]) -> Iterator[Tuple[str, object]]:
    """(id, audio) pairs: file names, or the entries of a wav.scp read from stdin for '-'."""
    from speechllm.data.audio import read_scp_value

    for path in paths:
        if path != "-":
            yield Path(path).name, path
            continue
        for lineno, line in enumerate(sys.stdin, 1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"stdin line {lineno}: expected '<id> <audio>' as in a wav.scp, got {line.strip()!r}")
            audio = read_scp_value(fields[1])
            yield fields[0], (audio.samples, audio.fs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="speechllm-transcribe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="packed.zip, its unpacked folder, or a model dir")
    parser.add_argument("audio", nargs="+", help="audio files, or - for a wav.scp on stdin")
    parser.add_argument("--batch_size", type=int, default=1, help="inputs decoded together")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model_file", help="weights to use instead of the folder's own")
    group = parser.add_argument_group("decoding (speechllm.decoding.options.DecodingOptions)")
    for name, value in vars(DecodingOptions()).items():
        group.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value}")
    args = parser.parse_args(argv)
    decoding = {k: v for k, v in vars(args).items() if k in vars(DecodingOptions()) and v is not None}
    nbest = decoding.pop("nbest", None)

    from speechllm.data.audio import AudioError
    from speechllm.speech2text import Speech2Text

    try:
        s2t = Speech2Text.from_pretrained(args.model, model_file=args.model_file, device=args.device, **decoding)
        items = list(inputs_of(args.audio))
    except (FileNotFoundError, ValueError, AudioError) as error:
        print(f"speechllm-transcribe: error: {error}", file=sys.stderr)
        return 1
    progress = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        progress = tqdm(total=len(items), unit="utt", file=sys.stderr)
    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        try:
            if all(isinstance(audio, str) for _, audio in chunk):
                results = s2t([audio for _, audio in chunk], nbest=nbest)
            else:  # wav.scp entries: (samples, rate) each, decoded one by one as rates may differ
                results = [s2t(samples, sample_rate=fs, nbest=nbest) for _, (samples, fs) in chunk]
        except ValueError as error:
            print(f"speechllm-transcribe: error: {error}", file=sys.stderr)
            return 1
        for (key, _), result in zip(chunk, results):
            if nbest is None:
                print(f"{key}\t{result}", flush=True)
            else:
                for rank, (text, score) in enumerate(result, 1):
                    print(f"{key}\t{rank}\t{score:.4f}\t{text}", flush=True)
        if progress:
            progress.update(len(chunk))
    if progress:
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
