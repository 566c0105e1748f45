"""Speed of the data-dir tools and of audio dumping, on generated data. Prints one line per measurement.

    tools/venv/bin/python bench/bench_datadir.py [--utts 200] [--seconds 3] [--big 100000] [--nj 2]

Figures: dump throughput as times faster than real time (audio seconds per wall second) for plain files,
resampling 8 kHz -> 16 kHz, speed perturbation applied in-process, and the same perturbation through its
wav.scp pipe (a Python process per utterance, what any other wav.scp reader pays); the whole utils/dump_audio.sh
through utils/local.py; validate/fix/split on a large text-only data dir.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# wav.scp pipes run `python3 -m speechllm...`: as a recipe's path.sh does, put this Python and the project first.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

from speechllm.data.audio import read_pipe, speed_pipe  # noqa: E402
from speechllm.data.datadir import spk2utt_from_utt2spk, write_kv  # noqa: E402
from speechllm.data.dump import Settings, dump_part  # noqa: E402
from speechllm.data.dump_audio import dump_audio  # noqa: E402
from speechllm.data.fix import fix_data_dir  # noqa: E402
from speechllm.data.split import split_data  # noqa: E402
from speechllm.data.validate import validate_data_dir  # noqa: E402


def write_dir(path: Path, wav_scp: dict[str, str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    utt2spk = {u: u.split("-")[0] for u in wav_scp}
    write_kv(path / "wav.scp", wav_scp)
    write_kv(path / "utt2spk", utt2spk)
    write_kv(path / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    write_kv(path / "text", {u: "a few words of text" for u in wav_scp})
    return path


def make_audio(root: Path, count: int, seconds: float, fs: int) -> dict[str, str]:
    rng = np.random.default_rng(0)
    wav_scp = {}
    for i in range(count):
        path = root / f"{fs}_{i}.wav"
        noise = np.cumsum(rng.standard_normal(int(seconds * fs))) * 0.002  # brown noise: compresses like speech
        sf.write(path, np.clip(noise - noise.mean(), -1, 1), fs, subtype="PCM_16")
        wav_scp[f"spk{i % 10}-utt{i:05d}"] = str(path)
    return wav_scp


def report(name: str, count: int, audio_seconds: float, wall: float) -> None:
    print(f"{name:48s} {count:6d} utts {audio_seconds:8.0f} s audio {wall:7.2f} s wall "
          f"{audio_seconds / wall:8.1f}x real time")


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def bench_dump(root: Path, args: argparse.Namespace) -> None:
    audio = root / "audio"
    audio.mkdir()
    plain = make_audio(audio, args.utts, args.seconds, 16000)
    narrow = make_audio(audio, args.utts, args.seconds, 8000)
    total = args.utts * args.seconds
    cases = [
        ("dump flac, 16 kHz source (1 process)", plain, Settings()),
        ("dump wav, 16 kHz source (1 process)", plain, Settings(audio_format="wav")),
        ("dump flac, resample 8 -> 16 kHz (1 process)", narrow, Settings(resample=True)),
        ("dump flac, speed 0.9 in-process (1 process)", {u: speed_pipe("0.9", p) for u, p in plain.items()},
         Settings()),
    ]
    for index, (name, wav_scp, settings) in enumerate(cases):
        data = write_dir(root / f"data{index}", wav_scp)
        wall = timed(dump_part, data, root / f"out{index}", root / f"dump{index}", settings)
        report(name, len(wav_scp), total / (0.9 if "speed" in name else 1), wall)
    data = root / "data0"
    wall = timed(dump_part, data, root / "out0", root / "dump0", Settings())
    report("resume: everything already dumped", args.utts, total, wall)
    few = list(plain.values())[:20]
    wall = timed(lambda: [read_pipe(speed_pipe("0.9", p)[:-1]) for p in few])
    report("speed 0.9 through the pipe (python per utt)", len(few), len(few) * args.seconds / 0.9, wall)
    wall = timed(dump_audio, data, root / "sh_dump", Settings(), nj=args.nj, cmd=str(REPO / "utils" / "local.py"))
    report(f"utils/dump_audio.sh path, nj={args.nj}, via utils/local.py", args.utts, total, wall)


def bench_text_tools(root: Path, count: int) -> None:
    utts = {f"spk{i % 1000:04d}-utt{i:07d}": f"/audio/{i}.wav" for i in range(count)}
    data = write_dir(root / "big", utts)
    for name, function in [("validate_data_dir", lambda: validate_data_dir(data)),
                           ("fix_data_dir (nothing to drop)", lambda: fix_data_dir(data)),
                           ("split_data 8 parts per speaker", lambda: split_data(data, 8))]:
        wall = timed(function)
        print(f"{name:48s} {count:6d} utts {wall:7.2f} s wall {count / wall:10.0f} utts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utts", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--big", type=int, default=100000, help="utterances of the text-only data dir")
    parser.add_argument("--nj", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        bench_dump(Path(temp), args)
        bench_text_tools(Path(temp), args.big)


if __name__ == "__main__":
    main()
