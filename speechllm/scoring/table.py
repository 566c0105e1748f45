"""The boxed, page-centred tables of sclite's report generator (``rpg.c``), as bytes.

Only what sclite's summary reports use: rows of left/centre/right justified columns
separated by '|' or ' ', and '-' or '=' rule lines between rows.  Column widths are
shared by all rows with the same number of columns; the widest row family fixes the
table width and narrower families spread the spare width over their columns.
"""
from __future__ import annotations

from dataclasses import dataclass, field

PAGE_WIDTH = 80


def center(text: bytes, width: int) -> bytes:
    """sclite's ``center()``: pad both sides, the extra space going right."""
    front = max(0, (width - len(text)) // 2)
    back = max(0, width - len(text) - front)
    return b" " * front + text + b" " * back


@dataclass(frozen=True)
class _Format:
    justify: bytes  # one of b"lcr" per column
    separators: bytes  # the character after each column: b"|" or b" "

    @classmethod
    def parse(cls, spec: str) -> "_Format":
        justify, separators = bytearray(), bytearray()
        for char in spec.encode("ascii"):
            if char == ord("|"):
                separators[-1] = ord("|")
            else:
                justify.append(char)
                separators.append(ord(" "))
        return cls(bytes(justify), bytes(separators))


@dataclass
class _Row:
    fmt: _Format
    cells: list[bytes]
    rules_before: bytes  # rule characters printed above the row


@dataclass
class Table:
    rows: list[_Row] = field(default_factory=list)
    _pending_rules: bytearray = field(default_factory=bytearray)

    def rule(self, char: str) -> None:
        """Draw a line of ``char`` ('-' or '=') above the next row."""
        self._pending_rules += char.encode("ascii")

    def add_row(self, spec: str, *cells: bytes) -> None:
        """Add a row; ``spec`` like ``"l|cc|cccccc"`` gives each column's justification."""
        fmt = _Format.parse(spec)
        if len(cells) != len(fmt.justify):
            raise ValueError(f"row format {spec!r} has {len(fmt.justify)} columns, got {len(cells)} cells")
        self.rows.append(_Row(fmt, list(cells), bytes(self._pending_rules)))
        self._pending_rules = bytearray()

    def _column_widths(self) -> dict[int, list[int]]:
        widths: dict[int, list[int]] = {}
        for row in self.rows:
            family = widths.setdefault(len(row.cells), [0] * len(row.cells))
            for col, cell in enumerate(row.cells):
                family[col] = max(family[col], len(cell))
        return widths

    def render(self) -> bytes:
        widths = self._column_widths()
        natural = {n: 2 + sum(w) + n - 1 for n, w in widths.items()}
        width = max(natural.values())
        margin = b" " * ((PAGE_WIDTH - width) // 2) if width < PAGE_WIDTH else b""
        lines = [margin + b"," + b"-" * (width - 2) + b"."]
        previous: _Format | None = None
        for row in self.rows:
            text_widths = widths[len(row.cells)]
            sizes = _spread(text_widths, width - natural[len(row.cells)])
            for rule in row.rules_before:
                lines.append(margin + _rule_line(row.fmt, previous, sizes, rule))
            lines.append(margin + _value_line(row, sizes, text_widths))
            previous = row.fmt
        lines.append(margin + b"`" + b"-" * (width - 2) + b"'")
        return b"\n".join(lines) + b"\n"


def _spread(text_widths: list[int], spare: int) -> list[int]:
    """Share ``spare`` characters among the columns: column c ends at round(spare * (c+1) / n)."""
    sizes, given, count = [], 0, len(text_widths)
    for col, text_width in enumerate(text_widths):
        if col < count - 1:
            extra = int(spare / count * (col + 1) + 0.5) - given
            given += extra
        else:
            extra = spare - given
        sizes.append(text_width + extra)
    return sizes


def _rule_line(fmt: _Format, previous: _Format | None, sizes: list[int], rule: int) -> bytes:
    out = bytearray(b"|")
    for col, size in enumerate(sizes):
        out += bytes([rule]) * size
        if col == len(sizes) - 1:
            continue
        sep = fmt.separators[col]
        above = previous.separators[col] if previous is not None and col < len(previous.separators) else 0
        if sep == ord(" "):
            out.append(rule)
        elif rule == ord(" "):
            out.append(sep)
        elif rule == ord("-") and above == ord("|"):
            out += b"+"  # a column line crossing a rule
        else:
            out.append(rule)
    return bytes(out + b"|")


def _value_line(row: _Row, sizes: list[int], text_widths: list[int]) -> bytes:
    out = bytearray(b"|")
    last = len(sizes) - 1
    for col, (cell, size, text_width) in enumerate(zip(row.cells, sizes, text_widths)):
        left = (size - text_width) // 2
        justify = chr(row.fmt.justify[col])
        if justify == "c":
            body = center(cell, text_width)
        elif justify == "l":
            body = cell.ljust(text_width)
        else:
            body = cell.rjust(text_width)
        out += b" " * left + body + b" " * (size - text_width - left)
        if col != last:
            out.append(row.fmt.separators[col])
    return bytes(out + b"|")
