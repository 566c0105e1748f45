"""A drop-in for NIST ``sclite`` on trn files (builtin, no SCTK needed).

    python -m speechllm.bin.sclite -r ref.trn trn -h hyp.trn trn -i rm -o all stdout
    python -m speechllm.bin.sclite -r ref.trn trn -h hyp.trn trn -i rm -o sum pra dtl -O out -n result
    python -m speechllm.bin.sclite -r ref.trn -h hyp.trn -i rm -e utf-8 -c NOASCII DH -o sum stdout

Options follow sclite: ``-r file [trn]``, ``-h file [trn [title]]``, ``-i rm|swb|spu_id|wsj``,
``-o sum rsum pralign|pra dtl all stdout none`` (each name toggles, 'all' = sum rsum pra),
``-O dir``, ``-n name``, ``-e utf-8|ascii``, ``-c [NOASCII] [DH]``, ``-s``, ``-l width``,
``-f level``.  sclite options this scorer does not implement are refused with a message.
"""
from __future__ import annotations

import sys
from pathlib import Path

from speechllm.scoring.scorer import ID_TYPES, ScliteOptions, score, write_reports
from speechllm.scoring.trn import ScoringInputError
from speechllm.scoring.words import CharMode

_REPORT_NAMES = {"sum": "sum", "rsum": "rsum", "pralign": "pralign", "pra": "pralign", "dtl": "dtl"}
_UNSUPPORTED = {
    "-d": "GNU diff alignments", "-L": "language-model weighted alignments", "-S": "inferred word segmentation",
    "-F": "fragment scoring", "-D": "optionally deletable words", "-T": "time-mediated alignments",
    "-w": "word-weight mediated alignments", "-m": "ctm/stm time reduction", "-C": "confidence reports",
    "-P": "piped input", "-p": "piped output",
}
_UNSUPPORTED_REPORTS = ("lur", "sgml", "nl.sgml", "snt", "spk", "prf", "wws")


class UsageError(ValueError):
    pass


def _values(argv: list[str], pos: int) -> list[str]:
    """The arguments after argv[pos] up to the next option."""
    values = []
    while pos + 1 + len(values) < len(argv) and not argv[pos + 1 + len(values)].startswith("-"):
        values.append(argv[pos + 1 + len(values)])
    return values


def _number(option: str, value: str) -> int:
    if not value.isdigit():
        raise UsageError(f"{option} {value}: expected a non-negative whole number")
    return int(value)


def _file_and_format(option: str, values: list[str]) -> tuple[Path, str]:
    """The file of '-r file [fmt]' or '-h file [fmt [title]]' and its title (the path as typed)."""
    if not values:
        raise UsageError(f"{option} needs a file name")
    fmt = values[1] if len(values) > 1 else "trn"
    if fmt != "trn":
        raise UsageError(f"{option} {values[0]} {fmt}: only the 'trn' format is supported (ctm/stm/txt are not)")
    return Path(values[0]), (values[2] if len(values) > 2 else values[0])


def _reports(values: list[str], reports: set[str]) -> tuple[set[str], bool]:
    """Apply '-o' names; each one toggles, as in sclite."""
    to_stdout = False
    for name in values:
        if name in _REPORT_NAMES:
            reports ^= {_REPORT_NAMES[name]}
        elif name == "all":
            reports ^= {"sum", "rsum", "pralign"}
        elif name == "stdout":
            to_stdout = not to_stdout
        elif name == "none":
            reports = set()
        elif name == "sys":
            raise UsageError("-o sys: sclite has no 'sys' report; use 'sum' (written to NAME.sys)")
        elif name in _UNSUPPORTED_REPORTS:
            raise UsageError(f"-o {name}: report not implemented by the builtin scorer; use the real sclite")
        else:
            raise UsageError(f"-o {name}: unknown report; use sum, rsum, pralign (pra), dtl, all, stdout or none")
    return reports, to_stdout


def parse_args(argv: list[str]) -> ScliteOptions:
    """Parse sclite's command line into :class:`ScliteOptions`."""
    ref = hyp = title = id_type = out_dir = out_name = None
    reports: set[str] = set()
    to_stdout, reports_given, feedback, feedback_given = False, False, 1, False
    utf8, char_mode, case_sensitive, line_width = False, None, False, 1000
    pos = 0
    while pos < len(argv):
        option, values = argv[pos], _values(argv, pos)
        if option == "-r":
            ref, _ = _file_and_format(option, values[:2])
            values = values[:2]
        elif option == "-h":
            if hyp is not None:
                raise UsageError("-h given twice: the builtin scorer scores one hypothesis file per run")
            hyp, title = _file_and_format(option, values[:3])
            values = values[:3]
        elif option in ("-i", "-O", "-n", "-l", "-f"):
            if not values:
                raise UsageError(f"{option} needs a value")
            values = values[:1]
            if option == "-i":
                id_type = values[0]
                if id_type not in ID_TYPES:
                    raise UsageError(f"-i {id_type}: unknown utterance id type; use one of {', '.join(ID_TYPES)}")
            elif option == "-O":
                out_dir = Path(values[0])
            elif option == "-n":
                out_name = values[0]
            elif option == "-l":
                line_width = _number(option, values[0])
            else:
                feedback, feedback_given = _number(option, values[0]), True
        elif option == "-o":
            reports, stdout_flip = _reports(values, reports)
            to_stdout ^= stdout_flip
            reports_given = True
        elif option == "-e":
            if not values or values[0].lower() not in ("utf-8", "ascii"):
                raise UsageError("-e: only 'utf-8' and 'ascii' are supported (gb/euc are not)")
            if len(values) > 1 and values[1] != "generic":
                raise UsageError(f"-e {values[0]} {values[1]}: only the 'generic' case conversion is supported")
            utf8, values = values[0].lower() == "utf-8", values[:2]
        elif option == "-c":
            unknown = [v for v in values if v not in ("NOASCII", "DH")]
            if unknown:
                raise UsageError(f"-c {unknown[0]}: unknown character alignment option; use NOASCII and/or DH")
            char_mode = CharMode(no_ascii="NOASCII" in values, delete_hyphens="DH" in values)
        elif option == "-s":
            case_sensitive, values = True, []
        elif option in _UNSUPPORTED:
            raise UsageError(f"{option}: {_UNSUPPORTED[option]} are not implemented by the builtin scorer; "
                             "use the real sclite")
        else:
            raise UsageError(f"unknown option {option!r}")
        pos += 1 + len(values)
    if ref is None or hyp is None:
        raise UsageError("both -r ref.trn and -h hyp.trn are required")
    if id_type is None:
        raise UsageError("-i is required for trn files (e.g. '-i rm': the speaker is the id before '-')")
    if not reports_given:
        reports, to_stdout = {"sum"}, True
    if to_stdout and reports_given and not feedback_given:
        feedback = 0
    for path, what in ((ref, "Reference"), (hyp, "Hypothesis")):
        if not path.is_file():
            raise UsageError(f"{what} file '{path}' does not exist")
    return ScliteOptions(ref=ref, hyp=hyp, id_type=id_type, title=title, reports=reports, to_stdout=to_stdout,
                         out_dir=out_dir, out_name=out_name, utf8=utf8, char_mode=char_mode,
                         case_sensitive=case_sensitive, line_width=line_width, feedback=feedback)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        options = parse_args(argv)
    except (UsageError, ValueError) as err:
        print(f"sclite: Error, {err}\n\n{__doc__}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    if options.feedback >= 1:
        out.write(f"sclite: 2.10 TK Version 1.3 (speechllm builtin)\n"
                  f"Begin alignment of Ref File: '{options.ref}' and Hyp File: '{options.hyp}'\n\n".encode())
    try:
        scores = score(options)
        if options.out_dir is not None:
            options.out_dir.mkdir(parents=True, exist_ok=True)
        write_reports(scores, options, out)
    except ScoringInputError as err:
        print(f"sclite: Error, {err}", file=sys.stderr)
        return 1
    if options.feedback >= 1:
        out.write(b"\nSuccessful Completion\n")
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
