#!/usr/bin/env python3
"""Transcribe audio files with a trained speech LLM; prints ``id<TAB>text`` per input.

    speechllm-transcribe exp/m/packed.zip a.wav b.flac ...       # ids are the file names
    speechllm-transcribe exp/m/packed.zip - < wav.scp            # a Kaldi wav.scp ('id path' or 'id command |')
    speechllm-transcribe MODEL a.wav --beam_size 8 --nbest 3 --batch_size 8 --device cuda
    speechllm-transcribe MODEL meeting.wav --segment_seconds 20                # long audio: cut at pauses, joined

MODEL is a packed model (stage 11's packed.zip), its unpacked folder, or a recipe's model dir. Progress goes to
stderr: a bar on a terminal, else a line per 10 %.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

from speechllm.decoding.options import DecodingOptions


def inputs_of(paths: List[str]) -> Iterator[Tuple[str, str, bool]]:
    """(id, audio, is_scp_value) triples: file names, or the entries of a wav.scp read from stdin for '-' (read
    when decoded, not all at once)."""
    for path in paths:
        if path != "-":
            yield Path(path).name, path, False
            continue
        for lineno, line in enumerate(sys.stdin, 1):
            fields = line.strip().split(maxsplit=1)
            if not fields:
                continue
            if len(fields) != 2:
                raise ValueError(f"stdin line {lineno}: expected '<id> <audio>' as in a wav.scp, got {line.strip()!r}")
            yield fields[0], fields[1], True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="speechllm-transcribe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="packed.zip, its unpacked folder, or a model dir")
    parser.add_argument("audio", nargs="+", help="audio files, or - for a wav.scp on stdin")
    parser.add_argument("--batch_size", type=int, default=8, help="inputs (or segments) decoded together")
    parser.add_argument("--segment_seconds", type=float, default=0.0,
                        help="inputs longer than this are cut at pauses and their texts joined (0: the model's "
                             "longest training utterance, within the frontend's window and half the LLM's context)")
    parser.add_argument("--vad", default="auto", choices=["auto", "silero", "none"],
                        help="where long inputs are cut: Silero VAD's pauses (auto: when installed) or low-energy points")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model_file", help="weights to use instead of the folder's own")
    group = parser.add_argument_group("decoding (speechllm.decoding.options.DecodingOptions)")
    for name, value in vars(DecodingOptions()).items():
        group.add_argument(f"--{name}", type=type(value), default=None, help=f"default {value}")
    args = parser.parse_args(argv)
    decoding = {k: v for k, v in vars(args).items() if k in vars(DecodingOptions()) and v is not None}
    nbest = decoding.pop("nbest", None)

    from speechllm.data.audio import AudioError, read_scp_value
    from speechllm.data.progress import Progress
    from speechllm.speech2text import Speech2Text

    try:
        s2t = Speech2Text.from_pretrained(args.model, model_file=args.model_file, device=args.device,
                                          segment_seconds=args.segment_seconds or None, vad=args.vad,
                                          batch_size=args.batch_size, **decoding)
        items = list(inputs_of(args.audio))
    except (FileNotFoundError, ValueError, AudioError) as error:
        print(f"speechllm-transcribe: error: {error}", file=sys.stderr)
        return 1
    progress = Progress(len(items), "speechllm-transcribe", unit="inputs")
    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        try:
            if not any(is_scp for _, _, is_scp in chunk):
                results = s2t([audio for _, audio, _ in chunk], nbest=nbest)
            else:  # wav.scp entries, decoded one by one as their rates may differ
                results = []
                for _, value, _ in chunk:
                    audio = read_scp_value(value)
                    results.append(s2t(audio.samples, sample_rate=audio.fs, nbest=nbest))
        except (ValueError, AudioError) as error:
            print(f"speechllm-transcribe: error: {error}", file=sys.stderr)
            return 1
        for (key, _, _), result in zip(chunk, results):
            if nbest is None:
                print(f"{key}\t{result}", flush=True)
            else:
                for rank, (text, score) in enumerate(result, 1):
                    print(f"{key}\t{rank}\t{score:.4f}\t{text}", flush=True)
        progress.update(len(chunk))
    progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
