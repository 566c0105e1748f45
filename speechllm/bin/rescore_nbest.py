#!/usr/bin/env python3
"""Rescore a decode's n-best lists with a causal LM (any tokenizer); the weights given, or tuned on a dev decode.

    python -m speechllm.bin.rescore_nbest --lm exp/llm/SmolLM2-135M-Instruct.Q4_1 \
        --nbest_dir exp/m/decode_nbest/test --output_dir exp/m/decode_nbest_rescored/test \
        [--lm_weight 0.3 --length_bonus 0.0] \
        [--tune_nbest_dir exp/m/decode_nbest/dev --tune_ref dump/dev/text --normalize whisper_en \
         --lm_weights 0,0.1,0.2,0.3,0.5,0.7,1 --length_bonuses -1,-0.5,0,0.5,1]

Writes ``output_dir/{text,score}`` (stage 10 scores it like any decode) and ``output_dir/rescoring.yaml``: the
weights used and, when tuned, the whole dev grid with its WERs. ``--nbest_dir``/``--output_dir`` may be given
several times, in pairs: the LM is loaded and the weights tuned once for all of them (the recipe rescores every
test set in one call). See speechllm.decoding.rescoring.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml


def floats(text: str):
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", required=True, help="a causal LM: transformers folder, .gguf file or hub name")
    parser.add_argument("--nbest_dir", action="append", required=True,
                        help="a decode dir written by stage 9 (nbest > 1); repeatable, paired with --output_dir")
    parser.add_argument("--output_dir", action="append", required=True)
    parser.add_argument("--lm_weight", type=float, default=0.3)
    parser.add_argument("--length_bonus", type=float, default=0.0, help="added per word")
    parser.add_argument("--tune_nbest_dir", help="a dev decode to tune both weights on (instead of the two above)")
    parser.add_argument("--tune_ref", help="the dev references (Kaldi text)")
    parser.add_argument("--normalize", default="none", help="text normaliser for tuning: none, basic, whisper_en")
    parser.add_argument("--lm_weights", type=floats, default=floats("0,0.1,0.2,0.3,0.5,0.7,1"))
    parser.add_argument("--length_bonuses", type=floats, default=floats("-1,-0.5,0,0.5,1"))
    parser.add_argument("--batch_size", type=int, default=16)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if bool(args.tune_nbest_dir) != bool(args.tune_ref):
        parser.error("--tune_nbest_dir and --tune_ref go together")
    if len(args.nbest_dir) != len(args.output_dir):
        parser.error(f"--nbest_dir and --output_dir go in pairs: got {len(args.nbest_dir)} and {len(args.output_dir)}")

    from speechllm.data.datadir import read_kv
    from speechllm.decoding.rescoring import add_lm_scores, read_nbest, rescore, tune
    from speechllm.models.llm import load_causal_lm, load_tokenizer
    from speechllm.scoring.normalize import get_normalizer

    try:
        nbests = [read_nbest(d) for d in args.nbest_dir]  # every input is checked before the LM loads
        tuning = None
        if args.tune_nbest_dir:
            refs = read_kv(args.tune_ref)
            tuning = read_nbest(args.tune_nbest_dir, keys=list(refs))
        lm, tokenizer = load_causal_lm(args.lm, finetune="frozen").eval(), load_tokenizer(args.lm)
        record = {"lm": args.lm}
        if tuning is not None:
            add_lm_scores(tuning, lm, tokenizer, args.batch_size)
            weight, bonus, grid = tune(tuning, refs, get_normalizer(args.normalize), args.lm_weights,
                                       args.length_bonuses)
            record.update(tuned_on=args.tune_nbest_dir, tune_ref=args.tune_ref, normalize=args.normalize,
                          grid=[{"lm_weight": w, "length_bonus": b, "wer": round(e, 2)} for w, b, e in grid])
        else:
            weight, bonus = args.lm_weight, args.length_bonus
        record.update(lm_weight=weight, length_bonus=bonus)
        for nbest_dir, output_dir, nbest in zip(args.nbest_dir, args.output_dir, nbests):
            # The tuning set (the same dir, read with its keys checked) already has its LM scores.
            if tuning is not None and Path(nbest_dir).resolve() == Path(args.tune_nbest_dir).resolve():
                nbest = tuning
            else:
                add_lm_scores(nbest, lm, tokenizer, args.batch_size)
            write_rescored(nbest, rescore(nbest, weight, bonus), Path(output_dir),
                           {"nbest_dir": nbest_dir, **record}, weight, bonus)
    except (FileNotFoundError, ValueError) as error:
        print(f"rescore_nbest: error: {error}", file=sys.stderr)
        return 1
    return 0


def write_rescored(nbest, best, out: Path, record: dict, weight: float, bonus: float) -> None:
    from speechllm.data.datadir import write_kv

    out.mkdir(parents=True, exist_ok=True)
    write_kv(out / "text", {k: c.text for k, c in best.items()})
    write_kv(out / "score", {k: f"{c.combined(weight, bonus):.4f}" for k, c in best.items()})
    (out / "rescoring.yaml").write_text(yaml.safe_dump(record, sort_keys=False))
    changed = sum(c is not nbest[k][0] for k, c in best.items())
    logging.info(f"lm_weight {weight:g}, length_bonus {bonus:g}: {changed} of {len(best)} 1-best hypotheses changed; "
                 f"wrote {out}/text")

if __name__ == "__main__":
    sys.exit(main())
