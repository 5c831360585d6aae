"""What Python 3.9 and 3.10 lack: tomllib (the tomli backport), StrEnum, typing.assert_never.
Everything else in tuneup is written for 3.9 (vermin checks it in the tests)."""

from __future__ import annotations

import enum
import sys
from typing import NoReturn


def __getattr__(name: str) -> object:
    """tomllib, imported on first use (PEP 562): an audit whose rule files are all pre-parsed
    (tuneup/rulebook/parsed.py) never imports it. tomli ships compiled (mypyc) wheels: about 3x
    faster than the standard library's pure-Python tomllib on the same input (100,000 rules);
    tomllib when it is missing."""
    if name != "tomllib":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import tomli as mod
    except ImportError:  # pragma: no cover
        import tomllib as mod  # type: ignore[no-redef]  # novermin (tomli is a dependency; never reached)
    globals()["tomllib"] = mod
    return mod

if sys.version_info >= (3, 11):
    from enum import StrEnum  # novermin (guarded by the version check)
    from typing import assert_never  # novermin (guarded by the version check)
else:  # pragma: no cover - exercised by the 3.9/3.10 CI runs

    class StrEnum(str, enum.Enum):
        """StrEnum of 3.11: members are str, str() is the value."""

        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)

    def assert_never(arg: object) -> NoReturn:
        raise AssertionError(f"unhandled value {arg!r}")

__all__ = ["tomllib", "StrEnum", "assert_never"]
