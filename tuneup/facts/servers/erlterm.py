"""A small reader for Erlang terms as in sys.config (file:consult format), keeping line numbers.

Supported: integers (incl. 16#FF and 1_000), floats, atoms (bare and 'quoted'), "strings",
<<"binaries">>, lists (with | tails), tuples, maps #{K => V}, comments. Each term is ended by '.'.
Values: int, float, Atom (str subclass), str for strings/binaries, list, Tuple, dict (keys must be
hashable: atoms, ints, strings). Every container remembers the line it starts on (.line).
"""

from __future__ import annotations

import re

from tuneup.facts.servers.common import ConfigError


class Atom(str):
    line = 0


class Tuple(tuple):
    line = 0


class List(list):
    line = 0


class Map(dict):
    line = 0


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<nl>\n) | (?P<comment>%[^\n]*)
  | (?P<float>-?\d+\.\d+(?:[eE][+-]?\d+)?)
  | (?P<int>-?\d+\#[0-9a-zA-Z_]+|-?\d[\d_]*)
  | (?P<atom>[a-z][A-Za-z0-9_@]*) | (?P<qatom>'(?:[^'\\]|\\.)*')
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<punct><<|>>|=>|:=|\#\{|[{}\[\],|.])
""", re.VERBOSE)

_ESC = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "\\": "\\", "'": "'", '"': '"', "e": "\x1b", "0": "\0"}


def _unescape(s: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESC.get(m.group(1), m.group(1)), s)


def tokens(text: str, path: str):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConfigError(f"unexpected character {text[pos]!r}", f"{path}:{line}")
        kind, val = m.lastgroup, m.group()
        if kind == "nl":
            line += 1
        elif kind not in ("ws", "comment"):
            yield kind, val, line
            line += val.count("\n")
        pos = m.end()


def consult(text: str, path: str) -> list:
    """The terms of a file, like file:consult/1."""
    toks = list(tokens(text, path))
    i = 0
    out = []

    def peek():
        return toks[i] if i < len(toks) else ("eof", "", toks[-1][2] if toks else 1)

    def expect(v):
        nonlocal i
        k, val, ln = peek()
        if val != v or k not in ("punct",):
            raise ConfigError(f"expected {v!r}, found {val or 'end of file'!r}", f"{path}:{ln}")
        i += 1

    def term():
        nonlocal i
        k, val, ln = peek()
        i += 1
        if k == "int":
            raw = val.replace("_", "")
            if "#" in raw:
                base, digits = raw.split("#", 1)
                neg = base.startswith("-")
                n = int(digits, int(base.lstrip("-")))
                return -n if neg else n
            return int(raw)
        if k == "float":
            return float(val)
        if k == "atom":
            a = Atom(val)
            a.line = ln
            return a
        if k == "qatom":
            a = Atom(_unescape(val[1:-1]))
            a.line = ln
            return a
        if k == "string":
            s = _unescape(val[1:-1])
            while peek()[0] == "string":       # "a" "b" concatenates
                s += _unescape(peek()[1][1:-1])
                i += 1
            return s
        if val == "<<":
            parts = []
            while peek()[1] != ">>":
                k2, v2, ln2 = peek()
                if k2 == "string":
                    parts.append(_unescape(v2[1:-1]))
                elif k2 == "int":
                    parts.append(chr(int(v2)))
                elif v2 != ",":
                    raise ConfigError(f"unsupported binary element {v2!r}", f"{path}:{ln2}")
                i += 1
            i += 1
            return "".join(parts)
        if val == "{":
            items = []
            if peek()[1] != "}":
                items.append(term())
                while peek()[1] == ",":
                    i += 1
                    items.append(term())
            expect("}")
            t = Tuple(items)
            t.line = ln
            return t
        if val == "[":
            items = List()
            items.line = ln
            if peek()[1] != "]":
                items.append(term())
                while peek()[1] == ",":
                    i += 1
                    items.append(term())
                if peek()[1] == "|":
                    i += 1
                    items.append(term())
            expect("]")
            return items
        if val == "#{":
            m = Map()
            m.line = ln
            if peek()[1] != "}":
                while True:
                    key = term()
                    if peek()[1] not in ("=>", ":="):
                        raise ConfigError("expected '=>' in a map", f"{path}:{peek()[2]}")
                    i += 1
                    try:
                        m[key] = term()
                    except TypeError:
                        raise ConfigError("unsupported map key", f"{path}:{ln}") from None
                    if peek()[1] != ",":
                        break
                    i += 1
            expect("}")
            return m
        raise ConfigError(f"unexpected {val or 'end of file'!r}", f"{path}:{ln}")

    while i < len(toks):
        out.append(term())
        expect(".")
    return out
