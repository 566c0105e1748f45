"""Read and write sclite ``trn`` files and Kaldi ``text`` files.

Text is kept as ``bytes`` inside the scorer, like sclite keeps C strings: ASCII-only
case folding, ASCII-only whitespace and byte-length column padding then come for free
and match NIST sclite byte for byte.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_KALDI_SEP = re.compile(r"[ \t]+")


class ScoringInputError(ValueError):
    """Malformed scoring input; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class TrnUtterance:
    uid: bytes  # the id as written, parentheses included: b"(spk-utt)"
    text: bytes  # everything before the id
    lineno: int


def ascii_lower(data: bytes) -> bytes:
    """Lower-case ASCII letters only, as sclite does (bytes.lower is ASCII-only)."""
    return data.lower()


def split_ascii_whitespace(data: bytes) -> list[bytes]:
    """Split on C's isspace() characters; bytes.split() uses exactly those."""
    return data.split()


def _check_utf8(path: Path, lineno: int, line: bytes) -> None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ScoringInputError(
            f"{path}:{lineno}: invalid UTF-8 ({err.reason} at byte {err.start}); "
            "fix the file or drop '-e utf-8' to score raw bytes"
        ) from None


def _is_skipped(line: bytes) -> bool:
    """sclite skips blank lines and comment lines starting with ';;' or '**'."""
    return not line.strip(b" \t\n\v\f\r") or line[:2] in (b";;", b"**")


def parse_trn_line(path: Path, lineno: int, line: bytes) -> TrnUtterance:
    """Split ``words words (id)`` at the last parenthesis pair, as sclite does."""
    left, right = line.rfind(b"("), line.rfind(b")")
    if left < 0 or right < 0 or right < left:
        raise ScoringInputError(
            f"{path}:{lineno}: no utterance id; every trn line must end with '(utterance-id)', "
            f"got {line[:80]!r}"
        )
    if line[right + 1:].strip(b" \t\n\v\f\r"):
        raise ScoringInputError(
            f"{path}:{lineno}: text after the utterance id {line[left:right + 1]!r}; "
            "the '(id)' must be the last thing on a trn line"
        )
    return TrnUtterance(uid=line[left:right + 1], text=line[:left], lineno=lineno)


def read_trn(path: str | Path, utf8: bool = False, case_sensitive: bool = False) -> list[TrnUtterance]:
    """Read a trn file; ids and words are ASCII-lower-cased unless ``case_sensitive``.

    With ``utf8`` every line must be valid UTF-8 (sclite ``-e utf-8``); otherwise bytes
    are taken as they are, like sclite's default 8-bit ASCII.
    """
    path = Path(path)
    utterances: list[TrnUtterance] = []
    first_line: dict[bytes, int] = {}
    with open(path, "rb") as stream:
        for lineno, line in enumerate(stream, start=1):
            if _is_skipped(line):
                continue
            if utf8:
                _check_utf8(path, lineno, line)
            if not case_sensitive:
                line = ascii_lower(line)
            utt = parse_trn_line(path, lineno, line.rstrip(b"\n"))
            if utt.uid in first_line:
                raise ScoringInputError(
                    f"{path}:{lineno}: duplicate utterance id {utt.uid.decode('latin-1')} "
                    f"(first on line {first_line[utt.uid]}); every id must appear once"
                )
            first_line[utt.uid] = lineno
            utterances.append(utt)
    return utterances


def speaker_of(uid: bytes, id_type: str) -> bytes:
    """The speaker sclite derives from an id such as ``b"(spk-utt)"``.

    ``rm``/``swb``/``spu_id``: the text before the first '-', or before the first '_'
    when there is no '-'.  ``wsj``: the three characters after '('.
    """
    if id_type == "wsj":
        return uid[1:4]
    cut = uid.find(b"-")
    if cut < 0:
        cut = uid.find(b"_")
    if cut < 0:
        raise ScoringInputError(
            f"utterance id {uid.decode('latin-1')} has no '-' or '_', so '-i {id_type}' cannot find "
            "its speaker; write ids as (speaker-utterance)"
        )
    return uid[1:cut]


def format_trn_line(words: str, uid: str) -> str:
    # a leading space keeps text starting with ';;' or '**' from reading as a comment
    return f"{words} ({uid})\n" if words and not words.startswith((";;", "**")) else f" {words} ({uid})\n"


def write_trn(path: str | Path, entries: list[tuple[str, str]]) -> None:
    """Write ``(text, id)`` pairs as a UTF-8 trn file."""
    with open(path, "w", encoding="utf-8") as stream:
        for words, uid in entries:
            stream.write(format_trn_line(words, uid))


def read_kaldi_text(path: str | Path) -> dict[str, str]:
    """Read a Kaldi ``text`` file (``uttid word word ...``), keeping file order.

    A line holding only an id is an empty transcript; a blank line or one that starts
    with whitespace has no id and is an error.
    """
    path = Path(path)
    texts: dict[str, str] = {}
    first_line: dict[str, int] = {}
    with open(path, "rb") as stream:
        for lineno, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise ScoringInputError(
                    f"{path}:{lineno}: invalid UTF-8 ({err.reason}); save the file as UTF-8"
                ) from None
            if not line.strip() or line[0].isspace():
                raise ScoringInputError(
                    f"{path}:{lineno}: no utterance id; Kaldi text lines are 'uttid word word ...' "
                    "with the id in the first column"
                )
            uttid, text = (_KALDI_SEP.split(line, maxsplit=1) + [""])[:2]
            if uttid in first_line:
                raise ScoringInputError(
                    f"{path}:{lineno}: duplicate utterance id '{uttid}' (first on line {first_line[uttid]})"
                )
            first_line[uttid] = lineno
            texts[uttid] = text.strip(" \t")
    return texts


def read_utt2spk(path: str | Path) -> dict[str, str]:
    path = Path(path)
    mapping: dict[str, str] = {}
    with open(path, encoding="utf-8") as stream:
        for lineno, line in enumerate(stream, start=1):
            fields = line.split()
            if len(fields) != 2:
                raise ScoringInputError(
                    f"{path}:{lineno}: expected 'uttid speaker', got {line.strip()!r}"
                )
            mapping[fields[0]] = fields[1]
    return mapping
