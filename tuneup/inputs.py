"""Reading the user's input files: every failure becomes the caller's TuneupError kind, naming
the file (and, for TOML, line and column)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

from tuneup.compat import tomllib
from tuneup.errors import TuneupError

_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)")


# The largest input tuneup reads, by kind: refused with one line (exit 2) before anything is loaded,
# so a hostile or runaway file cannot make tuneup the biggest process on the host. Documented in
# README ("Input limits"); a snapshot of a busy host (thousands of listeners and processes) is a
# few hundred KiB, a rule file of 20,000 rules about 8 MiB.
MIB = 1 << 20
MAX_SNAPSHOT_BYTES = 16 * MIB      # one snapshot JSON (audit, diff, fleets: each file)
MAX_RULE_FILE_BYTES = 8 * MIB      # one rules/*.toml or profiles.toml
MAX_RECORD_BYTES = 1 * MIB         # every other record: waivers, tuneup.toml, the apply journal


def limit_for(error: type[TuneupError]) -> int:
    kind = getattr(error, "kind", "")
    if kind == "snapshot":
        return MAX_SNAPSHOT_BYTES
    if kind in ("rule file", "profile"):
        return MAX_RULE_FILE_BYTES
    return MAX_RECORD_BYTES


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n} bytes"


def read_text(path: Path | str, error: type[TuneupError], limit: int | None = None) -> str:
    """The file's text, refused (error, naming the file) when larger than ``limit`` bytes (by
    default the limit of the error's kind): checked on the open descriptor before reading, and
    while reading for pipes and files that grow."""
    where = str(path)
    limit = limit_for(error) if limit is None else limit
    what = {"snapshot": "a snapshot", "rule file": "a rule file", "profile": "a rule file"}.get(
        getattr(error, "kind", ""), "this kind of file")
    try:
        with open(where, "rb") as fh:
            st = os.fstat(fh.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            if stat.S_ISREG(st.st_mode) and st.st_size > limit:
                raise error(f"too large: {_size(st.st_size)}; tuneup reads at most {_size(limit)} from {what}", where)
            data = fh.read(limit + 1)
            if len(data) > limit:
                raise error(f"too large: more than {_size(limit)}; tuneup reads at most {_size(limit)} from {what}",
                            where)
        text = data.decode("utf-8")
        # as text mode would: universal newlines
        return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text
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
