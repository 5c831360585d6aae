"""Text from a host, a file or a snapshot made safe for a terminal or a one-line message.

Every control character (C0, C1, ESC, DEL, U+2028/U+2029, lone surrogates) is shown escaped
(``\\x1b``, ``\\u2028``) so that a process name, hostname or rule id can neither move the cursor,
retitle the terminal nor break a one-line error into several lines.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _esc(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object) -> str:
    """str(value) with every control character escaped; one line whatever the input."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_esc, text)


def printable_block(text: str) -> str:
    """Like printable(), but keeps newlines and tabs (for multi-line output we build ourselves)."""
    if not _UNSAFE_IN_BLOCK.search(text):    # the usual case: one search, no copy (a listing of
        return text                          # 100,000 rules is 2.8 million lines of JSON)
    return "\n".join(_UNSAFE.sub(_esc, line.replace("\t", "    ")) for line in text.split("\n"))


# What printable_block changes: every character of _UNSAFE but the newline, and the tab (made spaces).
_UNSAFE_IN_BLOCK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def block_safe(fn):
    """Decorator for a function that returns text for a terminal: printable_block() on its result."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return printable_block(fn(*args, **kwargs))

    return wrapper
