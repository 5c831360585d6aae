"""Reports with every string from a host, a file or a snapshot made printable, for the formats a
person reads (table, markdown, HTML, Prometheus): control characters (ESC, C1, DEL, U+2028/2029,
lone surrogates, newlines) shown escaped, so a process name set with prctl to ``\\e]0;pwn\\a`` or a
snapshot's hostname can neither retitle the terminal nor clear it. JSON and SARIF keep the raw
strings: json.dumps escapes them itself.

Each text format calls ``escaped()`` once on what it is given and then formats as usual.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from tuneup.model import Finding, Fleet, Report
from tuneup.textsafe import printable

T = TypeVar("T", Report, Fleet)


def _value(v: Any) -> Any:
    if isinstance(v, str):
        return printable(v)
    if isinstance(v, tuple):
        return tuple(_value(x) for x in v)
    if isinstance(v, list):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {printable(k) if isinstance(k, str) else k: _value(x) for k, x in v.items()}
    return v


def _finding(f: Finding) -> Finding:
    changes = {}
    for fld in dataclasses.fields(f):
        v = getattr(f, fld.name)
        # keep enum members (Status, Severity, Scope are str/int subclasses) as they are
        if type(v) in (str, tuple, list, dict):
            nv = _value(v)
            if nv != v:
                changes[fld.name] = nv
    return dataclasses.replace(f, **changes) if changes else f


def _report(r: Report) -> Report:
    return dataclasses.replace(r, profile=printable(r.profile), params=_value(r.params), host=_value(r.host),
                               findings=tuple(_finding(f) for f in r.findings), origin=printable(r.origin))


def escaped(x: T) -> T:
    """The same Report or Fleet with every string escaped by tuneup.textsafe.printable."""
    if isinstance(x, Fleet):
        return dataclasses.replace(x, profile=printable(x.profile), params=_value(x.params),
                                   reports=tuple(_report(r) for r in x.reports))
    return _report(x)
