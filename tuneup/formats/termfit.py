"""Text fitted to a terminal: tables whose cells wrap at spaces (never inside an id or a number
unless one token alone is wider than the terminal), paragraphs, and one number style.

Widths are counted in characters; every string here has been made printable first (no control
characters, so no escape sequence changes the width). Colour is applied after the layout.
"""

from __future__ import annotations

import operator
import os
import re
import textwrap
from collections.abc import Callable, Sequence
from itertools import chain, compress, count, repeat, starmap

DEFAULT_WIDTH = 100      # output that goes to a file or a pipe without $COLUMNS
MIN_WIDTH = 40

_NUMBER = re.compile(r"(?<![\w.:/\-+#])(\d{4,})(?![\w.:/\-])")


def terminal_width(stream=None) -> int:
    """The width to fit: the terminal's, else $COLUMNS, else DEFAULT_WIDTH; never below MIN_WIDTH."""
    cols = 0
    try:
        fd = (stream.fileno() if stream is not None else 1)
        if os.isatty(fd):
            cols = os.get_terminal_size(fd).columns
    except (OSError, ValueError, AttributeError):
        cols = 0
    if not cols:
        try:
            cols = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            cols = 0
    if not cols:
        cols = DEFAULT_WIDTH
    return max(MIN_WIDTH, cols)


def group(text: str) -> str:
    """Thousands separators for the whole numbers in a display string: 19997 -> 19,997 (not in
    versions, dates, addresses, ports or identifiers)."""
    return _NUMBER.sub(lambda m: f"{int(m.group(1)):,}", text)


def wrap(text: str, width: int, indent: str = "", subsequent: str | None = None) -> list[str]:
    """A paragraph wrapped at spaces; a token wider than the line is broken (the only case)."""
    sub = indent if subsequent is None else subsequent
    room = max(8, width - max(len(indent), len(sub)))
    words_fit = all(len(w) <= room for w in text.split())
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=sub,
                         break_long_words=not words_fit, break_on_hyphens=False) or [indent.rstrip()]


def fit_block(text: str, width: int) -> str:
    """A text block whose lines wider than `width` are wrapped (continuations indented 4 more)."""
    out = []
    for line in text.split("\n"):
        if len(line) <= width:
            out.append(line)
            continue
        lead = line[: len(line) - len(line.lstrip())]
        out += wrap(line.strip(), width, lead, lead + "    ")
    return "\n".join(out)


_STR_ONLY = frozenset({str})


def _cell_lines(text: str, width: int) -> list[str]:
    if len(text) <= width:
        return [text]
    return textwrap.wrap(text, width=width, break_long_words=True, break_on_hyphens=False) or [""]


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, flex: Sequence[int] = (),
          style: Callable[[int, int, str], str] | None = None, gap: int = 2) -> list[str]:
    """Rows laid out in columns no wider than `width` in total. Columns listed in `flex` (by index,
    first shrinks first) give up room first, down to their longest word; then every column does;
    only when single tokens cannot fit are they broken. style(row, col, padded_text) may colour a
    cell after layout (row -1 is the header).

    Linear in the cells, with the per-cell loops in C where it can be: a row whose cells all fit
    their columns (every row of a column that was not narrowed) is one str.format."""
    n = len(headers)
    rows = rows if isinstance(rows, (list, tuple)) else list(rows)
    cells = rows if _STR_ONLY >= set(map(type, chain.from_iterable(rows))) else [list(map(str, r)) for r in rows]
    columns = list(zip(*cells)) if cells else [()] * n
    natural = [max(len(headers[i]), max(map(len, columns[i]), default=0)) for i in range(n)]
    widths = list(natural)
    room = width - gap * (n - 1)

    def excess() -> int:
        return sum(widths) - room

    def longest(i: int) -> int:   # the longest word of a column: only asked for when it must narrow
        return max([len(headers[i])] + [len(w) for c in columns[i] for w in c.split()])

    order = list(flex) + [i for i in range(n) if i not in flex]
    for i in order:
        if excess() <= 0:
            break
        widths[i] = max(longest(i), widths[i] - excess())
    if excess() > 0:   # single tokens too wide: break them, widest column first
        for i in sorted(range(n), key=lambda i: -widths[i]):
            if excess() <= 0:
                break
            widths[i] = max(max(4, len(headers[i])), widths[i] - excess())
    # A row whose cells all fit their columns is one line: one str.format. The others (and every
    # row when cells are styled) are laid out cell by cell.
    one_line = (" " * gap).join([f"{{:<{w}}}" for w in widths[:-1]] + ["{}"]).format
    all_rows = [list(headers), *cells]
    if style is None:
        too_wide: set[int] = set()
        for i in range(n):
            if widths[i] < natural[i]:
                lengths = map(len, chain([headers[i]], columns[i]))
                too_wide.update(compress(count(), map(operator.lt, repeat(widths[i]), lengths)))
        if not too_wide:
            return list(map(str.rstrip, starmap(one_line, all_rows)))
    out = []
    for ri, row in enumerate(all_rows):
        if style is None and ri not in too_wide:
            out.append(one_line(*row).rstrip())
            continue
        parts = [_cell_lines(row[i], widths[i]) for i in range(n)]
        height = max(len(p) for p in parts)
        for k in range(height):
            segs = []
            for i in range(n):
                text = parts[i][k] if k < len(parts[i]) else ""
                padded = text.ljust(widths[i]) if i < n - 1 else text
                segs.append(style(ri - 1, i, padded) if style and k == 0 and text else padded)
            out.append((" " * gap).join(segs).rstrip())
    return out
