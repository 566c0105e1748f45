#!/usr/bin/env python3
"""WER of a decoded test_synth per synthesiser (utterance ids start with the engine: flite_slt_r1100_pd15-...).

    python3 local/score_by_engine.py --ref dump/test_synth/text --hyp exp/<model>/decode_<...>/test_synth/text \
        [--hyp ...] [--normalize whisper_en]

One row per engine, one column per --hyp, scored as stage 10 scores (the sclite-identical alignment, after the
same normaliser); an utterance without a hypothesis counts as all deletions.
"""
import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[4]))

from speechllm.data.datadir import read_kv  # noqa: E402
from speechllm.scoring.align import word_error_rate  # noqa: E402
from speechllm.scoring.normalize import get_normalizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", required=True)
    parser.add_argument("--hyp", action="append", required=True)
    parser.add_argument("--normalize", default="whisper_en")
    args = parser.parse_args()
    normalize = get_normalizer(args.normalize)
    refs = read_kv(args.ref)
    hyps = [read_kv(h) for h in args.hyp]
    engines = defaultdict(list)
    for key in refs:
        engines[key.split("_", 1)[0]].append(key)
    print("engine      utts  " + "  ".join(f"WER[{i + 1}]" for i in range(len(hyps))))
    for engine, keys in sorted(engines.items()) + [("all", list(refs))]:
        wers = [word_error_rate([normalize(refs[k]) for k in keys], [normalize(h.get(k, "")) for k in keys])[0]
                for h in hyps]
        print(f"{engine:<10} {len(keys):>5}  " + "  ".join(f"{w:7.1f}" for w in wers))
    for i, path in enumerate(args.hyp, 1):
        print(f"[{i}] {path}")


if __name__ == "__main__":
    main()
