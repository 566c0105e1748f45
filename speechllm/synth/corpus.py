"""A multi-speaker synthetic corpus: plan, cache, parallel synthesis, Kaldi data dirs, summary.

The plan lists every utterance with everything that makes its audio: the speaker (engine, voice, speaking rate,
pitch), the sentence (transcript and spoken form, its source) and the augmentation. It follows from the options
alone (``--seed`` and the counts), and from what the machine has: which engines, text sources and noise archive.
``<audio_dir>/plan.tsv`` records it: a rerun with the same plan reuses the audio there (only missing files are
made), a rerun with another plan into the same audio dir is refused.

Held out: dev and test_synth speakers never occur in train. Their eSpeak NG voice variants are not heard in train
at all; for the other engines, whose voices are few, the speaking rates and pitches of dev and test_synth speakers
lie between those of train speakers (train rates 0.80, 0.85, ..., test rates 0.825, 0.875, ...; train pitches whole
semitones, test pitches half semitones), and ``--hold_out_voices`` can keep whole voices out of train. Their
sentences never occur in train (nor in each other).

Each speaker is synthesised in a fresh process (``maxtasksperchild=1``): eSpeak NG and Piper keep state across
calls in a process, so this is what makes the audio independent of ``--nj``.
"""
from __future__ import annotations

import collections
import math
import multiprocessing
import os
import random
import resource
import sys
import time
import wave
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from speechllm.synth import augment
from speechllm.synth import engines as tts
from speechllm.synth import sources as text_sources
from speechllm.synth.espeak import ACCENTS, VARIANT_FAMILIES
from speechllm.synth.text import Sentence

SPLITS = ("train", "dev", "test_synth")
PLAN_VERSION = 1  # bump when the plan or the audio processing changes: old audio dirs are then refused

DEFAULT_ENGINES = {"espeak": 0.25, "flite": 0.2, "festival": 0.15, "hibari": 0.2, "piper": 0.2}
DEFAULT_SOURCES = {"an4": 0.15, "lm": 0.2, "web": 0.3, "wordnet": 0.35}
UTTS_PER_SPEAKER = {"train": 40, "dev": 10, "test_synth": 10}
ESPEAK_HELD_OUT_VARIANTS = {"test_synth": {"male": 3, "female": 2, "klatt": 1},
                            "dev": {"male": 2, "female": 1, "klatt": 1}}
# Prosody grids: held-out speakers take the values between those of train speakers.
TRAIN_RATES = [round(0.80 + 0.05 * i, 3) for i in range(10)]  # 0.80 .. 1.25
HELD_OUT_RATES = [round(0.825 + 0.05 * i, 3) for i in range(9)]  # 0.825 .. 1.225
TRAIN_PITCHES = {True: [float(p) for p in range(-4, 5)], False: [float(p) for p in range(-3, 4)]}
HELD_OUT_PITCHES = {True: [p + 0.5 for p in range(-4, 4)], False: [p + 0.5 for p in range(-3, 3)]}
# Augmentation.
SILENCE_S = (0.05, 0.5)
PEAK_DBFS = (-12.0, -1.0)
FLOOR_SNR_DB = (45.0, 65.0)  # every utterance: a faint white noise floor
RT60_S = (0.2, 0.9)
REVERB_SHARE = 0.5  # of the augmented utterances


@dataclass(frozen=True)
class Speaker:
    id: str
    split: str
    engine: str
    voice: str
    rate: float
    pitch: float
    seed: int


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    speaker: str
    engine: str
    voice: str
    rate: float
    pitch: float
    engine_seed: int
    seed: int
    source: str
    peak_dbfs: float
    lead_s: float
    trail_s: float
    noise: str
    snr_db: float
    rir: str
    text: str
    spoken: str

    def augmentation(self) -> augment.Augmentation:
        return augment.Augmentation(self.peak_dbfs, self.lead_s, self.trail_s, self.noise, self.snr_db, self.rir,
                                    self.seed)


PLAN_FIELDS = [f.name for f in fields(Utterance)]


@dataclass
class Config:
    seed: int = 0
    counts: Dict[str, int] = None
    engines: Dict[str, float] = None
    sources: Dict[str, float] = None
    fs: int = 16000
    augment_share: float = 0.5  # of train utterances
    held_out_augment_share: float = 0.0  # of dev and test_synth utterances
    snr_db: Tuple[float, float] = (5.0, 25.0)
    hold_out_voices: Tuple[str, ...] = ()  # "engine:voice"
    noise_archive: Optional[str] = None
    lm_model: Optional[str] = text_sources.LM_MODEL
    text_cache_dir: str = "downloads/synth_english_text"
    web_dir: str = text_sources.WEB_DIR
    wordnet_dir: str = text_sources.WORDNET_DIR
    skip_missing: bool = False  # leave out engines and sources that are not installed (with a note)
    nj: int = 1

    def __post_init__(self):
        self.counts = dict(self.counts or {"train": 12000, "dev": 300, "test_synth": 300})
        self.engines = dict(self.engines or DEFAULT_ENGINES)
        self.sources = dict(self.sources or DEFAULT_SOURCES)


def parse_weights(text: str, known, what: str) -> Dict[str, float]:
    """"espeak:0.3,flite:0.2" (or "espeak,flite": equal weights) -> {name: weight}."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition(":")
        if name not in known:
            raise ValueError(f"unknown {what} {name!r}; choose from {', '.join(known)}")
        weights[name] = float(weight) if weight else 1.0
        if weights[name] < 0:
            raise ValueError(f"{what} {name}: the weight must not be negative")
    if not weights or sum(weights.values()) <= 0:
        raise ValueError(f"no {what} with a positive weight in {text!r}")
    return weights


def apportion(total: int, weights: Dict[str, float]) -> Dict[str, int]:
    """Integer counts summing to total in proportion to weights (largest remainder, ties by name)."""
    positive = {name: w for name, w in weights.items() if w > 0}
    norm = sum(positive.values())
    exact = {name: total * w / norm for name, w in positive.items()}
    counts = {name: int(math.floor(x)) for name, x in exact.items()}
    for name in sorted(exact, key=lambda n: (-(exact[n] - counts[n]), n))[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


# ------------------------------------------------------------------------------------------------ what is here

def usable_engines(config: Config, log=print) -> Dict[str, tts.Engine]:
    """The engines of config.engines (checked, not started); an absent one is an error unless skip_missing."""
    found = {}
    for name in config.engines:
        try:
            engine = tts.get_engine(name)
            engine.voices()
            found[name] = engine
        except tts.EngineUnavailable as err:
            if not config.skip_missing:
                raise
            log(f"note: engine {name} left out: {err}")
    if not found:
        raise tts.EngineUnavailable("no engine of --engines is installed (see the notes above)")
    return found


def voice_key(engine: str, voice: str) -> str:
    """The part of a speaker id that names the voice: "espeak_sco_m3", "flite_slt"."""
    if engine == "espeak":
        language, _, variant = voice.partition("+")
        accent = {v: k for k, v in ACCENTS.items()}[language]
        return f"espeak_{accent}_{variant.lower()}"
    return f"{engine}_{voice.lower()}"


def speaker_id(engine: str, voice: str, rate: float, pitch: float) -> str:
    tenths = round(pitch * 10)
    return f"{voice_key(engine, voice)}_r{round(rate * 1000):04d}_p{'u' if tenths >= 0 else 'd'}{abs(tenths):02d}"


def voice_pools(rng: random.Random, available: Dict[str, tts.Engine], hold_out_voices) -> Dict[str, dict]:
    """{split: {engine: [Voice]}}: eSpeak NG variants held out per family; --hold_out_voices out of train."""
    for item in sorted(hold_out_voices):
        name, _, voice = item.partition(":")
        if name not in available or voice not in {v.name for v in available[name].voices()}:
            raise ValueError(f"--hold_out_voices: {item!r} is no engine:voice of the engines in use "
                             f"(e.g. flite:awb)")
    pools = {split: {} for split in SPLITS}
    for name, engine in available.items():
        voices = engine.voices()
        if name == "espeak":
            variants = {split: set() for split in SPLITS}
            for family, members in VARIANT_FAMILIES.items():
                members = list(members)
                rng.shuffle(members)
                for split in ("test_synth", "dev"):
                    take = ESPEAK_HELD_OUT_VARIANTS[split][family]
                    variants[split] |= set(members[:take])
                    members = members[take:]
                variants["train"] |= set(members)
            for split in SPLITS:
                pools[split][name] = [v for v in voices if v.name.partition("+")[2] in variants[split]]
        else:
            for split in SPLITS:
                pools[split][name] = [v for v in voices
                                      if split != "train" or f"{name}:{v.name}" not in hold_out_voices]
            if not pools["train"][name]:
                raise ValueError(f"--hold_out_voices leaves engine {name} no voice for train")
    return pools


def make_speakers(rng: random.Random, split: str, counts: Dict[str, int], pools, taken: set) -> Dict[str, list]:
    """{engine: [Speaker]}: about counts[engine] / UTTS_PER_SPEAKER speakers (fewer when the engine's voices and
    the split's prosody grid have fewer distinct combinations), voices in turn, rate and pitch drawn."""
    speakers = {}
    rates = TRAIN_RATES if split == "train" else HELD_OUT_RATES
    pitch_grid = TRAIN_PITCHES if split == "train" else HELD_OUT_PITCHES
    for engine, count in sorted(counts.items()):
        if count == 0:
            continue
        voices = list(pools[split][engine])
        rng.shuffle(voices)
        combos = {}
        for voice in voices:
            free = [(rate, pitch) for rate in rates for pitch in pitch_grid[voice.native_pitch]
                    if speaker_id(engine, voice.name, rate, pitch) not in taken]
            rng.shuffle(free)
            combos[voice.name] = free
        wanted = min(count, max(1, math.ceil(count / UTTS_PER_SPEAKER[split])), sum(map(len, combos.values())))
        if wanted == 0:
            raise RuntimeError(f"{split}: no {engine} speaker is left (every voice, rate and pitch is taken)")
        speakers[engine] = []
        i = 0
        while len(speakers[engine]) < wanted:
            voice = voices[i % len(voices)]
            i += 1
            if not combos[voice.name]:
                continue
            rate, pitch = combos[voice.name].pop()
            sid = speaker_id(engine, voice.name, rate, pitch)
            taken.add(sid)
            speakers[engine].append(Speaker(sid, split, engine, voice.name, rate, pitch, rng.randrange(2 ** 31)))
    return speakers


# ------------------------------------------------------------------------------------------------ sentences

def load_pools(config: Config, wanted: Dict[str, int], log=print) -> Tuple[Dict[str, List[Sentence]], dict]:
    """{source: normalised sentences} for the pool sources with a positive count, and a report per source."""
    pools, report = {}, {}
    for name in ("lm", "web", "wordnet"):
        if not wanted.get(name):
            continue
        start = time.time()
        generated = 0.0
        try:
            if name == "lm":
                if not config.lm_model:
                    raise text_sources.SourceUnavailable("no --lm_model given")
                cache = text_sources.LMSentenceCache(text_sources.cache_path(config.text_cache_dir, config.seed),
                                                config.lm_model, config.seed)
                kept, dropped, generated = cache.sentences(wanted[name], config.nj, log)
                raw = len(kept) + sum(dropped.values())
            else:
                raw_sentences = (text_sources.web_sentences(config.web_dir) if name == "web"
                                 else text_sources.wordnet_sentences(config.wordnet_dir))
                kept, dropped = text_sources.normalise_all(raw_sentences)
                raw = len(raw_sentences)
        except text_sources.SourceUnavailable as err:
            log(f"note: text source {name} skipped: {err}")
            continue
        pools[name] = kept
        report[name] = (raw, len(kept), dropped, time.time() - start, generated)
    return pools, report


def draw_sentences(config: Config, rng: random.Random, counts: Dict[str, Dict[str, int]], pools, log=print
                   ) -> Dict[str, List[Tuple[str, Sentence]]]:
    """{split: [(source, Sentence)]} in a shuffled order; held-out splits' sentences never occur in train or in
    the other held-out split."""
    chosen = {split: [] for split in SPLITS}
    held = set()  # transcripts of dev and test_synth
    train_pools = {}
    # Pool sources: held-out sentences first (new to every source so far), the rest is for train.
    for name, pool in sorted(pools.items()):
        order = list(pool)
        rng.shuffle(order)
        rest = []
        wanted = {split: counts[split].get(name, 0) for split in ("test_synth", "dev")}
        for sentence in order:
            split = next((s for s in ("test_synth", "dev") if wanted[s]), None)
            if sentence.text in held:
                continue
            if split is None:
                rest.append(sentence)
            else:
                chosen[split].append((name, sentence))
                held.add(sentence.text)
                wanted[split] -= 1
        if any(wanted.values()):
            raise RuntimeError(f"text source {name} has {len(order)} sentences, too few for the held-out splits")
        train_pools[name] = rest
    for name, rest in sorted(train_pools.items()):
        rest = [sentence for sentence in rest if sentence.text not in held]
        need = counts["train"].get(name, 0)
        if need and not rest:
            raise RuntimeError(f"text source {name} has no sentence left for train")
        if need > len(rest):
            log(f"note: text source {name}: {len(rest)} sentences for {need} train utterances, "
                f"each used up to {math.ceil(need / len(rest))} times")
        chosen["train"] += [(name, rest[i % len(rest)]) for i in range(need)]
    # AN4 grammar: train sentences that are not held out, then held-out sentences new to everything before.
    used = {sentence.text for _, sentence in chosen["train"]}
    for split in ("train", "test_synth", "dev"):
        need, drawn = counts[split].get("an4", 0), 0
        for _ in range(1000 + 200 * need):
            if drawn == need:
                break
            sentence = text_sources.an4_sentence(rng)
            if sentence.text in held or (split != "train" and sentence.text in used):
                continue
            chosen[split].append(("an4", sentence))
            (used if split == "train" else held).add(sentence.text)
            drawn += 1
        if drawn < need:
            raise RuntimeError(f"could draw only {drawn} of {need} new AN4 sentences for {split}; use fewer "
                               f"utterances or a smaller an4 share")
    assert not used & held
    for split in SPLITS:
        rng.shuffle(chosen[split])
    return chosen


# ------------------------------------------------------------------------------------------------ plan

def augmentation_settings(rng: random.Random, augmented: bool, config: Config, sounds) -> dict:
    settings = {"peak_dbfs": round(rng.uniform(*PEAK_DBFS), 2), "lead_s": round(rng.uniform(*SILENCE_S), 3),
                "trail_s": round(rng.uniform(*SILENCE_S), 3)}
    if not augmented:
        return dict(settings, noise="white", snr_db=round(rng.uniform(*FLOOR_SNR_DB), 2), rir="none")
    noises = list(augment.NOISE_COLOURS) + [f"file:{name}" for name in (sounds or {}).get("noise", {})]
    rirs = [f"file:{name}" for name in (sounds or {}).get("rirs", {})] + ["synth"]
    rir = "none"
    if rng.random() < REVERB_SHARE:
        rir = rng.choice(rirs)
        if rir == "synth":
            rir = f"synth:{rng.uniform(*RT60_S):.2f}"
    return dict(settings, noise=rng.choice(noises), snr_db=round(rng.uniform(*config.snr_db), 2), rir=rir)


def make_plan(config: Config, available: Dict[str, tts.Engine], pools: Dict[str, List[Sentence]],
              sounds=None, log=print) -> List[Utterance]:
    """Every utterance with all its settings, in a fixed order (split, then index)."""
    source_weights = {name: w for name, w in config.sources.items() if name == "an4" or name in pools}
    if not any(w > 0 for w in source_weights.values()):
        raise RuntimeError("no text source is available (see the notes above)")
    engine_weights = {name: w for name, w in config.engines.items() if name in available}
    rng = random.Random(f"synth_english:{config.seed}:speakers")
    pools_by_split = voice_pools(rng, available, set(config.hold_out_voices))
    taken = set()
    text_counts = {split: apportion(config.counts[split], source_weights) for split in SPLITS}
    sentences = draw_sentences(config, random.Random(f"synth_english:{config.seed}:sentences"), text_counts,
                               pools, log)
    rng_utts = random.Random(f"synth_english:{config.seed}:utterances")
    plan = []
    for split in SPLITS:
        split_sentences = sentences[split]
        counts = apportion(len(split_sentences), engine_weights)
        speakers = make_speakers(rng, split, counts, pools_by_split, taken)
        share = config.augment_share if split == "train" else config.held_out_augment_share
        index = 0
        for engine in sorted(speakers):
            group = speakers[engine]
            for k in range(counts[engine]):
                speaker = group[k % len(group)]
                source, sentence = split_sentences[index]
                aug = augmentation_settings(rng_utts, rng_utts.random() < share, config, sounds)
                plan.append(Utterance(
                    id=f"{speaker.id}-{split}_{index:05d}", split=split, speaker=speaker.id, engine=engine,
                    voice=speaker.voice, rate=speaker.rate, pitch=speaker.pitch, engine_seed=speaker.seed,
                    seed=rng_utts.randrange(2 ** 31), source=source, text=sentence.text, spoken=sentence.spoken,
                    **aug))
                index += 1
    return plan


def plan_text(plan: Sequence[Utterance], config: Config) -> str:
    header = (f"# synth_english plan version {PLAN_VERSION} seed {config.seed} fs {config.fs} "
              f"counts {config.counts} engines {config.engines} sources {config.sources} "
              f"augment {config.augment_share}/{config.held_out_augment_share} snr {list(config.snr_db)}")
    lines = [header, "\t".join(PLAN_FIELDS)]
    lines += ["\t".join(str(getattr(utt, field)) for field in PLAN_FIELDS) for utt in plan]
    return "\n".join(lines) + "\n"


def claim_audio_dir(audio_dir: Path, text: str):
    """Record the plan in audio_dir, or refuse if audio_dir holds audio made from another plan."""
    plan_file = audio_dir / "plan.tsv"
    if plan_file.exists():
        if plan_file.read_text() != text:
            raise RuntimeError(f"{plan_file} records a different corpus (other --seed/--num_*/--fs or other corpus "
                               f"options, other engines or text sources installed, or another generator version): "
                               f"delete {audio_dir} or pass another --audio_dir")
        return
    audio_dir.mkdir(parents=True, exist_ok=True)
    plan_file.write_text(text)


# ------------------------------------------------------------------------------------------------ audio

def wav_path(audio_dir, utt: Utterance) -> str:
    return os.path.join(audio_dir, "wav", utt.split, utt.id + ".wav")


def write_wav(path: str, samples: np.ndarray, fs: int):
    """16-bit mono PCM; written beside and renamed so an interrupted run never leaves a truncated file."""
    partial = path + ".partial"
    with wave.open(partial, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(fs)
        out.writeframes(samples.astype("<i2").tobytes())
    os.replace(partial, path)


def wav_frames(path: str) -> int:
    with wave.open(path, "rb") as wav:
        return wav.getnframes()


_SOUNDS = None  # the noise archive's sounds, loaded by the parent and inherited by the forked workers


def cpu_seconds() -> float:
    """CPU time of this process and of the programs it ran (flite, festival), to the microsecond: os.times()
    counts 10 ms ticks, so a fast engine on a few short sentences would read 0."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def synthesize_speaker(job):
    """Runs in a fresh process: all of one speaker's utterances, in order. Returns the engine, the seconds spent
    in the engine, the seconds of audio it made, and (utt id, frames, written?) per utterance."""
    utterances, audio_dir, fs = job
    first = utterances[0]
    engine = tts.get_engine(first.engine, seed=first.engine_seed)
    requests = [tts.Request(u.spoken, u.voice, u.rate, u.pitch, u.seed) for u in utterances]
    before = cpu_seconds()
    outputs = engine.synthesize_batch(requests)
    engine_seconds = cpu_seconds() - before
    results, audio_seconds = [], 0.0
    for utt, (samples, rate) in zip(utterances, outputs):
        if len(samples) == 0 or not np.any(samples):
            raise RuntimeError(f"{utt.engine} made no audio for {utt.id} ({utt.spoken!r})")
        audio_seconds += len(samples) / rate
        speech = tts.resample_ratio(samples, Fraction(fs, rate))
        wav = augment.apply(speech, fs, utt.augmentation(), _SOUNDS)
        path = wav_path(audio_dir, utt)
        written = not os.path.exists(path)
        if written:
            write_wav(path, wav, fs)
        results.append((utt.id, len(wav), written))
    return first.engine, engine_seconds, audio_seconds, results


# Rough cost per utterance, to start the slow speakers first and keep all workers busy to the end.
ENGINE_COST = {"piper": 8.0, "festival": 2.0, "hibari": 1.0, "flite": 1.0, "espeak": 0.3}


def synthesize_all(plan, audio_dir, fs, nj, log=print, worker=None):
    """Frames per utterance id, files written, and {engine: [cpu seconds, audio seconds]} of this run.

    ``worker`` (default: synthesize_speaker) takes ``(utterances of one speaker, audio_dir, fs)`` in a fresh process
    and returns what synthesize_speaker returns; speakers whose files all exist are reused without synthesis."""
    worker = worker or synthesize_speaker
    by_speaker = collections.defaultdict(list)
    for utt in plan:
        by_speaker[utt.speaker].append(utt)
    for split in sorted({utt.split for utt in plan}):
        os.makedirs(os.path.join(audio_dir, "wav", split), exist_ok=True)
    frames, written, speed = {}, 0, collections.defaultdict(lambda: [0.0, 0.0])
    jobs = []
    for speaker, utterances in sorted(by_speaker.items()):
        paths = [wav_path(audio_dir, utt) for utt in utterances]
        if all(os.path.exists(path) for path in paths):
            frames.update((utt.id, wav_frames(path)) for utt, path in zip(utterances, paths))
        else:
            jobs.append((utterances, audio_dir, fs))
    jobs.sort(key=lambda job: -ENGINE_COST.get(getattr(job[0][0], "engine", ""), 1.0) * len(job[0]))
    if jobs:
        # maxtasksperchild=1: every speaker gets a fresh process (see the module doc).
        context = multiprocessing.get_context("fork")
        done, start = 0, time.time()
        with context.Pool(min(nj, len(jobs)), maxtasksperchild=1) as pool:
            for engine, cpu, audio, results in pool.imap_unordered(worker, jobs, chunksize=1):
                speed[engine][0] += cpu
                speed[engine][1] += audio
                for utt_id, n, was_written in results:
                    frames[utt_id] = n
                    written += was_written
                done += 1
                if done % 25 == 0 or done == len(jobs):
                    log(f"synthesised {done}/{len(jobs)} speakers in {time.time() - start:.0f} s")
    return frames, written, dict(speed)


# ------------------------------------------------------------------------------------------------ data dirs

def write_lines(path: Path, lines):
    path.write_text("".join(line + "\n" for line in lines))


def write_data_dir(data_dir: Path, utterances, audio_dir):
    """wav.scp, text, utt2spk, spk2utt sorted in C-locale byte order (Python's str order for ASCII ids)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    utterances = sorted(utterances, key=lambda utt: utt.id)
    speakers_in_utt_order = [utt.speaker for utt in utterances]
    if speakers_in_utt_order != sorted(speakers_in_utt_order):
        raise AssertionError(f"{data_dir}: utterance order does not group speakers; fix the id scheme")
    write_lines(data_dir / "wav.scp", [f"{utt.id} {wav_path(audio_dir, utt)}" for utt in utterances])
    write_lines(data_dir / "text", [f"{utt.id} {utt.text}" for utt in utterances])
    write_lines(data_dir / "utt2spk", [f"{utt.id} {utt.speaker}" for utt in utterances])
    spk2utt = collections.defaultdict(list)
    for utt in utterances:
        spk2utt[utt.speaker].append(utt.id)
    write_lines(data_dir / "spk2utt", [f"{spk} {' '.join(ids)}" for spk, ids in sorted(spk2utt.items())])


# ------------------------------------------------------------------------------------------------ summary

def words_of(texts) -> set:
    return {word for text in texts for word in text.split()}


def summary(plan, frames, fs, speed) -> str:
    by_split = {split: [utt for utt in plan if utt.split == split] for split in SPLITS}
    rows = [f"{'split':<10} {'utts':>6} {'speakers':>8} {'hours':>7} {'vocab':>6} {'distinct sentences':>19} "
            f"{'median s':>8} {'max s':>6}"]
    for split, utterances in by_split.items():
        seconds = np.array([frames[utt.id] / fs for utt in utterances]) if utterances else np.zeros(1)
        texts = [utt.text for utt in utterances]
        rows.append(f"{split:<10} {len(utterances):>6} {len({utt.speaker for utt in utterances}):>8} "
                    f"{seconds.sum() / 3600:>7.3f} {len(words_of(texts)):>6} {len(set(texts)):>19} "
                    f"{np.median(seconds):>8.2f} {seconds.max():>6.2f}")
    engines_used = sorted({utt.engine for utt in plan})
    rows.append("speakers per engine: " + "; ".join(
        f"{split} " + ", ".join(f"{e} {len({u.speaker for u in by_split[split] if u.engine == e})}"
                                for e in engines_used) for split in SPLITS))
    rows.append("voices per engine: " + ", ".join(f"{e} {len({u.voice for u in plan if u.engine == e})}"
                                                  for e in engines_used))
    rows.append("utterances per text source: " + "; ".join(
        f"{split} " + ", ".join(f"{s} {n}" for s, n in sorted(collections.Counter(u.source for u in by_split[split])
                                                             .items())) for split in SPLITS))
    train_words = words_of(utt.text for utt in by_split["train"])
    for split in ("dev", "test_synth"):
        tokens = [w for utt in by_split[split] for w in utt.text.split()]
        if tokens:
            oov = sum(w not in train_words for w in tokens)
            rows.append(f"{split} words not in train: {oov}/{len(tokens)} tokens ({100 * oov / len(tokens):.1f}%)")
    rows.append(f"vocabulary of all splits: {len(words_of(utt.text for utt in plan))} words; augmented "
                f"(noise above the floor or reverberation): "
                + ", ".join(f"{split} {sum(u.rir != 'none' or u.snr_db < FLOOR_SNR_DB[0] for u in by_split[split])}"
                            for split in SPLITS))
    if speed:
        rows.append("synthesis speed (x real time, one core, engine only): " + ", ".join(
            f"{e} {audio / cpu:.0f}x ({audio / 3600:.2f} h)" if cpu > 0 else f"{e} -"
            for e, (cpu, audio) in sorted(speed.items())))
    return "\n".join(rows)


def build(config: Config, audio_dir: str, data_dir: str, log=print) -> List[Utterance]:
    """Plans, synthesises (reusing what audio_dir already has) and writes the data dirs; prints a summary."""
    global _SOUNDS
    start = time.time()
    available = usable_engines(config, log)
    wanted_pool = collections.Counter()
    for split in SPLITS:
        for name, n in apportion(config.counts[split], config.sources).items():
            wanted_pool[name] += n
    pools, report = load_pools(config, wanted_pool, log)
    for name, (raw, kept, dropped, seconds, generated) in sorted(report.items()):
        text_sources.report_drops(name, raw, kept, dropped, out=sys.stdout)
        if generated:
            log(f"text source {name}: generated in {generated:.0f} s")
    sounds = None
    if config.noise_archive and Path(config.noise_archive).is_file():
        sounds = augment.load_archive_sounds(config.noise_archive, config.fs)
        log(f"augmentation: {len(sounds['noise'])} noises and {len(sounds['rirs'])} room impulse responses "
            f"from {config.noise_archive}, with synthetic ones")
    else:
        log(f"note: noise archive {config.noise_archive} not found: augmentation uses synthetic noise and room "
            f"responses only")
    plan = make_plan(config, available, pools, sounds, log)
    claim_audio_dir(Path(audio_dir), plan_text(plan, config))
    _SOUNDS = sounds
    synth_start = time.time()
    frames, written, speed = synthesize_all(plan, audio_dir, config.fs, config.nj, log)
    synth_seconds = time.time() - synth_start
    for split in SPLITS:
        write_data_dir(Path(data_dir) / split, [utt for utt in plan if utt.split == split], audio_dir)
    log(summary(plan, frames, config.fs, speed))
    log(f"audio: {written} files synthesised, {len(plan) - written} reused from {audio_dir} "
        f"({synth_seconds:.0f} s of synthesis, {time.time() - start:.0f} s in all)")
    return plan
