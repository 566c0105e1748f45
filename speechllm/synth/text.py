"""Written English to what is spoken: transcripts of lower-case words, and their spoken forms.

``normalize(raw)`` returns a ``Sentence`` (or the reason it was dropped):

- ``text``, the transcript: lower-case words of a-z, an apostrophe allowed inside a word ("don't"), single
  spaces, no punctuation. Digits, ordinals, years, decimals, money, percentages, times and symbols become words
  ("3rd" -> "third", "1990" -> "nineteen ninety", "$5" -> "five dollars", "7:30" -> "seven thirty", "&" -> "and");
  acronyms are spelled ("BBC" -> "b b c").
- ``spoken``, the same words with the letters that are read by name in upper case ("the B B C"), so that each
  synthesiser can be told to say the letter rather than a word ("a" is also an article); see
  ``speechllm.synth.engines``.

A sentence with characters that cannot be spoken (other scripts, markup, stray symbols), or with too few or too
many words, is dropped with a reason; callers count the reasons.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Optional, Tuple

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen " \
       "seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
SCALES = [(10 ** 12, "trillion"), (10 ** 9, "billion"), (10 ** 6, "million"), (1000, "thousand")]
ORDINAL_SUFFIX = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                  "nine": "ninth", "twelve": "twelfth"}
SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "=": " equals ", "@": " at ", "°": " degrees ",
           "½": " and a half ", "×": " times "}
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents")}
# Acronyms said as words, not spelled.
WORD_ACRONYMS = {"NASA", "NATO", "UNESCO", "UNICEF", "AIDS", "LASER", "RADAR", "SCUBA", "COVID", "OPEC", "FIFA"}
PUNCTUATION = set(".,;:!?\"'()[]{}-–—…/\u2018\u2019\u201c\u201d")


@dataclass(frozen=True)
class Sentence:
    text: str  # transcript
    spoken: str  # what the synthesiser reads: letters said by name in upper case


def cardinal(n: int) -> str:
    """0 .. 10**15 - 1 in words, US style without "and": 1250 -> "one thousand two hundred fifty"."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        return ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + cardinal(n % 100))
    for scale, word in SCALES:
        if n >= scale:
            if n // scale >= 1000:
                raise ValueError(f"{n} is too large to read as a number")
            rest = n % scale
            return cardinal(n // scale) + " " + word + ("" if rest == 0 else " " + cardinal(rest))
    raise AssertionError(n)


def ordinal(n: int) -> str:
    """21 -> "twenty first", 100 -> "one hundredth"."""
    words = cardinal(n).split()
    last = words[-1]
    if last in ORDINAL_SUFFIX:
        last = ORDINAL_SUFFIX[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last = last + "th"
    return " ".join(words[:-1] + [last])


def year(n: int) -> str:
    """Years as people say them: 1990 "nineteen ninety", 1905 "nineteen oh five", 2004 "two thousand four"."""
    century, rest = divmod(n, 100)
    if 2000 <= n <= 2009:
        return cardinal(n)
    if rest == 0:
        return cardinal(century) + " hundred"
    if rest < 10:
        return cardinal(century) + " oh " + ONES[rest]
    return cardinal(century) + " " + cardinal(rest)


def digits(text: str) -> str:
    return " ".join(ONES[int(d)] for d in text)


def _number(text: str) -> str:
    """An integer written with or without thousands separators; long digit strings are read digit by digit."""
    plain = text.replace(",", "")
    if len(plain) > 1 and plain.startswith("0"):
        return digits(plain)
    if len(plain) > 15:
        return digits(plain)
    return cardinal(int(plain))


def _decimal(whole: str, fraction: str) -> str:
    return _number(whole) + " point " + digits(fraction)


def _money(match: re.Match) -> str:
    one, many, cent, cents = CURRENCIES[match.group(1)]
    whole, fraction, scale = match.group(2), match.group(3), match.group(4)
    if scale:
        amount = _decimal(whole, fraction) if fraction else _number(whole)
        return f" {amount} {scale.lower()} {many} "
    words = f"{_number(whole)} {one if whole.replace(',', '') == '1' else many}"
    if fraction and int(fraction) > 0:
        number = int(fraction.ljust(2, "0")[:2])
        words += f" and {cardinal(number)} {cent if number == 1 else cents}"
    return f" {words} "


def _time(match: re.Match) -> str:
    hours, minutes, meridiem = int(match.group(1)), int(match.group(2)), match.group(3)
    words = cardinal(hours) + (" o'clock" if minutes == 0 and not meridiem else
                               "" if minutes == 0 else
                               " oh " + ONES[minutes] if minutes < 10 else " " + cardinal(minutes))
    if meridiem:
        words += " " + " ".join("\0" + letter for letter in meridiem.upper().replace(".", ""))
    return f" {words} "


def _number_token(match: re.Match) -> str:
    text = match.group(0)
    plain = text.replace(",", "")
    if "," not in text and len(plain) == 4 and (1100 <= int(plain) <= 1999 or 2000 <= int(plain) <= 2099):
        return f" {year(int(plain))} "
    return f" {_number(text)} "


RE_MONEY = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d+))?(?:\s?(million|billion|trillion|thousand))?\b", re.I)
RE_TIME = re.compile(r"\b(\d{1,2}):(\d{2})\s?([ap]\.?m\.?)?(?![\w])", re.I)
RE_HOUR = re.compile(r"\b(\d{1,2})\s?([ap])\.?m\b\.?", re.I)
RE_ORDINAL = re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I)
RE_DECADE = re.compile(r"\b(1[1-9]|20)(\d)0'?s\b")
RE_DECIMAL = re.compile(r"\b(\d+)\.(\d+)\b")
RE_NUMBER = re.compile(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\b")
RE_DOTTED = re.compile(r"\b(?:[A-Za-z]\.){2,}")
RE_ACRONYM = re.compile(r"\b[A-Z]{2,6}s?\b")
RE_SINGLE_CAPITAL = re.compile(r"(?<=[\w,;] )[A-HJ-Z](?=[\s.,;:!?]|$)")
RE_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*|[A-Z]")


def _decade(match: re.Match) -> str:
    century, tens = match.group(1), int(match.group(2))
    if century == "20" and tens == 0:
        return " two thousands "
    return " " + cardinal(int(century)) + " " + (TENS[tens][:-1] + "ies" if tens >= 2 else
                                                 "tens" if tens == 1 else "hundreds") + " "


def _spell(match: re.Match) -> str:
    word = match.group(0)
    plural = word.endswith("s") and word[:-1].isupper() and len(word) > 2
    core = word[:-1] if plural else word
    if core in WORD_ACRONYMS:
        return core.lower() + ("s" if plural else "")
    return " " + " ".join("\0" + letter for letter in core) + ("'s" if plural else "") + " "


def normalize(raw: str, min_words: int = 1, max_words: int = 40) -> Tuple[Optional[Sentence], Optional[str]]:
    """(Sentence, None), or (None, why it was dropped)."""
    text = unicodedata.normalize("NFKC", raw)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[\u2013\u2014]", " , ", text)
    if re.search(r"https?:|www\.|\S@\S|[<>{}\[\]|\\^_~`*#]", text):
        return None, "markup, a URL or a symbol that is not spoken"
    text = RE_DOTTED.sub(lambda m: " " + " ".join("\0" + c.upper() for c in m.group(0) if c != ".") + " ", text)
    text = text.replace("and/or", "and or")
    text = RE_MONEY.sub(_money, text)
    text = RE_TIME.sub(_time, text)
    text = RE_HOUR.sub(lambda m: f" {cardinal(int(m.group(1)))} \0{m.group(2).upper()} \0M ", text)
    text = RE_ORDINAL.sub(lambda m: f" {ordinal(int(m.group(1)))} ", text)
    text = RE_DECADE.sub(_decade, text)
    text = RE_DECIMAL.sub(lambda m: f" {_decimal(m.group(1), m.group(2))} ", text)
    text = RE_NUMBER.sub(_number_token, text)
    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"(?<=\w)/(?=\w)", " or ", text)
    text = re.sub(r"(?<=[a-zA-Z])-(?=[a-zA-Z])", " ", text)  # well-known -> well known
    if re.search(r"\d", text):
        return None, "digits left after normalisation"
    odd = {c for c in text if not (c.isascii() and (c.isalpha() or c.isspace() or c in PUNCTUATION or c == "\0"))}
    if odd:
        return None, "characters that cannot be spoken"
    text = RE_ACRONYM.sub(_spell, text)
    text = RE_SINGLE_CAPITAL.sub(lambda m: "\0" + m.group(0), text)  # "vitamin C": a letter said by name
    words = []
    for token in re.findall(r"\0?[A-Za-z]+(?:'[A-Za-z]+)*", text):
        if token.startswith("\0"):
            words.append(token[1:])  # a letter said by name
        else:
            words.append(token.lower())
    words = [w.strip("'") for w in words if w.strip("'")]
    if not min_words <= len(words) <= max_words:
        return None, f"fewer than {min_words} or more than {max_words} words"
    spoken = " ".join(words)
    transcript = spoken.lower()
    if not re.fullmatch(r"[a-z]+(?:'[a-z]+)*(?: [a-z]+(?:'[a-z]+)*)*", transcript):
        return None, "characters that cannot be spoken"
    return Sentence(transcript, spoken), None


def spelled_letters_spoken(transcript: str) -> str:
    """Spoken form of a transcript whose one-character words are all letters said by name (AN4 grammar)."""
    return " ".join(word.upper() if len(word) == 1 else word for word in transcript.split())
