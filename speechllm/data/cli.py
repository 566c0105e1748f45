"""Shared command-line plumbing for the data-dir tools: one way to report bad input."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from speechllm.data.datadir import DataDirError


def run_tool(prog: str, body: Callable[[], int]) -> int:
    """Run a tool's body; bad input (DataDirError) becomes its problems on stderr and exit status 1."""
    try:
        return body()
    except DataDirError as error:
        for line in str(error).splitlines():
            print(f"{prog}: {line}", file=sys.stderr)
        return 1


def parse_bool(text: str) -> bool:
    """Kaldi/ESPnet boolean option values (argparse type): true/false."""
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")
