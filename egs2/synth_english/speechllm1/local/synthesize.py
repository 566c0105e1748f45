#!/usr/bin/env python3
"""Synthesise the synth_english corpus and write Kaldi data directories data/{train,dev,test_synth}.

    python3 local/synthesize.py --seed 0 --num_train 12000 --num_dev 300 --num_test 300 \\
        --audio_dir downloads/synth_english --data_dir data --nj 2

Multi-speaker English from five synthesisers (eSpeak NG, Flite, Festival, and the neural voices hibari and
Piper, all from Debian or PyPI packages: nothing is downloaded at run time), sentences from an AN4-like grammar,
from SmolLM2 (generated once, cached under --text_cache_dir), from the World English Bible and from WordNet's
examples; noise and reverberation on a share of the training utterances. Everything follows from the options
and from what is installed: the same options give the same files. <audio_dir>/plan.tsv records every
utterance's settings; a rerun with the same options reuses the audio already there, a rerun with other options
into the same audio_dir is refused. See local/README.md.
"""
import argparse
import os
import sys
import time
from pathlib import Path

from speechllm.data.cli import parse_bool
from speechllm.synth import corpus, engines, sources


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="fixes sentences, speakers, augmentation and audio")
    parser.add_argument("--num_train", type=int, default=12000, help="training utterances")
    parser.add_argument("--num_dev", type=int, default=300, help="development utterances (held-out voices "
                        "or prosody, held-out sentences)")
    parser.add_argument("--num_test", type=int, default=300, help="test_synth utterances (held out as dev)")
    parser.add_argument("--fs", type=int, default=16000, help="sampling rate of the written audio (Hz)")
    parser.add_argument("--audio_dir", default="downloads/synth_english", help="where the WAV files go")
    parser.add_argument("--data_dir", default="data", help="where the Kaldi data dirs train/dev/test_synth go")
    parser.add_argument("--nj", type=int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--engines", default=",".join(f"{k}:{v}" for k, v in corpus.DEFAULT_ENGINES.items()),
                        help=f"engines and their shares of the utterances (of {', '.join(engines.ENGINES)})")
    parser.add_argument("--sources", default=",".join(f"{k}:{v}" for k, v in corpus.DEFAULT_SOURCES.items()),
                        help="text sources and their shares (an4: AN4-like grammar, lm: SmolLM2 sentences, "
                             "web: World English Bible, wordnet: WordNet examples)")
    parser.add_argument("--skip_missing", type=parse_bool, default=False,
                        help="true: leave out engines that are not installed (with a note); false: stop")
    parser.add_argument("--hold_out_voices", default="",
                        help="comma-separated engine:voice kept out of train (e.g. flite:awb); eSpeak NG's "
                             "held-out variants are chosen by the seed")
    parser.add_argument("--augment_share", type=float, default=0.5,
                        help="share of train utterances with noise (and half of them reverberation)")
    parser.add_argument("--held_out_augment_share", type=float, default=0.0,
                        help="the same for dev and test_synth")
    parser.add_argument("--snr_db", default="5,25", help="range of the signal-to-noise ratio of added noise (dB)")
    parser.add_argument("--noise_archive", default="../../../../shared/corpora/mini_an4/downloads.tar.gz",
                        help="tar archive with downloads/noise/*.wav and downloads/rirs/*.wav; when absent, only "
                             "synthetic noise and room responses are used")
    parser.add_argument("--lm_model", default=sources.LM_MODEL,
                        help="SmolLM2 GGUF file that writes the lm sentences (skipped with a note when absent)")
    parser.add_argument("--text_cache_dir", default="downloads/synth_english_text",
                        help="where the generated lm sentences are cached")
    parser.add_argument("--web_dir", default=sources.WEB_DIR, help="SWORD module of the World English Bible")
    parser.add_argument("--wordnet_dir", default=sources.WORDNET_DIR, help="WordNet's data.* files")
    args = parser.parse_args(argv)
    for name in ("num_train", "num_dev", "num_test", "nj"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 8000 <= args.fs <= 48000:
        parser.error(f"--fs must be between 8000 and 48000 Hz, got {args.fs}")
    for name in ("augment_share", "held_out_augment_share"):
        if not 0 <= getattr(args, name) <= 1:
            parser.error(f"--{name} must be between 0 and 1, got {getattr(args, name)}")
    try:
        args.engine_weights = corpus.parse_weights(args.engines, engines.ENGINES, "engine")
        args.source_weights = corpus.parse_weights(args.sources, ("an4", "lm", "web", "wordnet"), "text source")
        low, high = (float(x) for x in args.snr_db.split(","))
    except ValueError as err:
        parser.error(str(err))
    args.snr_range = (low, high)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    config = corpus.Config(
        seed=args.seed, counts={"train": args.num_train, "dev": args.num_dev, "test_synth": args.num_test},
        engines=args.engine_weights, sources=args.source_weights, fs=args.fs, augment_share=args.augment_share,
        held_out_augment_share=args.held_out_augment_share, snr_db=args.snr_range,
        hold_out_voices=tuple(v for v in args.hold_out_voices.split(",") if v), noise_archive=args.noise_archive,
        lm_model=args.lm_model or None, text_cache_dir=args.text_cache_dir, web_dir=args.web_dir,
        wordnet_dir=args.wordnet_dir, skip_missing=args.skip_missing, nj=args.nj)
    try:
        corpus.build(config, args.audio_dir, args.data_dir, log=lambda message: print(message, flush=True))
    except (engines.EngineUnavailable, RuntimeError, ValueError) as err:
        sys.exit(f"{Path(__file__).name}: error: {err}")
    print(f"{time.time() - start:.1f} s with --nj {args.nj}")


if __name__ == "__main__":
    main()
