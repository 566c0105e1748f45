"""Score a hypothesis trn against a reference trn the way ``sclite`` does, and write its reports."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from speechllm.scoring.align import align_many
from speechllm.scoring.report import AlignedUtterance, Speaker, SystemScores, format_dtl, format_pra, format_summary
from speechllm.scoring.trn import ScoringInputError, TrnUtterance, read_trn, speaker_of
from speechllm.scoring.words import NULL_WORD, CharMode, tokenize

ID_TYPES = ("rm", "swb", "spu_id", "wsj")
# report name -> file extension, in the order sclite writes them
REPORTS = {"sum": "sys", "rsum": "raw", "dtl": "dtl", "pralign": "pra"}


@dataclass
class ScliteOptions:
    """The subset of sclite's command line the builtin scorer implements."""

    ref: Path
    hyp: Path
    id_type: str = "rm"
    title: str | None = None  # defaults to the hyp path as given, like sclite
    reports: set[str] = field(default_factory=lambda: {"sum"})
    to_stdout: bool = True
    out_dir: Path | None = None
    out_name: str | None = None
    utf8: bool = False  # '-e utf-8': characters are UTF-8 sequences, not bytes
    char_mode: CharMode | None = None
    case_sensitive: bool = False
    line_width: int = 1000
    feedback: int = 0

    def output_root(self) -> str:
        """sclite's file root: [out_dir or the hyp's directory/][name or the hyp's file name]."""
        hyp_dir, slash, hyp_name = str(self.hyp).rpartition("/")
        hyp_dir = hyp_dir if slash else "."
        name = self.out_name or hyp_name
        if self.out_dir is None and hyp_dir == ".":
            return name
        return f"{self.out_dir if self.out_dir is not None else hyp_dir}/{name}"


class _WordIds(dict):
    """Map words to small integers so the aligner compares ints."""

    def __missing__(self, word: bytes) -> int:
        self[word] = len(self)
        return self[word]


def _reference_texts(refs: list[TrnUtterance], hyps: list[TrnUtterance], ref_path: Path) -> dict[bytes, bytes]:
    by_id = {utt.uid: utt.text for utt in refs}
    missing = [utt for utt in hyps if utt.uid not in by_id]
    if missing:
        shown = ", ".join(f"{u.uid.decode('latin-1')} (line {u.lineno})" for u in missing[:5])
        raise ScoringInputError(
            f"{ref_path}: no reference for {len(missing)} hypothesis utterance(s): {shown}; "
            "every hypothesis id needs a reference line"
        )
    unscored = len(refs) - len(hyps)
    if unscored > 0:
        print(f"Note: {unscored} reference utterance(s) of {ref_path} have no hypothesis and are not scored "
              "(sclite scores the hypothesis file's utterances only)", file=sys.stderr)
    return by_id


def score(options: ScliteOptions) -> SystemScores:
    """Read, tokenize and align both files; group utterances by speaker in hyp order."""
    if options.id_type not in ID_TYPES:
        raise ScoringInputError(f"-i {options.id_type}: unknown utterance id type; use one of {', '.join(ID_TYPES)}")
    refs = read_trn(options.ref, options.utf8, options.case_sensitive)
    hyps = read_trn(options.hyp, options.utf8, options.case_sensitive)
    if not hyps:
        raise ScoringInputError(f"{options.hyp}: no utterances to score (real sclite crashes on this)")
    ref_texts = _reference_texts(refs, hyps, options.ref)

    ids = _WordIds()
    null_id = ids[NULL_WORD]
    utterances, pairs = [], []
    for hyp in hyps:
        try:
            ref_words = tokenize(ref_texts[hyp.uid], options.char_mode, options.utf8)
            hyp_words = tokenize(hyp.text, options.char_mode, options.utf8)
        except ScoringInputError as err:
            raise ScoringInputError(f"{options.hyp}:{hyp.lineno} ({hyp.uid.decode('latin-1')}): {err}") from None
        utterances.append(AlignedUtterance(hyp.uid, ref_words, hyp_words, ""))
        pairs.append(([ids[w] for w in ref_words], [ids[w] for w in hyp_words]))
    for utt, edits in zip(utterances, align_many(pairs, null_id)):
        utt.edits = edits

    speakers: dict[bytes, Speaker] = {}
    for utt, hyp in zip(utterances, hyps):
        try:
            name = speaker_of(utt.uid, options.id_type)
        except ScoringInputError as err:
            raise ScoringInputError(f"{options.hyp}:{hyp.lineno}: {err}") from None
        speakers.setdefault(name, Speaker(name)).add(utt)
    title = os.fsencode(options.title if options.title is not None else str(options.hyp))
    return SystemScores(title, list(speakers.values()), options.char_mode is not None, options.case_sensitive)


def render(scores: SystemScores, report: str, line_width: int = 1000) -> bytes:
    if report == "sum":
        return format_summary(scores)
    if report == "rsum":
        return format_summary(scores, raw=True)
    if report == "dtl":
        return format_dtl(scores)
    if report == "pralign":
        return format_pra(scores, line_width)
    raise ValueError(f"unknown report {report!r}")


_WRITING = {"sum": "Writing scoring report to", "rsum": "Writing raw scoring report to",
            "dtl": "Writing overall detailed scoring report", "pralign": "Writing string alignments to"}


def write_reports(scores: SystemScores, options: ScliteOptions, stdout=None) -> list[str]:
    """Write the requested reports to stdout or to ``ROOT.sys/.raw/.dtl/.pra``; return file names."""
    stdout = stdout if stdout is not None else sys.stdout.buffer
    written = []
    for report, extension in REPORTS.items():
        if report not in options.reports:
            continue
        data = render(scores, report, options.line_width)
        if options.to_stdout:
            stdout.write(data)
            continue
        path = f"{options.output_root()}.{extension}"
        if options.feedback >= 1:
            stdout.write(f"    {_WRITING[report]} '{path}'\n".encode())
        Path(path).write_bytes(data)
        written.append(path)
    stdout.flush()
    return written
