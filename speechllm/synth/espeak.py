"""eSpeak NG through ctypes, from the PyPI package ``espeakng-loader`` (library and voice data, no system install).

eSpeak NG keeps synthesis state in C statics that neither ``espeak_Terminate`` nor ``espeak_Initialize`` reset
(the pitch-flutter phase, the gain control), so the same sentence comes out slightly different depending on what
was spoken before it in the same process. Callers who need reproducible audio must synthesise a fixed sequence
of sentences in a fresh process (one process per speaker: speechllm.synth.corpus, egs2/synth_an4's synthesize.py).
"""
import ctypes
from pathlib import Path

import numpy as np

INSTALL_HINT = ("install it into the Python that runs this recipe: `pip install espeakng-loader` "
                "(or run this project's tools/install.sh, which installs it with the demo extras)")

AUDIO_OUTPUT_SYNCHRONOUS = 2
CHARS_UTF8 = 1
POS_CHARACTER = 1
PARAMETER_IDS = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}
SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

# English language voices ("accents"): short name -> eSpeak NG voice.
ACCENTS = {"us": "en-us", "gb": "en", "sco": "en-gb-scotland", "rp": "en-gb-x-rp", "lan": "en-gb-x-gbclan",
           "wmd": "en-gb-x-gbcwmd", "car": "en-029", "nyc": "en-us-nyc"}
# Voice variants (files in espeak-ng-data/voices/!v) that sound like people: no echo, robot or whisper voices.
# A voice is an accent with a variant: "en-gb-scotland+m3".
VARIANT_FAMILIES = {
    "male": ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Gene", "Jacky", "Lee", "Mario",
             "Michael", "antonio", "ed", "gustave", "ian", "john", "marcelo", "norbert", "pedro", "quincy",
             "rob", "robert", "travis", "victor"],
    "female": ["f1", "f2", "f3", "f4", "f5", "Andrea", "Annie", "anika", "belinda", "linda", "steph", "steph2",
               "grandma", "shelby", "aunty"],
    "klatt": ["klatt", "klatt2", "klatt3", "klatt4", "edward", "david", "benjamin", "adam", "mike2", "Reed"],
}


def import_loader():
    """The espeakng_loader module, or an ImportError that says how to install it."""
    try:
        import espeakng_loader
    except ImportError as err:
        raise ImportError(f"eSpeak NG needs the Python package espeakng-loader ({err}); {INSTALL_HINT}") from err
    return espeakng_loader


def check_variants_exist(data_path):
    """eSpeak silently ignores an unknown variant, so check the files ourselves."""
    variant_dir = Path(data_path) / "voices" / "!v"
    missing = [v for members in VARIANT_FAMILIES.values() for v in members if not (variant_dir / v).is_file()]
    if missing:
        raise RuntimeError(f"voice variants {missing} are missing from {variant_dir}: this espeakng-loader has "
                           f"other voice data; install the version in tools/constraints.txt")


def spoken_form(transcript: str) -> str:
    """Text handed to eSpeak for a transcript: a lone letter "a" is read as the article /ə/ unless written "a-"."""
    return " ".join("a-" if word == "a" else word for word in transcript.split())


class ESpeak:
    """One eSpeak NG engine; the library is process-global, so create at most one per process."""

    def __init__(self):
        loader = import_loader()
        self.lib = ctypes.CDLL(loader.get_library_path())
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = self.lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                      loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed (returned {self.sample_rate}) with the voice data at "
                               f"{loader.get_data_path()}; reinstall espeakng-loader")
        self._chunks = []
        self._callback = SYNTH_CALLBACK(self._collect)  # keep a reference: C holds only the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, samples, count, _events):
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def set_voice(self, name: str):
        """name is a language voice with an optional variant, e.g. "en-us" or "en-gb-scotland+m3"."""
        status = self.lib.espeak_SetVoiceByName(name.encode())
        if status != 0:
            raise ValueError(f"eSpeak NG has no voice {name!r} (status {status}); list them with "
                             f"`espeak-ng --voices=en` and `espeak-ng --voices=variant`")

    def set_parameter(self, name: str, value: int):
        """rate in words per minute (80..450); pitch, range 0..99 (50 is the voice's own); volume 0..200."""
        status = self.lib.espeak_SetParameter(PARAMETER_IDS[name], int(value), 0)
        if status != 0:
            raise ValueError(f"espeak_SetParameter({name}={value}) failed with status {status}")

    def seed(self, value: int):
        """Seeds eSpeak's own noise generator (breathy voices, Klatt noise sources)."""
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(value))

    def synthesize(self, text: str) -> np.ndarray:
        """int16 samples at self.sample_rate for one sentence."""
        self._chunks = []
        data = text.encode()
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak_Synth failed with status {status} on {text!r}")
        if not self._chunks:
            raise RuntimeError(f"eSpeak NG produced no audio for {text!r}")
        return np.concatenate(self._chunks)
