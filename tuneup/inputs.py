"""Reading the user's input files: every failure becomes the caller's TuneupError kind, naming
the file (and, for TOML, line and column)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tuneup.compat import tomllib
from tuneup.errors import TuneupError

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


def read_text(path: Path | str, error: type[TuneupError]) -> str:
    where = str(path)
    try:
        with open(where, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise error("no such file", where) from None
    except IsADirectoryError:
        raise error("is a directory, not a file", where) from None
    except UnicodeDecodeError:
        raise error("not UTF-8 text", where) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", where) from None


def loads_toml(text: str, where: str, error: type[TuneupError]) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _AT.search(str(exc))
        loc = f"{where}:{m.group(1)}:{m.group(2)}" if m else where
        raise error(f"invalid TOML: {_AT.sub('', str(exc)) or 'invalid TOML'}", loc) from None
