"""Turn transcript text into the tokens sclite aligns (words, or characters with ``-c``)."""
from __future__ import annotations

from dataclasses import dataclass

from speechllm.scoring.trn import ScoringInputError, split_ascii_whitespace

# sclite's NULL word: free to insert or delete (cost 0.001) and never reported.
NULL_WORD = b"@"
_SPECIAL = (b";", b"\\", b"*", b"{")


@dataclass(frozen=True)
class CharMode:
    """sclite ``-c [NOASCII] [DH]``: align characters instead of words."""

    no_ascii: bool = False  # NOASCII: keep runs of ASCII characters together
    delete_hyphens: bool = False  # DH: remove '-' before splitting


def _unescaped_semicolon(token: bytes) -> int:
    start = 0
    while True:
        cut = token.find(b";", start)
        if cut <= 0 or token[cut - 1] != ord("\\"):
            return len(token) if cut < 0 else cut
        start = cut + 1


def word_value(token: bytes) -> bytes:
    """The word sclite reads from one token.

    ``word;tag1;tag2`` keeps ``word`` (a ';' after a backslash is literal), backslashes
    are dropped, and one trailing '*' is removed from words longer than one byte.
    """
    if token.startswith(b"{"):
        raise ScoringInputError(
            f"alternation {token.decode('latin-1')!r}: '{{ a / b }}' reference alternations are not "
            "supported by the builtin scorer; use the real sclite (--scorer sclite)"
        )
    value = token[:_unescaped_semicolon(token)].replace(b"\\", b"")
    if len(value) > 1 and value.endswith(b"*"):
        value = value[:-1]
    return value


def _characters(word: bytes, utf8: bool) -> list[bytes]:
    if utf8:
        return [char.encode("utf-8") for char in word.decode("utf-8")]
    return [word[i:i + 1] for i in range(len(word))]


def split_characters(word: bytes, mode: CharMode, utf8: bool) -> list[bytes]:
    """Split one word into the character tokens of ``sclite -c``.

    Without ``-e utf-8`` sclite splits bytes, and then every byte counts as ASCII.
    A word made only of hyphens vanishes under DH (real sclite crashes on it).
    """
    if len(word) <= 1:  # sclite leaves one-byte words alone, even '-' under DH
        return [word]
    chars = _characters(word, utf8)
    if mode.delete_hyphens:
        chars = [char for char in chars if char != b"-"]
    if not mode.no_ascii:
        return chars
    tokens: list[bytes] = []
    previous_ascii = False
    for char in chars:
        is_ascii = not utf8 or char[0] < 0x80
        if is_ascii and previous_ascii:
            tokens[-1] += char
        else:
            tokens.append(char)
        previous_ascii = is_ascii
    return tokens


def tokenize(text: bytes, char_mode: CharMode | None = None, utf8: bool = False) -> list[bytes]:
    """Tokens of one (already case-folded) transcript."""
    tokens = split_ascii_whitespace(text)
    if any(special in text for special in _SPECIAL):
        tokens = [word_value(token) for token in tokens]
    if char_mode is None:
        return tokens
    return [char for token in tokens for char in split_characters(token, char_mode, utf8)]
