"""Reading the user's input files: every failure becomes the caller's TuneupError kind, naming
the file (and, for TOML, line and column)."""

from __future__ import annotations

import functools
import json
import math
import os
import re
import stat
from itertools import chain, compress
from pathlib import Path
from typing import Any

from tuneup import compat
from tuneup.errors import TuneupError
from tuneup.rx import lazy

_AT = lazy(r"\s*\(at line (\d+), column (\d+)\)")


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


def read_upto(fd: int, want: int, step: int = 0) -> bytes:
    """At most `want` bytes from fd, read to EOF with os.read (unbuffered: a buffered open() adds an
    fstat, an isatty ioctl and an lseek to every file), `step` (at least 64 KiB) at a time."""
    chunks: list[bytes] = []
    step = max(step, 1 << 16)
    while want > 0:
        chunk = os.read(fd, min(want, step))
        if not chunk:
            break
        chunks.append(chunk)
        want -= len(chunk)
    return b"".join(chunks)


def read_text(path: Path | str, error: type[TuneupError], limit: int | None = None) -> str:
    """The file's text, refused (error, naming the file) when larger than ``limit`` bytes (by
    default the limit of the error's kind): checked on the open descriptor before reading, and
    while reading for pipes and files that grow."""
    where = str(path)
    limit = limit_for(error) if limit is None else limit
    what = {"snapshot": "a snapshot", "rule file": "a rule file", "profile": "a rule file"}.get(
        getattr(error, "kind", ""), "this kind of file")
    try:
        fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            regular = stat.S_ISREG(st.st_mode)
            if regular and st.st_size > limit:
                raise error(f"too large: {_size(st.st_size)}; tuneup reads at most {_size(limit)} from {what}", where)
            # a regular file: its size in one read, then the EOF; anything else in 64 KiB reads
            data = read_upto(fd, limit + 1, st.st_size + 1 if regular else 0)
            if len(data) > limit:
                raise error(f"too large: more than {_size(limit)}; tuneup reads at most {_size(limit)} from {what}",
                            where)
        finally:
            os.close(fd)
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


# Bounds on what a parsed input file may hold: every value tuneup reads is a kernel number (at most
# 64 bits), a short string or a shallow table, so anything past these is a broken or hostile file.
MAX_DEPTH = 32          # nesting of arrays/objects/tables
MAX_INT_DIGITS = 40     # decimal digits of an integer (2**64 has 20)


class _Bad(Exception):
    def __init__(self, message: str, token: str = "") -> None:
        super().__init__(message)
        self.token = token


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    return f"{line}:{pos - (text.rfind(chr(10), 0, pos) + 1) + 1}"


def _find(text: str, token: str) -> int:
    m = re.search(r"(?<![\w.\"])" + re.escape(token) + r"(?![\w.])", text) if token else None
    return m.start() if m else -1


def _too_deep_at(text: str, limit: int) -> int:
    """Offset of the first bracket nested deeper than limit (strings skipped), or -1."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif c in "[{":
            depth += 1
            if depth > limit:
                return i
        elif c in "]}":
            depth -= 1
        i += 1
    return -1


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise _Bad(f"integer of {len(s.lstrip('-'))} digits (at most {MAX_INT_DIGITS})", s)
    return int(s)


def _parse_float(s: str) -> float:
    v = float(s)
    if not math.isfinite(v):
        raise _Bad(f"number {s[:40]} is out of range", s)
    return v


def _parse_constant(s: str) -> float:
    raise _Bad(f"{s} is not a number JSON allows", s)


def _clean(data: Any, strings: bool = True) -> bool:
    """check_tree's test without paths: True when nothing in data would be refused. Almost every
    input is clean, so the paths (a string per node) are built only when this says no. With
    strings=False the strings and keys are not searched for lone surrogates (the caller knows
    there are none: TOML parsed from text that has none, see loads_toml).

    The tree is walked a level at a time with every loop in C (map, compress, extend, join, one
    regex search over a level's strings): a file of 10,000 rules is about 150,000 nodes."""
    limit = int(MAX_INT_DIGITS * 3.33)
    values: list[Any] = [data]   # the root, as a value of a container above it
    depth = 0                    # of the containers among values
    while True:
        kinds = list(map(type, values))
        types = set(kinds)
        if not types <= _TREE_TYPES:
            return False        # a subclass, a date...: the full check decides

        def of(*ts: type) -> Any:
            return compress(values, map(frozenset(ts).__contains__, kinds))

        if strings and str in types and _surrogate_in("".join(of(str))):
            return False
        if int in types and max(map(int.bit_length, of(int))) > limit:
            return False
        if float in types and not all(map(math.isfinite, of(float))):
            return False
        if dict not in types and list not in types:
            return True
        if depth >= MAX_DEPTH:
            return False
        below: list[Any] = []
        if dict in types:
            dicts = values if len(types) == 1 else list(of(dict))
            keys = list(chain.from_iterable(dicts))
            if not set(map(type, keys)) <= _STR_ONLY or (strings and _surrogate_in("".join(keys))):
                return False
            below.extend(chain.from_iterable(map(dict.values, dicts)))
        if list in types:
            below.extend(chain.from_iterable(values if len(types) == 1 else of(list)))
        values = below
        depth += 1


@functools.lru_cache(maxsize=None)
def _surrogate_rx() -> re.Pattern[str]:
    return re.compile(_SURROGATE_PATTERN)


def _surrogate_in(text: str) -> bool:
    """A lone surrogate anywhere in text (ASCII text, nearly all of it, holds none)."""
    return not text.isascii() and _surrogate_rx().search(text) is not None


_TREE_TYPES = frozenset({str, int, float, bool, type(None), dict, list})
_STR_ONLY = frozenset({str})


def check_tree(data: Any, where: str, error: type[TuneupError], root: str = "$", strings: bool = True) -> None:
    """Refuse what a parser let through but tuneup cannot use: nesting deeper than MAX_DEPTH,
    integers past MAX_INT_DIGITS digits, non-finite floats, and lone surrogates in strings or keys
    (not text: they cannot be written out as UTF-8). The error names the path ($.host.hostname)."""
    if _clean(data, strings):
        return
    stack: list[tuple[Any, str, int]] = [(data, root, 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, str):
            if _surrogate_rx().search(node):
                raise error(f"{path}: string holds a lone surrogate (not text)", where)
        elif isinstance(node, bool):
            continue
        elif isinstance(node, int):
            if node.bit_length() > MAX_INT_DIGITS * 3.33:
                raise error(f"{path}: integer too large (more than {MAX_INT_DIGITS} digits)", where)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise error(f"{path}: number {node} is not finite", where)
        elif isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                raise error(f"{path}: nested more than {MAX_DEPTH} deep", where)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for k, v in items:
                if isinstance(k, str) and _surrogate_rx().search(k):
                    raise error(f"{path}: key holds a lone surrogate (not text)", where)
                if isinstance(k, str) and k.replace("-", "_").isidentifier():
                    sub = f"{path}.{k}" if path else k
                else:
                    sub = f"{path}[{json.dumps(k)}]"
                stack.append((v, sub, depth + 1))


_SURROGATE_PATTERN = "[\ud800-\udfff]"     # compiled when a text is not ASCII (0.2 ms to compile)


def loads_json(text: str, where: str, error: type[TuneupError]) -> Any:
    """json.loads that turns every way a file can be broken or hostile into error(..., FILE:LINE:COL):
    syntax, nesting (100,000 deep), huge integers, 1e400/NaN/Infinity, lone surrogates."""
    try:
        data = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"invalid JSON: {exc.msg}", f"{where}:{exc.lineno}:{exc.colno}") from None
    except _Bad as exc:
        pos = _find(text, exc.token)
        raise error(f"invalid JSON: {exc}", f"{where}:{_line_col(text, pos)}" if pos >= 0 else where) from None
    except RecursionError:
        pos = _too_deep_at(text, MAX_DEPTH)
        raise error(f"invalid JSON: nested more than {MAX_DEPTH} deep",
                    f"{where}:{_line_col(text, pos)}" if pos >= 0 else where) from None
    check_tree(data, where, error)
    return data


def loads_toml(text: str, where: str, error: type[TuneupError], check: bool = True) -> dict[str, Any]:
    """The parsed TOML, checked with check_tree (unless check=False: the caller then either proves
    the tree clean itself or calls check_toml_tree before anything else may refuse it)."""
    try:
        data = compat.tomllib.loads(text)
    except compat.tomllib.TOMLDecodeError as exc:
        m = _AT.search(str(exc))
        loc = f"{where}:{m.group(1)}:{m.group(2)}" if m else where
        raise error(f"invalid TOML: {_AT.sub('', str(exc)) or 'invalid TOML'}", loc) from None
    except RecursionError:
        pos = _too_deep_at(text, MAX_DEPTH)
        raise error(f"invalid TOML: nested more than {MAX_DEPTH} deep",
                    f"{where}:{_line_col(text, pos)}" if pos >= 0 else where) from None
    except ValueError:   # an integer past Python's int_max_str_digits (4300)
        m = re.search(r"\d{%d,}" % MAX_INT_DIGITS, text)
        raise error(f"invalid TOML: integer longer than {MAX_INT_DIGITS} digits",
                    f"{where}:{_line_col(text, m.start())}" if m else where) from None
    if check:
        check_toml_tree(data, text, where, error)
    return data


def check_toml_tree(data: Any, text: str, where: str, error: type[TuneupError]) -> None:
    """check_tree for a tree loads_toml(text, check=False) gave; a refusal names the line of the
    value too ("rules/x.toml:14: rule[3].expected: integer too large ...") when it can be found."""
    try:
        check_tree(data, where, error, root="", strings=toml_may_hold_surrogates(text))
    except error as exc:
        path = exc.message.split(": ", 1)[0]
        line = toml_line(text, path) if exc.where == where else None
        if line is None:
            raise
        raise error(exc.message, f"{where}:{line}") from None


_TOML_PATH_PART = r'\.?([A-Za-z0-9_-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]'   # .key [3] ["odd key"]


def _toml_path(path: str) -> list[str | int] | None:
    """check_tree's path of a TOML value ("rule[3].fix.value") as keys and array indexes."""
    out: list[str | int] = []
    end = 0
    for m in re.finditer(_TOML_PATH_PART, path):
        if m.start() != end:
            return None
        end = m.end()
        bare, index, quoted = m.groups()
        out.append(bare if bare is not None else int(index) if index is not None else json.loads(quoted))
    return out if out and end == len(path) else None


def _toml_keys(text: str) -> list[str]:
    """The parts of a dotted TOML key (bare or quoted), as written."""
    return [k.strip().strip("\"'") for k in text.split(".")]


def toml_line(text: str, path: str) -> int | None:
    """The line (1-based) of the value at check_tree's path in a TOML text, found by following
    its [table] and [[array]] headers and `key =` lines (an error path only: best effort, None
    when it cannot be told; multi-line strings are not skipped)."""
    target = _toml_path(path)
    if target is None:
        return None
    current: list[str | int] = []
    counts: dict[tuple[str, ...], int] = {}
    best, best_len = None, 0
    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if line.startswith("[["):
            name = tuple(_toml_keys(line[2:line.find("]]")] if "]]" in line else line[2:]))
            counts[name] = counts.get(name, -1) + 1
            current = [*name, counts[name]]
            here = current
        elif line.startswith("["):
            current = list(_toml_keys(line[1:line.find("]")] if "]" in line else line[1:]))
            here = current
        elif "=" in line and not line.startswith("#"):
            here = [*current, *_toml_keys(line.split("=", 1)[0])]
        else:
            continue
        k = 0
        while k < len(here) and k < len(target) and here[k] == target[k]:
            k += 1
        if k == len(here) and k > best_len:
            best, best_len = n, k
            if k == len(target):
                break
    return best


def toml_may_hold_surrogates(text: str) -> bool:
    """Whether a tree parsed from this TOML text may hold lone surrogates. A TOML parser refuses
    escapes of surrogates (\\ud800 is not a Unicode scalar value), so only text that holds one
    itself can give one: searched once here, not string by string in the tree."""
    return _surrogate_in(text)
