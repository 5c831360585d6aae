"""Validation of everything that reaches a generated file: values are integers or integer tuples,
names match strict patterns, and no newline or control character gets through."""

from __future__ import annotations

import re

from tuneup.errors import TuneupError
from tuneup.model import RLIM_INFINITY

SYSCTL_KEY = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[A-Za-z0-9_-][A-Za-z0-9_:@-]*)+$")
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(service|socket|scope|slice|mount|timer)$")
DIRECTIVE = re.compile(r"^[A-Z][A-Za-z]+$")
MODPARAM = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
LIMIT_ITEM = re.compile(r"^[a-z]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_INT = 2**63 - 1


class FixValueError(TuneupError):
    kind = "fix"


def int_value(v: object, what: str) -> int | tuple[int, ...]:
    """An integer or a tuple of integers; whole floats become ints; anything else is refused."""
    if isinstance(v, bool):
        raise FixValueError(f"{what}: a yes/no value is not a setting, got {v!r}")
    if isinstance(v, float):
        if not v.is_integer():
            raise FixValueError(f"{what}: not a whole number: {v!r}")
        v = int(v)
    if isinstance(v, int):
        if not -MAX_INT <= v <= MAX_INT and v != RLIM_INFINITY:
            raise FixValueError(f"{what}: out of range: {v}")
        return v
    if isinstance(v, (tuple, list)) and v:
        return tuple(int_value(x, what) for x in v)  # type: ignore[misc]
    raise FixValueError(f"{what}: expected an integer or integers, got {v!r}")


def text_of(v: int | tuple[int, ...], sep: str = " ") -> str:
    out = sep.join(str(x) for x in v) if isinstance(v, tuple) else str(v)
    return safe(out, "value")


def safe(text: str, what: str) -> str:
    """Text for one line of a file: refused if it holds a newline or any control character."""
    if _CONTROL.search(text):
        raise FixValueError(f"{what} holds a control character or newline: {text!r}")
    return text


def comment(text: str, limit: int = 300) -> str:
    """Free text (a finding's message) for a comment line: control characters become spaces."""
    flat = " ".join(_CONTROL.sub(" ", str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check(pattern: re.Pattern[str], text: str, what: str) -> str:
    if not pattern.match(text):
        raise FixValueError(f"not a valid {what}: {text!r}")
    return text


def rlimit_pair(v: int | tuple[int, ...], hard_now: object) -> tuple[int, int]:
    """(soft, hard) for a limit fix: one number raises soft to it and hard to at least it (never
    lowers a hard limit that is already higher); a pair is taken as given."""
    if isinstance(v, tuple):
        if len(v) != 2:
            raise FixValueError(f"a limit is N or (soft, hard), got {v!r}")
        soft, hard = v
    else:
        soft = v
        hard = max(v, hard_now) if isinstance(hard_now, int) and not isinstance(hard_now, bool) \
            and hard_now < RLIM_INFINITY else v
    if soft < 0 or hard < 0 or soft > hard:
        raise FixValueError(f"a limit needs 0 <= soft <= hard, got {soft}:{hard}")
    if soft >= RLIM_INFINITY or hard >= RLIM_INFINITY:
        raise FixValueError("tuneup does not write an unlimited open-file limit (some services hang with it)")
    return soft, hard
