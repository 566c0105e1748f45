"""sclite's reports, byte for byte: ``sys``/``raw`` summary, ``pra`` alignments, ``dtl`` details.

Lengths are byte lengths and case changes are ASCII-only, exactly as sclite's C code
does, so UTF-8 text gets the same (visually ragged) columns as real sclite.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from speechllm.scoring.align import (CONSUMES_HYP, CONSUMES_REF, CORRECT, DELETION, INSERTION, SUBSTITUTION,
                                     count_edits)
from speechllm.scoring.table import PAGE_WIDTH, Table, center

PRA_LINE_WIDTH = 1000  # sclite's default '-l'


@dataclass
class AlignedUtterance:
    uid: bytes
    ref: list[bytes]
    hyp: list[bytes]
    edits: str  # see speechllm.scoring.align

    @property
    def counts(self) -> tuple[int, int, int, int]:
        return count_edits(self.edits)


@dataclass
class Speaker:
    name: bytes
    utterances: list[AlignedUtterance] = field(default_factory=list)
    corr: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    sent_errors: int = 0

    def add(self, utt: AlignedUtterance) -> None:
        corr, sub, dele, ins = utt.counts
        self.corr, self.sub, self.dele, self.ins = self.corr + corr, self.sub + sub, self.dele + dele, self.ins + ins
        self.sent_errors += (sub + dele + ins) > 0
        self.utterances.append(utt)

    @property
    def ref_words(self) -> int:
        return self.corr + self.sub + self.dele


@dataclass
class SystemScores:
    title: bytes
    speakers: list[Speaker]
    char_align: bool = False
    case_sensitive: bool = False

    def totals(self) -> dict[str, int]:
        keys = ("corr", "sub", "dele", "ins", "sent_errors")
        totals = {key: sum(getattr(spk, key) for spk in self.speakers) for key in keys}
        totals["sentences"] = sum(len(spk.utterances) for spk in self.speakers)
        totals["ref_words"] = totals["corr"] + totals["sub"] + totals["dele"]
        totals["errors"] = totals["sub"] + totals["dele"] + totals["ins"]
        return totals


# ---------------------------------------------------------------- numbers as sclite prints them

def pct(num: float, den: float) -> float:
    return 0.0 if den == 0 else num / den * 100.0


def f_round(value: float, digits: int) -> float:
    """sclite's F_ROUND: round half away from zero through a 32-bit float."""
    scale = math.pow(10.0, digits)
    return float(np.float32(int(value * scale + (0.5 if value > 0.0 else -0.5)))) / scale


def _mean_sd_median(values: list[float]) -> tuple[float, float, float]:
    """Mean, sample standard deviation (n - 1) and median, summed left to right like C."""
    if not values:
        return 0.0, 0.0, 0.0
    total = 0.0
    for value in values:
        total += value
    mean = total / len(values)
    squares = 0.0
    for value in values:
        squares += (value - mean) * (value - mean)
    sd = math.sqrt(squares / (len(values) - 1)) if squares != 0.0 else 0.0
    ordered, half = sorted(values), len(values) // 2
    median = (ordered[half] + ordered[half - 1]) / 2 if len(values) % 2 == 0 else ordered[half]
    return mean, sd, median


def _fmt(spec: bytes, value: float, digits: int) -> bytes:
    return spec % f_round(value, digits)


# ---------------------------------------------------------------- sys / raw summary

_HEADER = (b" SPKR", b" # Snt", b"# Wrd", b"Corr", b" Sub", b" Del", b" Ins", b" Err", b"S.Err")
_ROW = "l|cc|cccccc"
_STAT_ROW = "c|cc|cccccc"


def _speaker_values(spk: Speaker, raw: bool) -> list[float]:
    """Corr, Sub, Del, Ins, Err of one speaker: percents, or counts when raw or no words."""
    counts = [spk.corr, spk.sub, spk.dele, spk.ins, spk.sub + spk.dele + spk.ins]
    if raw or spk.ref_words == 0:
        return [float(c) for c in counts]
    return [pct(c, spk.ref_words) for c in counts]


def _drop_wordless_speakers(columns: list[list[float]], word_counts: list[int]) -> None:
    """Remove speakers without reference words from the statistics, as sclite does.

    sclite shifts the later speakers up in place while indexing the unshifted word
    counts, so two such speakers in a row drop the wrong entry; kept for parity.
    """
    n = len(word_counts)
    for spkr in range(n):
        if word_counts[spkr] == 0:
            for column in columns:
                column[spkr:n - 1] = column[spkr + 1:n]
                column[n - 1] = -1000.0


def format_summary(scores: SystemScores, raw: bool = False) -> bytes:
    """The ``sum`` (percent, ``.sys``) or ``rsum`` (counts, ``.raw``) report."""
    speakers = scores.speakers
    digits, cell = (0, b"%5.0f ") if raw else (1, b"%5.1f ")
    table = Table()
    table.add_row("c", scores.title)
    table.rule("-")
    header = list(_HEADER)
    header[2] = b"# Chr" if scores.char_align else b"# Wrd"
    table.add_row(_ROW, *header)

    columns: list[list[float]] = [[], [], [], [], []]
    sent_errs, wordless = [], 0
    for spk in speakers:
        values = _speaker_values(spk, raw)
        for column, value in zip(columns, values):
            column.append(value)
        sent_errs.append(float(spk.sent_errors) if raw else pct(spk.sent_errors, len(spk.utterances)))
        table.rule("-")
        if raw or spk.ref_words > 0:
            numbers = [_fmt(cell, v, digits) for v in values]
        else:
            numbers = [_fmt(b"%5.0f*", v, 0) for v in values]
            wordless += 1
        table.add_row(_ROW, b" %s " % spk.name, b"%5d" % len(spk.utterances), b"%5d" % spk.ref_words,
                      *numbers, _fmt(cell, sent_errs[-1], digits))

    tot = scores.totals()
    table.rule("=")
    if raw:
        sums = [tot["corr"], tot["sub"], tot["dele"], tot["ins"], tot["errors"], tot["sent_errors"]]
        table.add_row(_ROW, b" Sum", b"%5d" % tot["sentences"], b"%5d" % tot["ref_words"],
                      *[_fmt(cell, v, 0) for v in sums])
    else:
        ref = tot["ref_words"]
        sums = [pct(tot[k], ref) for k in ("corr", "sub", "dele", "ins", "errors")]
        sums.append(pct(tot["sent_errors"], tot["sentences"]))
        table.add_row(_ROW, b" Sum/Avg", b"%5d" % tot["sentences"], b"%5d" % ref,
                      *[_fmt(b"%5.1f ", v, 1) for v in sums])

    if wordless:
        _drop_wordless_speakers(columns, [spk.ref_words for spk in speakers])
    kept = len(speakers) - wordless
    word_stats = [_mean_sd_median(column[:kept]) for column in columns]
    count_stats = [_mean_sd_median([float(len(s.utterances)) for s in speakers]),
                   _mean_sd_median([float(s.ref_words) for s in speakers])]
    serr_stats = _mean_sd_median(sent_errs)
    word_cell = b"%5.1f+" if wordless else b"%5.1f "
    table.rule("=")
    for which, label in enumerate((b" Mean ", b" S.D. ", b"Median")):
        table.add_row(_STAT_ROW, label,
                      *[_fmt(b"%5.1f ", s[which], 1) for s in count_stats],
                      *[_fmt(word_cell, s[which], 1) for s in word_stats],
                      _fmt(b"%5.1f ", serr_stats[which], 1))

    out = b"\n\n\n" + center(b"SYSTEM SUMMARY PERCENTAGES by SPEAKER", PAGE_WIDTH) + b"\n\n" + table.render()
    if wordless and not raw:
        out += (b"\n* No Reference words for this/these speaker(s).  Word counts supplied\n"
                b"  rather than percents.\n"
                b"# No Reference words for this/these speaker(s).  NCE not computable.\n"
                b"+ Speaker(s) with no reference data is ignored\n")
    return out


# ---------------------------------------------------------------- pra alignments

def aligned_columns(utt: AlignedUtterance) -> list[tuple[bytes | None, bytes | None, str]]:
    """(ref word or None, hyp word or None, edit) of every reported edit ('@' edits skipped)."""
    columns, ref, hyp, r, h = [], utt.ref, utt.hyp, 0, 0
    for edit in utt.edits:
        if edit == CORRECT or edit == SUBSTITUTION:
            columns.append((ref[r], hyp[h], edit))
            r, h = r + 1, h + 1
        elif edit == DELETION:
            columns.append((ref[r], None, edit))
            r += 1
        elif edit == INSERTION:
            columns.append((None, hyp[h], edit))
            h += 1
        else:  # '@' consumed silently
            r, h = r + (edit in CONSUMES_REF), h + (edit in CONSUMES_HYP)
    return columns


def _pra_cells(utt: AlignedUtterance, upper: bool) -> tuple[list[bytes], list[bytes], list[bytes], list[int]]:
    """Padded REF, HYP and Eval cells; errors upper-cased (ASCII) and '*' filling gaps."""
    refs, hyps, evals, widths = [], [], [], []
    for ref_word, hyp_word, edit in aligned_columns(utt):
        if edit == CORRECT:  # the common case, without padding work
            width = len(ref_word)
            refs.append(ref_word)
            hyps.append(hyp_word)
            evals.append(b" " * width)
        else:
            if upper:
                ref_word = ref_word.upper() if ref_word is not None else None
                hyp_word = hyp_word.upper() if hyp_word is not None else None
            ref_word = b"*" * len(hyp_word) if ref_word is None else ref_word
            hyp_word = b"*" * len(ref_word) if hyp_word is None else hyp_word
            width = max(len(ref_word), len(hyp_word), 1)
            refs.append(ref_word.ljust(width))
            hyps.append(hyp_word.ljust(width))
            evals.append(edit.encode("ascii").ljust(width))
        widths.append(width)
    return refs, hyps, evals, widths


def format_path(utt: AlignedUtterance, case_sensitive: bool = False, line_width: int = PRA_LINE_WIDTH) -> bytes:
    """One utterance as sclite's PATH_print: id, Scores, then REF/HYP/Eval lines."""
    corr, sub, dele, ins = utt.counts
    out = [b"id: %s\n" % utt.uid, b"Scores: (#C #S #D #I) %d %d %d %d\n" % (corr, sub, dele, ins)]
    if case_sensitive:
        out.append(b"Attributes: Case_sensitve \n")
    refs, hyps, evals, widths = _pra_cells(utt, upper=not case_sensitive)
    used = 0
    while used < len(widths):
        # sclite fills a pass while the line is shorter than the width, then gives the
        # word that crossed it back to the next pass (unless it was the last word)
        length, stop = (9 if used else 6), used
        while length < line_width and stop < len(widths):
            length += 1 + widths[stop]
            stop += 1
        end = max(used + 1, stop - 1 if stop < len(widths) else stop)
        prefix = b"\n>> " if used else b""
        for label, cells in ((b"REF:  ", refs), (b"HYP:  ", hyps), (b"Eval: ", evals)):
            out.append(prefix + label + b" ".join(cells[used:end]) + b" \n")
            prefix = b">> " if used else b""
        used = end
    return b"".join(out)


def format_pra(scores: SystemScores, line_width: int = PRA_LINE_WIDTH) -> bytes:
    out = [b"\n\n\t\tDUMP OF SYSTEM ALIGNMENT STRUCTURE\n\n", b"System name:   %s\n\n" % scores.title, b"Speakers: \n"]
    out += [b"   %2d:  %s\n" % (i, spk.name) for i, spk in enumerate(scores.speakers)]
    out.append(b"\n")
    for i, spk in enumerate(scores.speakers):
        out.append(b"Speaker sentences%4d:  %s   #utts: %d\n" % (i, spk.name, len(spk.utterances)))
        for utt in spk.utterances:
            out.append(format_path(utt, scores.case_sensitive, line_width))
            out.append(b"\n")
    out.append(b"\n")
    return b"".join(out)


# ---------------------------------------------------------------- dtl details

def _ranked(title: bytes, counts: Counter) -> bytes:
    """sclite's AUTO_LEX_printout: most frequent first, ties in byte order."""
    out = [b"%-30s   Total                 (%d)\n" % (title, len(counts)),
           b"%-30s   With >=%3d occurrences (%d)\n\n" % (b"", 1, len(counts))]
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    out += [b"%4d: %4d  ->  %s\n" % (rank, n, word) for rank, (word, n) in enumerate(ranked, start=1)]
    out.append(b"     -------\n     %5d\n\n" % sum(counts.values()))
    return b"".join(out)


def _edit_counters(scores: SystemScores) -> dict[str, Counter]:
    found = {key: Counter() for key in ("pairs", "ins", "del", "sub", "false")}
    for spk in scores.speakers:
        for utt in spk.utterances:
            if utt.edits.count(CORRECT) == len(utt.edits):
                continue  # nothing to list
            for ref_word, hyp_word, edit in aligned_columns(utt):
                if edit == INSERTION:
                    found["ins"][hyp_word] += 1
                elif edit == DELETION:
                    found["del"][ref_word] += 1
                elif edit != CORRECT:
                    found["pairs"][b"%s ==> %s" % (ref_word, hyp_word)] += 1
                    found["sub"][ref_word] += 1
                    found["false"][hyp_word] += 1
    return found


def _percent(num: int, den: int) -> bytes:
    return b"%5.1f%%" % f_round(pct(num, den), 1) if den > 0 else b"UNDEF%"


def _percent_line(label: bytes, num: int, den: int) -> bytes:
    return label + b"=  " + _percent(num, den) + b"   (%4d)\n" % num


def format_dtl(scores: SystemScores) -> bytes:
    tot = scores.totals()
    sentences = tot["sentences"]
    with_edit = {edit: 0 for edit in "SDI"}
    for spk in scores.speakers:
        for utt in spk.utterances:
            for edit in "SDI":
                with_edit[edit] += edit in utt.edits
    ref, err = tot["ref_words"], tot["errors"]
    out = [b"DETAILED OVERALL REPORT FOR THE SYSTEM: %s\n\n" % scores.title,
           b"SENTENCE RECOGNITION PERFORMANCE\n\n",
           b" sentences                                        %4d\n" % sentences,
           b" with errors                            %5.1f%%   (%4d)\n\n"
           % (f_round(pct(tot["sent_errors"], sentences), 1), tot["sent_errors"])]
    for label, edit in ((b"   with substitions   ", "S"),  # (sic): sclite 2.10's spelling
                        (b"   with deletions     ", "D"), (b"   with insertions    ", "I")):
        share = f_round(pct(with_edit[edit], sentences), 1)
        out.append(label.ljust(40) + b"%5.1f%%   (%4d)\n" % (share, with_edit[edit]))
    out.append(b"\n\nWORD RECOGNITION PERFORMANCE\n\n")
    out.append(_percent_line(b"Percent Total Error       ", err, ref) + b"\n")
    out.append(_percent_line(b"Percent Correct           ", tot["corr"], ref) + b"\n")
    out.append(_percent_line(b"Percent Substitution      ", tot["sub"], ref))
    out.append(_percent_line(b"Percent Deletions         ", tot["dele"], ref))
    out.append(_percent_line(b"Percent Insertions        ", tot["ins"], ref))
    accuracy = b"%5.1f%%" % f_round(100.0 - pct(err, ref), 1) if ref > 0 else b"UNDEF%"
    out.append(b"Percent Word Accuracy     =  " + accuracy + b"\n\n\n")
    hyp_words = tot["corr"] + tot["sub"] + tot["ins"]
    out.append(b"Ref. words                =           (%4d)\n" % ref)
    out.append(b"Hyp. words                =           (%4d)\n" % hyp_words)
    out.append(b"Aligned words             =           (%4d)\n" % (hyp_words + tot["dele"]))
    found = _edit_counters(scores)
    out.append(b"\n" + _ranked(b"CONFUSION PAIRS", found["pairs"]) + b"\n")
    out.append(b"\n" + _ranked(b"INSERTIONS", found["ins"]) + b"\n")
    out.append(b"\n" + _ranked(b"DELETIONS", found["del"]) + b"\n")
    out.append(b"\n" + _ranked(b"SUBSTITUTIONS", found["sub"]) + b"\n")
    out.append(b"* NOTE: The 'Substitution' words are those reference words\n"
               b"        for which the recognizer supplied an incorrect word.\n\n")
    out.append(b"\n" + _ranked(b"FALSELY RECOGNIZED", found["false"]) + b"\n")
    out.append(b"* NOTE: The 'Falsely Recognized' words are those hypothesis words\n"
               b"        which the recognizer incorrectly substituted for a reference word.\n\n")
    return b"".join(out)
