"""Text from a host, a file or a snapshot made safe for a terminal or a one-line message.

Every control character (C0, C1, ESC, DEL, U+2028/U+2029, lone surrogates) is shown escaped
(``\\x1b``, ``\\u2028``) so that a process name, hostname or rule id can neither move the cursor,
retitle the terminal nor break a one-line error into several lines.
"""

from __future__ import annotations

import functools
import re

from tuneup.rx import lazy

# The classes reach past U+00FF, so compiling them builds a 64K-entry table in Python (about 0.6 ms
# each): they are compiled the first time a text is not plainly safe. str.isprintable() is False
# for every character they match (Cc, Zl, Zp, Cs) and for a few harmless ones more (Cf, Co, Cn,
# Zs but space), so a printable text needs no regex at all.
_UNSAFE_PATTERN = "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
# What printable_block changes: every character of _UNSAFE but the newline, and the tab (made spaces).
_UNSAFE_IN_BLOCK_PATTERN = "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]"
_UNSAFE_ASCII_IN_BLOCK = lazy("[\x00-\x09\x0b-\x1f\x7f]")     # ASCII only: a cheap charmap


@functools.lru_cache(maxsize=None)
def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def unsafe_rx() -> re.Pattern[str]:
    """The characters printable() escapes, compiled on first use."""
    return _rx(_UNSAFE_PATTERN)


def has_unsafe(text: str) -> bool:
    """Whether printable(text) would escape anything."""
    return not text.isprintable() and _rx(_UNSAFE_PATTERN).search(text) is not None


def _esc(m: re.Match) -> str:
    c = ord(m.group(0))
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(value: object) -> str:
    """str(value) with every control character escaped; one line whatever the input."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():                   # the usual case: nothing to escape
        return text
    return _rx(_UNSAFE_PATTERN).sub(_esc, text)


def printable_block(text: str) -> str:
    """Like printable(), but keeps newlines and tabs (for multi-line output we build ourselves)."""
    # the usual case: one search, no copy (a listing of 100,000 rules is 2.8 million lines)
    if not (_UNSAFE_ASCII_IN_BLOCK if text.isascii() else _rx(_UNSAFE_IN_BLOCK_PATTERN)).search(text):
        return text
    unsafe = _rx(_UNSAFE_PATTERN)
    return "\n".join(unsafe.sub(_esc, line.replace("\t", "    ")) for line in text.split("\n"))


def block_safe(fn):
    """Decorator for a function that returns text for a terminal: printable_block() on its result."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return printable_block(fn(*args, **kwargs))

    return wrapper
