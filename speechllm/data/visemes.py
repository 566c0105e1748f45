"""Visemes: mouth shapes driven by eSpeak NG's phoneme events, drawn as lip-ROI frames (the synthetic AV corpus).

Three steps, each usable alone (egs2/synth_av/speechllm1/local/synthesize_av.py chains them):

1. ``PhonemeESpeak.synthesize_with_phones``: the audio of a sentence and eSpeak NG's own phoneme events, each with
   the sample at which eSpeak starts it (``espeakINITIALIZE_PHONEME_EVENTS``; the library of the PyPI package
   espeakng-loader, no ``espeak-ng`` program needed). The events are exact: the last one ends on the last sample.
2. ``mouth_trajectory``: each phoneme maps to one viseme, or two for a diphthong (``VISEMES``: jaw opening, lip
   spreading, lip rounding, teeth and tongue showing), and the targets are blended by Cohen and Massaro's
   dominance model of coarticulation: each segment pulls the mouth towards its target with a weight that decays
   exponentially with the distance in time from the segment, so a /k/ before /u:/ is already rounded, while lip
   closures (/p b m/, dominance 6) and lip-teeth contact (/f v/) win against their neighbours.
3. ``render_mouth``: the lower face drawn with soft-edged implicit shapes (lips with a Cupid's bow, the dark mouth
   opening with teeth and tongue, nostrils, the chin fold and jawline that drop as the jaw opens), per-speaker
   appearance (``Face``) and per-frame head motion and sensor noise, as 96 x 96 uint8 frames laid out like the
   lip ROIs that speechllm.data.lip_roi cuts (mouth centre in the middle, nose base at the top). ``render_face``
   draws the whole face on a larger canvas with the same mouth, for videos that go through the lip-ROI extractor.

Everything is numpy and deterministic: the same phones, face and seed give the same bytes.
"""
from __future__ import annotations

import ctypes
import math
from dataclasses import asdict, dataclass

import numpy as np

from speechllm.data.video import ROI_FPS, ROI_SIZE
from speechllm.synth import espeak

# ----------------------------------------------------------------------------------------- eSpeak phoneme events

INITIALIZE_PHONEME_EVENTS = 0x0001  # espeakINITIALIZE_PHONEME_EVENTS: report every phoneme as an event
EVENT_LIST_TERMINATED, EVENT_END, EVENT_PHONEME = 0, 5, 7
MAX_ECHO_S = 0.2  # seconds of audio that may follow eSpeak's end-of-message event (a voice's echo)
PAUSE = "_"  # eSpeak's name of a pause; the leading and trailing silence we add are pauses too


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h: `sample` is the position in samples at eSpeak's own rate."""
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_EVENT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Phone:
    name: str  # eSpeak NG's phoneme mnemonic with its stress mark, e.g. "'oU", or "_" for a pause
    start: float  # seconds
    end: float


class PhonemeESpeak(espeak.ESpeak):
    """speechllm.synth.espeak.ESpeak initialised with phoneme events on; one per process, as ESpeak.

    ESpeak.__init__ initialises the library without the events flag and the library cannot be initialised twice
    cleanly, so this repeats its few lines with the flag (the voice, parameter and seed methods are inherited)."""

    def __init__(self):
        loader = espeak.import_loader()
        self.lib = ctypes.CDLL(loader.get_library_path())
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = self.lib.espeak_Initialize(espeak.AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                      loader.get_data_path().encode(), INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.sample_rate}) with the voice data at "
                               f"{loader.get_data_path()}; reinstall espeakng-loader")
        self._chunks, self._events, self.end_sample = [], [], 0
        self._callback = _EVENT_CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count, events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        index = 0
        while events[index].type != EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == EVENT_PHONEME:
                self._events.append((event.id.string.decode("ascii", "replace"), event.sample))
            elif event.type == EVENT_END:
                self._events.append((None, event.sample))
            index += 1
        return 0

    def synthesize_with_phones(self, text: str) -> tuple[np.ndarray, list[Phone]]:
        """int16 samples at self.sample_rate and the phones that cover them from the first phoneme on (the last, a
        pause, ends on the last sample; self.end_sample is where eSpeak's end-of-message event is: the same sample,
        or up to MAX_ECHO_S earlier for a voice with an echo)."""
        self._events = []
        samples = self.synthesize(text)
        phonemes = [(name, sample) for name, sample in self._events if name is not None]
        if not phonemes:
            raise RuntimeError(f"eSpeak NG reported no phoneme events for {text!r}")
        self.end_sample = max(sample for _, sample in self._events)
        # Variants with an echo (`echo` in their voice file: m2, f2..f5) ring on after the end event, into the
        # final pause; audio that stops before the events do, or rings on for long, means other timings.
        ring = len(samples) - self.end_sample
        if not -self.sample_rate // 1000 <= ring <= MAX_ECHO_S * self.sample_rate:
            raise RuntimeError(f"eSpeak NG's events end at sample {self.end_sample} but its audio has "
                               f"{len(samples)} samples for {text!r}: this espeakng-loader reports other timings; "
                               f"install the version in tools/constraints.txt")
        ends = [sample for _, sample in phonemes[1:]] + [len(samples)]
        return samples, [Phone(name, start / self.sample_rate, end / self.sample_rate)
                         for (name, start), end in zip(phonemes, ends) if end > start]


def shift_phones(phones: list[Phone], offset: float, total: float) -> list[Phone]:
    """Phones moved by `offset` seconds (the silence put before the speech) with pauses filling [0, total]."""
    moved = [Phone(p.name, p.start + offset, p.end + offset) for p in phones]
    if moved[0].start > 0:
        moved.insert(0, Phone(PAUSE, 0.0, moved[0].start))
    if moved[-1].end < total:
        moved.append(Phone(PAUSE, moved[-1].end, total))
    return moved


def read_phones(path) -> list[Phone]:
    """Phones from a file of `start end name` lines (seconds), as write_phones writes them."""
    phones = []
    with open(path) as stream:
        for number, line in enumerate(stream, 1):
            fields = line.split()
            if len(fields) != 3:
                raise ValueError(f"{path} line {number}: expected 'start end phoneme', got {line.strip()!r}; "
                                 f"regenerate the file (local/data.sh of egs2/synth_av writes it)")
            phones.append(Phone(fields[2], float(fields[0]), float(fields[1])))
    return phones


def phones_text(phones: list[Phone]) -> str:
    return "".join(f"{p.start:.5f} {p.end:.5f} {p.name}\n" for p in phones)


# ----------------------------------------------------------------------------------------- visemes

@dataclass(frozen=True)
class Viseme:
    """A mouth target. open: jaw and lip opening (0 closed, 1 wide; below 0 pressed shut, which coarticulation
    needs for a closure to be reached); spread: lip corners drawn back; round: lips rounded and pushed forward;
    teeth, tongue: how much of them shows in the opening (0..1). dominance: the pull against the neighbours on the
    parameters in `controls`; on the others the segment pulls with LOW_DOMINANCE and follows its neighbours."""
    open: float
    spread: float
    round: float
    teeth: float
    tongue: float
    dominance: float
    controls: tuple[str, ...]


LOW_DOMINANCE = 0.15
ALL = ("open", "spread", "round", "teeth", "tongue")
VISEMES = {
    "rest": Viseme(-0.3, 0.0, 0.0, 0.0, 0.0, 2.0, ALL),  # pauses: closed and relaxed
    "bilabial": Viseme(-0.8, 0.0, 0.0, 0.0, 0.0, 6.0, ("open", "teeth", "tongue")),  # p b m: lips pressed
    "labiodental": Viseme(0.1, 0.2, 0.0, 1.0, 0.0, 4.0, ("open", "teeth", "tongue")),  # f v: lip under the teeth
    "dental": Viseme(0.3, 0.2, 0.0, 0.8, 1.0, 3.0, ("open", "teeth", "tongue")),  # th: tongue between the teeth
    "alveolar": Viseme(0.2, 0.3, 0.0, 0.8, 0.3, 1.0, ("open", "teeth")),  # t d n s z: teeth close together
    "lateral": Viseme(0.35, 0.2, 0.0, 0.5, 0.8, 1.0, ("tongue",)),  # l: the tongue tip raised behind the teeth
    "postalveolar": Viseme(0.25, 0.0, 0.8, 0.8, 0.0, 2.5, ("round", "spread", "teeth")),  # sh ch j: lips forward
    "velar": Viseme(0.35, 0.1, 0.0, 0.3, 0.1, LOW_DOMINANCE, ()),  # k g ng: the mouth follows the vowels
    "glottal": Viseme(0.4, 0.0, 0.0, 0.2, 0.1, LOW_DOMINANCE, ()),  # h, glottal stop: the next vowel's shape
    "r": Viseme(0.2, 0.0, 0.6, 0.3, 0.0, 1.5, ("round", "spread")),
    "w": Viseme(0.05, 0.0, 1.0, 0.0, 0.0, 4.0, ("open", "round", "spread")),
    "j": Viseme(0.18, 0.8, 0.0, 0.6, 0.2, 1.5, ("spread",)),
    "open": Viseme(1.0, 0.2, 0.0, 0.4, 0.3, 2.0, ALL),  # a A: aa
    "mid_front": Viseme(0.6, 0.6, 0.0, 0.6, 0.3, 2.0, ALL),  # e E
    "close_front": Viseme(0.25, 1.0, 0.0, 0.9, 0.2, 2.0, ALL),  # i i: I
    "mid_central": Viseme(0.45, 0.2, 0.0, 0.3, 0.3, 2.0, ALL),  # @ V 3
    "open_back_round": Viseme(0.75, 0.0, 0.5, 0.2, 0.2, 2.0, ALL),  # 0 O O:
    "mid_back_round": Viseme(0.45, 0.0, 0.8, 0.1, 0.1, 2.0, ALL),  # o
    "close_back_round": Viseme(0.15, 0.0, 1.0, 0.0, 0.0, 2.0, ALL),  # u: U
}

# eSpeak NG's English phoneme mnemonics (phsource/ph_english*; stress marks removed) -> their viseme, or the two
# of a diphthong (first half, second half).
PHONEME_VISEMES = {
    "_": ("rest",), "_:": ("rest",), "_!": ("rest",), "_|": ("rest",),
    "p": ("bilabial",), "b": ("bilabial",), "m": ("bilabial",), "m-": ("bilabial",),
    "f": ("labiodental",), "v": ("labiodental",),
    "T": ("dental",), "D": ("dental",),
    "t": ("alveolar",), "d": ("alveolar",), "n": ("alveolar",), "s": ("alveolar",), "z": ("alveolar",),
    "t#": ("alveolar",), "d#": ("alveolar",), "t2": ("alveolar",), "d2": ("alveolar",), "t[": ("alveolar",),
    "n-": ("alveolar",), "z#": ("alveolar",),
    "l": ("lateral",), "l-": ("lateral",), "@L": ("mid_central", "lateral"),
    "S": ("postalveolar",), "Z": ("postalveolar",), "tS": ("postalveolar",), "dZ": ("postalveolar",),
    "k": ("velar",), "g": ("velar",), "N": ("velar",), "x": ("velar",),
    "h": ("glottal",), "?": ("glottal",),
    "r": ("r",), "r-": ("r",), "w": ("w",), "W": ("w",), "j": ("j",),
    "a": ("open",), "a#": ("open",), "aa": ("open",), "A:": ("open",), "A": ("open",),
    "A@": ("open", "mid_central"),
    "e": ("mid_front",), "E": ("mid_front",), "e@": ("mid_front", "mid_central"),
    "i": ("close_front",), "i:": ("close_front",), "I": ("close_front",), "I2": ("close_front",),
    "I#": ("close_front",), "i@": ("close_front", "mid_central"), "i@3": ("close_front", "mid_central"),
    "IR": ("close_front", "r"),
    "@": ("mid_central",), "@2": ("mid_central",), "@5": ("mid_central",), "3": ("mid_central",),
    "3:": ("mid_central", "r"), "V": ("mid_central",),
    "0": ("open_back_round",), "O": ("open_back_round",), "O:": ("open_back_round",),
    "O@": ("open_back_round", "mid_central"), "o@": ("mid_back_round", "mid_central"),
    "oU": ("mid_back_round", "close_back_round"), "OI": ("open_back_round", "close_front"),
    "u:": ("close_back_round",), "U": ("close_back_round",), "U@": ("close_back_round", "mid_central"),
    "aI": ("open", "close_front"), "aI2": ("open", "close_front"), "aI@": ("open", "close_front"),
    "aI3": ("open", "close_front"), "aU": ("open", "close_back_round"), "aU@": ("open", "close_back_round"),
    "eI": ("mid_front", "close_front"),
}
VOWEL_LETTERS = set("aeiouAEIOUV03@")


def visemes_of(name: str) -> tuple[str, ...]:
    """The viseme(s) of an eSpeak phoneme mnemonic; stress marks are ignored. A mnemonic missing from the table
    (another language's phoneme) falls back on its first letter: a vowel letter is a central vowel, anything else
    an alveolar consonant, the least distinctive shapes."""
    base = name.lstrip("',%=")
    if base in PHONEME_VISEMES:
        return PHONEME_VISEMES[base]
    return ("mid_central",) if base[:1] in VOWEL_LETTERS else ("alveolar",)


PARAMETERS = ALL
COARTICULATION_TAU = 0.02  # seconds: a segment's pull falls to 1/e this far outside it


def viseme_segments(phones: list[Phone]) -> list[tuple[float, float, Viseme]]:
    """(start, end, viseme) per phone, a diphthong split into two halves."""
    segments = []
    for phone in phones:
        names = visemes_of(phone.name)
        step = (phone.end - phone.start) / len(names)
        for index, name in enumerate(names):
            segments.append((phone.start + index * step, phone.start + (index + 1) * step, VISEMES[name]))
    return segments


def frame_count(num_samples: int, fs: int) -> int:
    """Video frames at ROI_FPS for audio of num_samples at fs: the frame whose start lies within the audio."""
    return max(1, math.ceil(num_samples * ROI_FPS / fs))


def mouth_trajectory(phones: list[Phone], num_frames: int, fps: int = ROI_FPS) -> dict[str, np.ndarray]:
    """Per parameter of PARAMETERS, its value at each frame's centre: the dominance-weighted blend of the viseme
    targets (Cohen & Massaro 1993), weights D * exp(-distance / COARTICULATION_TAU), distance 0 inside a segment,
    D the viseme's dominance on the parameters it controls and LOW_DOMINANCE on the others."""
    segments = viseme_segments(phones)
    times = (np.arange(num_frames) + 0.5) / fps
    starts = np.array([s for s, _, _ in segments])[:, None]
    ends = np.array([e for _, e, _ in segments])[:, None]
    distance = np.maximum(0.0, np.maximum(starts - times, times - ends))
    closeness = np.exp(-distance / COARTICULATION_TAU)
    trajectory = {}
    for name in PARAMETERS:
        dominance = np.array([v.dominance if name in v.controls else LOW_DOMINANCE for _, _, v in segments])
        weights = dominance[:, None] * closeness
        targets = np.array([getattr(v, name) for _, _, v in segments])[:, None]
        blend = (weights * targets).sum(axis=0) / weights.sum(axis=0)
        trajectory[name] = np.clip(blend, 0.0, 1.0)
    return trajectory


# ----------------------------------------------------------------------------------------- drawing

@dataclass(frozen=True)
class Face:
    """A speaker's look, in pixels of the 96 x 96 ROI (mouth centre at (48, mouth_y)) and gray levels."""
    skin: float  # gray level of the skin
    lip_contrast: float  # how much darker the lips are than the skin
    half_width: float  # half the mouth width at rest
    upper_lip: float  # thickness of the upper lip at its middle
    lower_lip: float
    max_open: float  # lip opening at open = 1
    mouth_y: float
    nose_gap: float  # from the mouth centre up to the nostrils
    chin_gap: float  # from the mouth centre down to the chin fold
    mustache: float  # darkness of a mustache (0: none)
    light: float  # left-right shading, gray levels per pixel from the centre
    jitter: float  # head motion amplitude in pixels

    @classmethod
    def draw(cls, rng: np.random.Generator, male: bool = False) -> "Face":
        """A random face; `male` allows a mustache (a third of the male speakers have one)."""
        return cls(skin=round(float(rng.uniform(80, 205)), 1), lip_contrast=round(float(rng.uniform(28, 60)), 1),
                   half_width=round(float(rng.uniform(19, 26)), 1), upper_lip=round(float(rng.uniform(3.5, 7)), 1),
                   lower_lip=round(float(rng.uniform(5, 10)), 1), max_open=round(float(rng.uniform(16, 24)), 1),
                   mouth_y=round(float(rng.uniform(46, 52)), 1), nose_gap=round(float(rng.uniform(15, 20)), 1),
                   chin_gap=round(float(rng.uniform(17, 23)), 1),
                   mustache=round(float(rng.uniform(25, 55)), 1) if male and rng.random() < 1 / 3 else 0.0,
                   light=round(float(rng.uniform(-0.5, 0.5)), 2), jitter=round(float(rng.uniform(0.5, 2.0)), 2))

    def as_text(self) -> str:
        return " ".join(f"{key}={value}" for key, value in asdict(self).items())


def _inside(distance, softness: float = 0.7):
    """Soft mask from a signed distance in pixels (positive inside): 1 inside, 0 outside, a linear edge
    2 * softness wide (anti-aliasing; a ramp costs a tenth of a sigmoid)."""
    return np.clip(0.5 + distance * (0.5 / softness), 0.0, 1.0)


def _bump(distance_squared):
    """A smooth bump, 1 at 0 and 0 from 1 on: (1 - d^2)^2, a cheap stand-in for a Gaussian."""
    return np.square(np.clip(1.0 - distance_squared, 0.0, 1.0))


def head_motion(rng: np.random.Generator, num_frames: int, amplitude: float) -> np.ndarray:
    """Per frame (dx, dy, angle in radians, scale): a smooth random walk around rest, pulled back to it."""
    motion = np.zeros((num_frames, 4))
    state = np.zeros(4)
    steps = rng.standard_normal((num_frames, 4)) * np.array([0.35, 0.35, 0.006, 0.004]) * amplitude
    for frame in range(num_frames):
        state = 0.85 * state + steps[frame]
        motion[frame] = state
    motion[:, 3] += 1.0
    return motion


def _draw(x, y, params, face: Face, with_face: bool = False):
    """Gray levels (float32) of the lower face, or the whole face, at coordinates relative to the mouth centre
    (pixels; x, y are T x H x W, every parameter T x 1 x 1)."""
    opening, rounding, teeth_shown = params["open"], params["round"], params["teeth"]
    inner_w = face.half_width * (1.0 + 0.18 * params["spread"] - 0.38 * rounding)
    outer_w = inner_w + 2.0 + 1.5 * rounding
    gap = face.max_open * opening * (1.0 - 0.25 * rounding)
    jaw_drop = 0.65 * gap  # the jaw carries the lower lip: the opening lies mostly below the lip line
    across_in = np.clip(1.0 - np.square(x / inner_w), 0.0, 1.0)
    across_out = np.clip(1.0 - np.square(x / outer_w), 0.0, 1.0)
    shape_in = np.sqrt(across_in) * (1.0 - 0.3 * rounding) + across_in * (0.3 * rounding)  # rounded: rounder
    upper_edge = -0.35 * gap * shape_in
    lower_edge = jaw_drop * shape_in
    cupid_bow = 1.0 - 0.3 * _bump(np.square(x / (0.2 * outer_w)))
    upper_thick = face.upper_lip * (1.0 + 0.4 * rounding) * np.sqrt(across_out) * cupid_bow
    tuck = 1.0 - 0.45 * teeth_shown * (opening < 0.15)  # /f v/: the lower lip drawn in under the teeth
    lower_thick = face.lower_lip * (1.0 + 0.3 * rounding) * tuck * across_out ** 0.6
    abs_x = np.abs(x)
    lips = _inside(np.minimum(np.minimum(y - (upper_edge - upper_thick), (lower_edge + lower_thick) - y),
                              outer_w - abs_x))
    hole = _inside(np.minimum(np.minimum(y - upper_edge, lower_edge - y), inner_w - abs_x), 0.5)

    image = face.skin + face.light * x - 0.12 * np.maximum(y, 0.0)  # light from one side and from above
    nose_y = -face.nose_gap
    image += 18.0 * _bump(np.square(x / 12.0) + np.square((y - nose_y + 6.0) / 8.0))  # the nose tip's highlight
    for side in (-1.0, 1.0):
        nostril = np.square((x - side * 7.5) / 3.6) + np.square((y - nose_y) / 2.0)
        image -= 70.0 * _inside(1.0 - nostril, 0.3)
    if face.mustache:
        image -= face.mustache * _inside(np.minimum(np.minimum(y - (nose_y + 4.0), -face.upper_lip - 1.0 - y),
                                                    face.half_width + 4.0 - abs_x), 1.2)
    # The chin fold below the lower lip and the outline of the face move down with the jaw.
    fold = (y - face.chin_gap * 0.6 - jaw_drop - 0.004 * np.square(x)) / 3.0
    image -= 22.0 * _bump(np.square(fold) + np.square(x / 22.0))
    below = y > 0
    outline = np.square(x / 68.0) + np.square((y - 0.8 * jaw_drop * below + 40.0) / 100.0)
    image *= 1.0 - 0.45 * _inside((outline - 1.0) * 60.0, 1.5)
    # Lips: darker than the skin, the lower one with a highlight; a dark seam where they meet.
    lower_mid = (y - lower_edge - 0.45 * lower_thick) / (0.3 * face.lower_lip + 0.5)
    image -= face.lip_contrast * lips * (1.0 - 0.3 * _bump(np.square(lower_mid)) * below)
    seam = _bump(np.square(y / 1.2)) * (across_in > 0) * (1.0 - hole)
    image -= 0.5 * face.lip_contrast * seam
    # Inside the opening: dark, upper teeth at the top, the tongue at the bottom.
    teeth_height = teeth_shown * np.minimum(gap, 0.3 * face.max_open) + 0.8 * teeth_shown
    teeth = _inside(upper_edge + teeth_height - y) * _inside(0.75 * inner_w - abs_x)
    tongue_top = lower_edge - (0.25 + 0.6 * params["tongue"]) * gap
    tongue = _inside(y - tongue_top) * _inside(0.55 * inner_w - abs_x) * (1.0 - 0.7 * teeth)
    inside = 28.0 + 172.0 * teeth
    inside += (95.0 - inside) * tongue
    image += (inside - image) * hole
    if with_face:
        image = _add_upper_face(image, x, y, face)
    return image


def _add_upper_face(image, x, y, face: Face):
    """Eyes, brows, nose ridge and the face outline around the lower face, in the proportions of
    speechllm.data.lip_roi's mean face (eye centres 64 px apart, 59 px above the mouth centre)."""
    eye_y = -59.0
    for side in (-1.0, 1.0):
        ex = x - side * 32.0
        white = _inside(1.0 - np.sqrt(np.square(ex / 11.0) + np.square((y - eye_y) / 5.0)), 0.08)
        iris = _inside(1.0 - np.sqrt(np.square(ex / 4.5) + np.square((y - eye_y) / 4.5)), 0.15) * white
        image = image + (225.0 - image) * white
        image = image + (35.0 - image) * iris
        brow = _inside(np.minimum(2.0 - np.abs(y - eye_y + 13.0 + 0.015 * np.square(ex)), 13.0 - np.abs(ex)), 0.6)
        image = image - 0.5 * face.skin * brow
    image = image - 12.0 * _bump(np.square((x - 5.0) / 3.0)) * ((y > -52.0) & (y < -face.nose_gap - 5.0))
    hair = _inside(np.minimum(-y - 78.0, 70.0 - np.abs(x)), 2.0)  # hair above the forehead
    return image - 0.6 * image * hair


CHUNK_PIXELS = 1 << 20  # frames are drawn in chunks of about this many pixels, to bound the memory


def _render(params, face: Face, seed: int, size: tuple[int, int], centre: tuple[float, float],
            with_face: bool) -> np.ndarray:
    num_frames = len(params["open"])
    rng = np.random.default_rng(seed)
    motion = head_motion(rng, num_frames, face.jitter).astype(np.float32)
    step = max(1, CHUNK_PIXELS // (size[0] * size[1]))
    chunks = [_render_chunk({name: values[start:start + step] for name, values in params.items()},
                            motion[start:start + step], face, size, centre, with_face)
              for start in range(0, num_frames, step)]
    frames = np.concatenate(chunks)
    frames += 2.0 * rng.standard_normal(frames.shape, dtype=np.float32)  # sensor noise
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)


def _render_chunk(params, motion, face: Face, size, centre, with_face: bool) -> np.ndarray:
    height, width = size
    rows = np.arange(height, dtype=np.float32)[None, :, None] - (centre[1] + motion[:, 1, None, None])
    cols = np.arange(width, dtype=np.float32)[None, None, :] - (centre[0] + motion[:, 0, None, None])
    cos, sin = np.cos(motion[:, 2])[:, None, None], np.sin(motion[:, 2])[:, None, None]
    scale = motion[:, 3, None, None]
    x = (cos * cols + sin * rows) / scale
    y = (cos * rows - sin * cols) / scale
    per_frame = {name: values.astype(np.float32)[:, None, None] for name, values in params.items()}
    return _draw(x, y, per_frame, face, with_face).astype(np.float32)


def render_mouth(params: dict[str, np.ndarray], face: Face, seed: int) -> np.ndarray:
    """uint8 frames x ROI_SIZE x ROI_SIZE of the mouth region, one frame per value of each trajectory parameter."""
    return _render(params, face, seed, (ROI_SIZE, ROI_SIZE), (ROI_SIZE / 2, face.mouth_y), with_face=False)


FACE_SIZE = 256  # the canvas of lip_roi's mean face, whose mouth centre is at (128, 170.9)


def render_face(params: dict[str, np.ndarray], face: Face, seed: int) -> np.ndarray:
    """uint8 frames x FACE_SIZE x FACE_SIZE of the whole face, placed as lip_roi's mean face, with the same mouth
    and head motion as render_mouth gives for the same seed."""
    return _render(params, face, seed, (FACE_SIZE, FACE_SIZE), (FACE_SIZE / 2, 170.9), with_face=True)
