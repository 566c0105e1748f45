"""utils/utt2spk_to_spk2utt.sh and utils/spk2utt_to_utt2spk.sh: files (or stdin) to stdout, as Kaldi's .pl tools.

    utils/utt2spk_to_spk2utt.sh data/x/utt2spk > data/x/spk2utt
    cat data/x/spk2utt | utils/spk2utt_to_utt2spk.sh > data/x/utt2spk
"""
from __future__ import annotations

import argparse
import sys

from speechllm.data.cli import run_tool
from speechllm.data.datadir import (
    Entry, die_on, duplicate_problems, kv_lines, parse_lines, read_lines_or_stdin, spk2utt_from_utt2spk,
    utt2spk_from_spk2utt)

CONVERSIONS = {"utt2spk_to_spk2utt": "utt2spk", "spk2utt_to_utt2spk": "spk2utt"}


def read_inputs(paths: list[str], kind: str) -> list[Entry]:
    entries: list[Entry] = []
    for path in paths:
        source = "<stdin>" if path == "-" else path
        found, problems = parse_lines(read_lines_or_stdin(path), source, kind)
        die_on(problems + duplicate_problems(found, source))
        entries += found
    return entries


def convert(conversion: str, paths: list[str]) -> dict[str, str]:
    kind = CONVERSIONS[conversion]
    entries = read_inputs(paths, kind)
    die_on(duplicate_problems(entries, " + ".join(paths)))
    mapping = {e.key: e.value for e in entries}
    if conversion == "utt2spk_to_spk2utt":
        return spk2utt_from_utt2spk(mapping)
    return utt2spk_from_spk2utt(mapping, {e.key: e.line for e in entries}, " + ".join(paths))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert between utt2spk and spk2utt.")
    parser.add_argument("conversion", choices=sorted(CONVERSIONS))
    parser.add_argument("files", nargs="*", default=["-"], help="input files (default: standard input)")
    args = parser.parse_args(argv)
    prog = f"utils/{args.conversion}.sh"

    def body() -> int:
        sys.stdout.writelines(kv_lines(convert(args.conversion, args.files or ["-"])))
        return 0

    return run_tool(prog, body)


if __name__ == "__main__":
    sys.exit(main())
