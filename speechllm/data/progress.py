"""Progress of a long data step: a tqdm bar on a terminal, one line per 10 % step in a log.

    progress = Progress(len(items), "dump data/train")
    for item in progress.iterate(items):   # or progress.update() after each item
        ...
    progress.close()

On a terminal (the stream is a tty) a tqdm bar redraws in place. Otherwise (a job's log, a pipe) a plain line is
written each time another 10 % of the items is done, e.g. ``dump data/train: progress 30% (120 of 400 utterances)``;
`parse_progress` reads the last such line back (utils/dump_audio.sh sums its jobs' lines into one overall figure).
"""
from __future__ import annotations

import os
import re
import sys
from typing import Optional, TextIO

STEP_PERCENT = 10
_LINE = re.compile(r"progress (\d+)% \((\d+) of (\d+) ([a-z]+)\)")


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _terminal_size(stream: TextIO) -> tuple[int, int]:
    """(columns, lines) of the terminal; 80 x 24 when it reports none (a pseudo-terminal without a size says 0 x 0,
    and tqdm then draws nothing)."""
    try:
        size = os.get_terminal_size(stream.fileno())
        columns, lines = size.columns, size.lines
    except (AttributeError, OSError, ValueError):
        columns, lines = 0, 0
    return columns if columns > 0 else 80, lines if lines > 0 else 24


def _shorten(text: str, width: int) -> str:
    """`text`, or its end after '...' when it is wider than `width` (the end of a path says most)."""
    return text if len(text) <= width else "..." + text[-(width - 3):]


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "utterances", stream: Optional[TextIO] = None):
        self.total = total
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.next_percent = STEP_PERCENT
        self.bar = None
        if total > 0 and is_terminal(self.stream):
            from tqdm import tqdm

            columns, lines = _terminal_size(self.stream)
            self.bar = tqdm(total=total, desc=_shorten(desc, columns // 3), unit=unit[:3], file=self.stream,
                            ncols=columns, nrows=lines)

    def iterate(self, items):
        """Yield each item; it counts as done when the loop comes back for the next one."""
        for item in items:
            yield item
            self.update()

    def update(self, count: int = 1) -> None:
        self.advance_to(self.done + count)

    def advance_to(self, done: int) -> None:
        """Set the number of items done (never backwards)."""
        done = min(max(done, self.done), self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.done = done
            return
        self.done = done
        if self.total <= 0:
            return
        reached = self.done * 100 // self.total // STEP_PERCENT * STEP_PERCENT  # one line for steps passed at once
        if reached >= self.next_percent:
            print(f"{self.desc}: progress {reached}% ({self.done} of {self.total} {self.unit})",
                  file=self.stream, flush=True)
            self.next_percent = reached + STEP_PERCENT

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def parse_progress(text: str) -> Optional[tuple[int, int]]:
    """(done, total) of the last progress line in `text`, or None."""
    found = _LINE.findall(text)
    if not found:
        return None
    _, done, total, _ = found[-1]
    return int(done), int(total)
