"""Time the builtin scorer against NIST sclite on the same 100,000 utterance pairs.

    tools/venv/bin/python bench/bench_scoring.py [--utterances 100000] [--sclite /usr/lib/sctk/bin/sclite]

The pairs look like ASR output: ~20 words from a 5,000-word vocabulary, ~10% word
errors (substitutions, deletions, insertions), 200 speakers.  Both programs run as
separate processes with ``-i rm -o sum pra dtl -O DIR`` and write the same files;
the script checks the files are identical and prints seconds and utterances/s.
"""
from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_pairs(path: Path, utterances: int, seed: int = 0) -> None:
    rnd = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]
    with open(path / "ref.trn", "w") as ref_file, open(path / "hyp.trn", "w") as hyp_file:
        for utt in range(utterances):
            ref = [rnd.choice(vocab) for _ in range(rnd.randint(15, 25))]
            hyp = []
            for word in ref:
                draw = rnd.random()
                if draw < 0.04:
                    hyp.append(rnd.choice(vocab))
                elif draw < 0.07:
                    continue
                elif draw < 0.10:
                    hyp += [word, rnd.choice(vocab)]
                else:
                    hyp.append(word)
            uid = f"s{utt % 200:03d}-u{utt:06d}"
            ref_file.write(f"{' '.join(ref)} ({uid})\n")
            hyp_file.write(f"{' '.join(hyp)} ({uid})\n")


def timed(command: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--utterances", type=int, default=100_000)
    parser.add_argument("--sclite", default=shutil.which("sclite") or "/usr/lib/sctk/bin/sclite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_pairs(work, args.utterances)
        options = ["-r", "ref.trn", "trn", "-h", "hyp.trn", "trn", "-i", "rm", "-o", "sum", "pra", "dtl", "-f", "0"]
        (work / "builtin").mkdir()
        builtin = timed([sys.executable, "-m", "speechllm.bin.sclite", *options, "-O", "builtin"], work)
        print(f"builtin scorer: {args.utterances} utterances in {builtin:.2f} s "
              f"({args.utterances / builtin:,.0f} utt/s)")
        if not Path(args.sclite).exists():
            print(f"NIST sclite not found at {args.sclite} (apt-get install -y sctk); no comparison")
            return 0
        (work / "sclite").mkdir()
        nist = timed([args.sclite, *options, "-O", "sclite"], work)
        print(f"NIST sclite:    {args.utterances} utterances in {nist:.2f} s ({args.utterances / nist:,.0f} utt/s)")
        same = all(filecmp.cmp(work / "builtin" / f"hyp.trn.{ext}", work / "sclite" / f"hyp.trn.{ext}", shallow=False)
                   for ext in ("sys", "pra", "dtl"))
        print(f"speed-up {nist / builtin:.2f}x; reports identical: {same}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
