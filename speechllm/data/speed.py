"""Speed perturbation of one recording, for wav.scp pipes (what `sox ... speed F` does in Kaldi recipes).

    python3 -m speechllm.data.speed 0.9 path/to/a.wav | ...        # a file, or a Kaldi ark entry
    some-command | python3 -m speechllm.data.speed 0.9 - | ...     # WAV on standard input

Writes 16-bit WAV at the input's sample rate to standard output, ceil(n / 0.9) samples long: tempo and pitch both
change, as when a recording is played faster or slower. utils/perturb_data_dir_speed.sh writes such pipes;
utils/dump_audio.sh recognises them and applies the factor without starting this program.
"""
from __future__ import annotations

import argparse
import io
import sys

import soundfile as sf

from speechllm.data.audio import (
    Audio, AudioError, change_speed, check_finite, decode_bytes, parse_speed_factor, read_scp_value, to_pcm16)

PROG = "python3 -m speechllm.data.speed"


def perturb(factor_text: str, source: str) -> Audio:
    factor = parse_speed_factor(factor_text)
    audio = decode_bytes(sys.stdin.buffer.read(), "standard input") if source == "-" else read_scp_value(source)
    check_finite(audio)
    return Audio(change_speed(audio.samples, factor), audio.fs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Change the speed of a recording (WAV to stdout).")
    parser.add_argument("factor", help="speed factor, e.g. 0.9 (slower, longer) or 1.1")
    parser.add_argument("source", help="audio file, Kaldi ark entry (file.ark:offset), or - for WAV on stdin")
    args = parser.parse_args(argv)
    try:
        audio = perturb(args.factor, args.source)
    except ValueError as error:
        parser.error(str(error))
    except AudioError as error:
        print(f"{PROG}: {args.source}: {error.message}. Fix: {error.fix}", file=sys.stderr)
        return 1
    buffer = io.BytesIO()
    sf.write(buffer, to_pcm16(audio.samples)[0], audio.fs, subtype="PCM_16", format="WAV")
    sys.stdout.buffer.write(buffer.getvalue())
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
