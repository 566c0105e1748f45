"""Transcript normalisation before scoring: ``none``, ``basic`` and ``whisper_en``.

``basic`` lower-cases, keeps apostrophes inside words ("don't"), turns every other
punctuation character (Unicode category P*) into a space and collapses spaces.
``whisper_en`` is the Whisper English normaliser used by open ASR leaderboards
(PyPI ``whisper-normalizer``: spellings, numbers, contractions, fillers).
"""
from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_EDGE_APOSTROPHES = re.compile(r"(?<!\w)'|'(?!\w)")


def no_normalization(text: str) -> str:
    return " ".join(text.split())


def basic_normalization(text: str) -> str:
    text = text.lower().translate(_APOSTROPHES)
    text = "".join(" " if char != "'" and unicodedata.category(char).startswith("P") else char for char in text)
    return " ".join(_EDGE_APOSTROPHES.sub(" ", text).split())


@functools.lru_cache(maxsize=1)
def _whisper_english() -> Callable[[str], str]:
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as err:
        raise RuntimeError(
            "--normalize whisper_en needs the 'whisper-normalizer' package (pip install whisper-normalizer)"
        ) from err
    return EnglishTextNormalizer()


def whisper_english_normalization(text: str) -> str:
    return " ".join(_whisper_english()(text).split())


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "none": no_normalization,
    "basic": basic_normalization,
    "whisper_en": whisper_english_normalization,
}


def get_normalizer(name: str) -> Callable[[str], str]:
    if name not in NORMALIZERS:
        raise ValueError(f"unknown normalizer {name!r}; choose one of {', '.join(NORMALIZERS)}")
    return NORMALIZERS[name]
