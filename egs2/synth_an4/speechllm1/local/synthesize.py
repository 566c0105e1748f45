#!/usr/bin/env python3
"""Synthesise the synth_an4 corpus with eSpeak NG and write Kaldi data directories.

    python3 local/synthesize.py --seed 0 --num_train 1500 --num_dev 100 --num_test 150 --fs 16000 \
        --audio_dir downloads/synth_an4 --data_dir data

Writes data/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt} (sorted as `LC_ALL=C sort` does) and 16-bit mono
WAV files under <audio_dir>/wav/<split>/. Everything follows from the options: the same options give
byte-identical files. <audio_dir>/plan.tsv records every utterance's settings; a rerun with the same options
reuses the audio already there, a rerun with other options into the same audio_dir is refused.
"""
import argparse
import collections
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly  # imported once here: forked workers inherit it (importing takes ~1 s)

from speechllm.data.cli import parse_bool
from speechllm.synth import an4_grammar, espeak
from speechllm.synth.corpus import (claim_audio_dir, cpu_seconds, synthesize_all, wav_path, words_of, write_wav,
                                    write_data_dir)
from speechllm.synth.espeak import ACCENTS, VARIANT_FAMILIES

SPLITS = ("train", "dev", "test")
PLAN_VERSION = 1  # bump when the plan or the audio processing changes: old audio dirs are then refused

HELD_OUT_VARIANTS = {"test": {"male": 3, "female": 2, "klatt": 1}, "dev": {"male": 2, "female": 1, "klatt": 1}}
UTTS_PER_SPEAKER = {"train": 25, "dev": 12, "test": 12}
RATE_WPM = (130, 190)
RATE_JITTER_WPM = 10
PITCH = (25, 75)  # espeakPITCH: 50 is the variant's own pitch
PITCH_RANGE = (20, 80)  # espeakRANGE: intonation range, 50 is the variant's own
SILENCE_S = (0.05, 0.35)  # leading and trailing silence added to eSpeak's own
PEAK_DBFS = (-10.0, -2.0)
SNR_DB = (30.0, 50.0)  # white noise, well below the speech


@dataclass(frozen=True)
class Speaker:
    id: str
    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int

    @property
    def voice(self) -> str:
        return f"{ACCENTS[self.accent]}+{self.variant}"


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    speaker: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    lead_s: float
    trail_s: float
    peak_dbfs: float
    snr_db: float
    noise_seed: int
    text: str


PLAN_FIELDS = list(Utterance.__dataclass_fields__)


def corpus_parser(description: str, audio_dir: str, seed_help: str) -> argparse.ArgumentParser:
    """The options of a corpus built on this plan (synth_an4, and synth_av which adds faces)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help=seed_help)
    parser.add_argument("--num_train", type=int, default=1500, help="training utterances")
    parser.add_argument("--num_dev", type=int, default=100, help="development utterances")
    parser.add_argument("--num_test", type=int, default=150, help="test utterances")
    parser.add_argument("--fs", type=int, default=16000, help="sampling rate of the written audio (Hz)")
    parser.add_argument("--audio_dir", default=audio_dir, help="where the written files go")
    parser.add_argument("--data_dir", default="data", help="where the Kaldi data dirs train/dev/test go")
    parser.add_argument("--nj", type=int, default=os.cpu_count() or 1, help="parallel synthesis processes")
    parser.add_argument("--hold_out_variants", type=parse_bool,
                        default=True, help="true: dev/test voice variants never occur in training (harder); "
                                            "false: only the speakers (accent+variant+pitch) are disjoint")
    parser.add_argument("--accents", default=",".join(sorted(ACCENTS)),
                        help=f"comma-separated accents to draw speakers from (of {','.join(sorted(ACCENTS))}); "
                             "fewer accents make an easier corpus")
    return parser


def check_corpus_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    for name in ("num_train", "num_dev", "num_test", "nj"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    unknown = sorted(set(args.accents.split(",")) - set(ACCENTS))
    if unknown:
        parser.error(f"--accents: unknown {unknown}; choose from {','.join(sorted(ACCENTS))}")
    if not 8000 <= args.fs <= 48000:
        parser.error(f"--fs must be between 8000 and 48000 Hz, got {args.fs}")
    return args


def parse_args(argv=None):
    parser = corpus_parser(__doc__, "downloads/synth_an4", "fixes sentences, speakers, audio")
    return check_corpus_args(parser, parser.parse_args(argv))


# ---------------------------------------------------------------- sentences

def draw_held_out(rng, count, split, forbidden, train_words):
    """count sentences absent from `forbidden` whose words all occur in training; prints what it rejected."""
    chosen, rejected = [], collections.Counter()
    max_draws = 1000 + 200 * count
    for _ in range(max_draws):
        if len(chosen) == count:
            break
        sentence = an4_grammar.random_sentence(rng)
        if sentence in forbidden:
            rejected["already in an earlier split"] += 1
        elif not set(sentence.split()) <= train_words:
            rejected["a word never seen in train"] += 1
        else:
            chosen.append(sentence)
    if len(chosen) < count:
        raise RuntimeError(f"could draw only {len(chosen)} of {count} {split} sentences that are new and use "
                           f"only training words in {max_draws} draws; raise --num_train or lower --num_{split}")
    reasons = ", ".join(f"{n} ({why})" for why, n in sorted(rejected.items())) or "none"
    print(f"{split}: drew {len(chosen) + sum(rejected.values())} sentences, kept {len(chosen)}, "
          f"rejected: {reasons}")
    return chosen


def draw_sentences(seed, counts):
    """Sentences per split: dev and test sentences never occur in an earlier split and use only train words."""
    rng = random.Random(f"synth_an4:{seed}:sentences")
    sentences = {"train": [an4_grammar.random_sentence(rng) for _ in range(counts["train"])]}
    train_words = words_of(sentences["train"])
    forbidden = set(sentences["train"])
    for split in ("dev", "test"):
        sentences[split] = draw_held_out(rng, counts[split], split, forbidden, train_words)
        forbidden |= set(sentences[split])
    return sentences


# ---------------------------------------------------------------- speakers

def split_variants(rng, hold_out=True):
    """Disjoint variant lists per split: each family is shuffled, test and dev take theirs, train the rest.
    Without ``hold_out`` every split draws from all variants (speakers stay disjoint: a speaker is accent, variant
    and pitch), an easier corpus for small CPU budgets."""
    if not hold_out:
        everything = sorted(v for members in VARIANT_FAMILIES.values() for v in members)
        return {split: list(everything) for split in SPLITS}
    variants = {split: [] for split in SPLITS}
    for family, members in VARIANT_FAMILIES.items():
        members = list(members)
        rng.shuffle(members)
        for split in ("test", "dev"):
            take = HELD_OUT_VARIANTS[split][family]
            variants[split] += members[:take]
            members = members[take:]
        variants["train"] += members
    return variants


def speaker_count(num_utts, split):
    return min(num_utts, max(2, math.ceil(num_utts / UTTS_PER_SPEAKER[split])))


def make_speakers(seed, counts, accents=tuple(sorted(ACCENTS)), hold_out_variants=True):
    """A speaker is a voice (accent + variant) with its own pitch, pitch range and speaking rate."""
    rng = random.Random(f"synth_an4:{seed}:speakers")
    variants = split_variants(rng, hold_out_variants)
    speakers, taken = {}, set()
    for split in SPLITS:
        pool = variants[split]
        rng.shuffle(pool)
        speakers[split] = []
        wanted = speaker_count(counts[split], split)
        # Distinct ids: at most one speaker per (accent, variant, pitch); stay well below that for quick draws.
        if wanted > len(pool) * len(accents) * (PITCH[1] - PITCH[0] + 1) // 4:
            raise RuntimeError(f"--num_{split} {counts[split]} needs {wanted} speakers, more than the "
                               f"{len(pool)} {split} voice variants can give; use fewer utterances")
        for i in range(wanted):
            variant = pool[i % len(pool)]
            while True:  # a speaker id names accent, variant and pitch: draw until it is new
                accent, pitch = rng.choice(sorted(accents)), rng.randint(*PITCH)
                speaker_id = f"{accent}_{variant.lower()}_p{pitch:02d}"
                if speaker_id not in taken:
                    break
            taken.add(speaker_id)
            speakers[split].append(Speaker(speaker_id, accent, variant, pitch, rng.randint(*PITCH_RANGE),
                                           rng.randint(*RATE_WPM)))
    return speakers


# ---------------------------------------------------------------- plan

def make_plan(seed, counts, accents=tuple(sorted(ACCENTS)), hold_out_variants=True):
    """Every utterance with all its synthesis and augmentation settings, in a fixed order."""
    sentences = draw_sentences(seed, counts)
    speakers = make_speakers(seed, counts, accents, hold_out_variants)
    rng = random.Random(f"synth_an4:{seed}:utterances")
    plan = []
    for split in SPLITS:
        for index, text in enumerate(sentences[split]):
            speaker = speakers[split][index % len(speakers[split])]
            rate = speaker.rate + rng.randint(-RATE_JITTER_WPM, RATE_JITTER_WPM)
            plan.append(Utterance(
                id=f"{speaker.id}-{split}_{index:05d}", split=split, speaker=speaker.id, voice=speaker.voice,
                rate=rate, pitch=speaker.pitch, pitch_range=speaker.pitch_range,
                lead_s=round(rng.uniform(*SILENCE_S), 3), trail_s=round(rng.uniform(*SILENCE_S), 3),
                peak_dbfs=round(rng.uniform(*PEAK_DBFS), 2), snr_db=round(rng.uniform(*SNR_DB), 2),
                noise_seed=rng.randrange(2**31), text=text))
    return plan


def plan_text(plan, seed, fs) -> str:
    lines = [f"# synth_an4 plan version {PLAN_VERSION} seed {seed} fs {fs}", "\t".join(PLAN_FIELDS)]
    lines += ["\t".join(str(getattr(utt, field)) for field in PLAN_FIELDS) for utt in plan]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- audio

def resample(samples: np.ndarray, from_fs: int, to_fs: int) -> np.ndarray:
    """Polyphase resampling with scipy's anti-aliasing FIR filter."""
    samples = samples.astype(np.float64)
    if from_fs == to_fs:
        return samples
    common = math.gcd(from_fs, to_fs)
    return resample_poly(samples, to_fs // common, from_fs // common)


def augment(speech: np.ndarray, fs: int, utt: Utterance) -> np.ndarray:
    """Scale to a peak level, pad with silence and add white noise at utt.snr_db; returns int16."""
    speech = speech * (10 ** (utt.peak_dbfs / 20) / np.max(np.abs(speech)))
    padded = np.concatenate([np.zeros(round(utt.lead_s * fs)), speech, np.zeros(round(utt.trail_s * fs))])
    speech_rms = np.sqrt(np.mean(speech ** 2))
    noise = np.random.default_rng(utt.noise_seed).standard_normal(len(padded))
    padded += noise * speech_rms * 10 ** (-utt.snr_db / 20)
    return np.clip(np.round(padded * 32767), -32768, 32767).astype(np.int16)


def synthesize_speaker(job):
    """Runs in a fresh process (eSpeak state must start clean): all of one speaker's utterances, in order.

    Returns what speechllm.synth.corpus.synthesize_speaker returns; utterances whose file exists are synthesised
    anyway (to keep eSpeak's state sequence) but not rewritten.
    """
    utterances, audio_dir, fs = job
    engine = espeak.ESpeak()
    results, audio_seconds = [], 0.0
    before = cpu_seconds()
    for utt in utterances:
        engine.set_voice(utt.voice)
        engine.set_parameter("rate", utt.rate)
        engine.set_parameter("pitch", utt.pitch)
        engine.set_parameter("range", utt.pitch_range)
        engine.seed(utt.noise_seed)
        speech = engine.synthesize(espeak.spoken_form(utt.text))
        audio_seconds += len(speech) / engine.sample_rate
        samples = augment(resample(speech, engine.sample_rate, fs), fs, utt)
        path = wav_path(audio_dir, utt)
        written = not os.path.exists(path)
        if written:
            write_wav(path, samples, fs)
        results.append((utt.id, len(samples), written))
    return "espeak", cpu_seconds() - before, audio_seconds, results


# ---------------------------------------------------------------- summary

def summary(plan, frames, fs) -> str:
    by_split = {split: [utt for utt in plan if utt.split == split] for split in SPLITS}
    rows = [f"{'split':<6} {'utts':>6} {'speakers':>8} {'hours':>6} {'vocab':>6} {'distinct sentences':>19}"]
    for split, utterances in by_split.items():
        hours = sum(frames[utt.id] for utt in utterances) / fs / 3600
        texts = [utt.text for utt in utterances]
        rows.append(f"{split:<6} {len(utterances):>6} {len({utt.speaker for utt in utterances}):>8} "
                    f"{hours:>6.3f} {len(words_of(texts)):>6} {len(set(texts)):>19}")
    train_words = words_of(utt.text for utt in by_split["train"])
    for split in ("dev", "test"):
        words = words_of(utt.text for utt in by_split[split])
        rows.append(f"{split} words seen in train: {len(words & train_words)}/{len(words)} word types")
    rows.append(f"vocabulary of all splits: {len(words_of(utt.text for utt in plan))} words "
                f"(grammar: {len(an4_grammar.vocabulary())})")
    return "\n".join(rows)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    try:
        espeak.check_variants_exist(espeak.import_loader().get_data_path())
        build_corpus(args)
    except (ImportError, RuntimeError) as err:
        sys.exit(f"{Path(__file__).name}: error: {err}")
    print(f"{time.time() - start:.1f} s with --nj {args.nj}")


def build_corpus(args):
    counts = {"train": args.num_train, "dev": args.num_dev, "test": args.num_test}
    plan = make_plan(args.seed, counts, tuple(sorted(set(args.accents.split(",")))), args.hold_out_variants)
    claim_audio_dir(Path(args.audio_dir), plan_text(plan, args.seed, args.fs))
    frames, written, _ = synthesize_all(plan, args.audio_dir, args.fs, args.nj, log=lambda line: None,
                                        worker=synthesize_speaker)
    for split in SPLITS:
        write_data_dir(Path(args.data_dir) / split, [utt for utt in plan if utt.split == split], args.audio_dir)
    print(summary(plan, frames, args.fs))
    print(f"audio: {written} files synthesised, {len(plan) - written} reused from {args.audio_dir}")


if __name__ == "__main__":
    main()
