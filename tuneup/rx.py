"""Regular expressions compiled on first use.

Compiling a pattern costs 0.5 to 1.5 million instructions (the compiler is pure Python); a module
that compiles its patterns at import makes every command pay for every pattern, used or not (an
audit of an idle host used 2 of the 16 its modules compiled). ``lazy(pattern)`` stands in for
``re.compile(pattern)`` and compiles at the first call of any of its methods; from then on its
methods are the compiled pattern's own (bound methods kept on the instance: no indirection).
Standard library only.
"""

from __future__ import annotations

import re
from typing import Any

_METHODS = ("match", "fullmatch", "search", "findall", "finditer", "split", "sub", "subn")


class LazyPattern:
    """re.compile(pattern, flags) when first used; the methods of re.Pattern listed in _METHODS,
    and ``pattern``, ``flags``, ``groups`` and ``compiled``."""

    def __init__(self, pattern: Any, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags_given = flags

    @property
    def compiled(self) -> re.Pattern:
        rx = re.compile(self.pattern, self.flags_given)
        vars(self).update({name: getattr(rx, name) for name in _METHODS})
        return rx

    def __getattr__(self, name: str) -> Any:   # only for what the instance does not hold yet
        if name in _METHODS or name in ("flags", "groups", "groupindex"):
            return getattr(self.compiled, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"lazy({self.pattern!r})"


def lazy(pattern: Any, flags: int = 0) -> LazyPattern:
    """re.compile(pattern, flags), compiled at first use."""
    return LazyPattern(pattern, flags)
