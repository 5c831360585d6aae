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
from tuneup import textsafe
from tuneup.textsafe import printable

T = TypeVar("T", Report, Fleet)


_FINDING_FIELDS = tuple(f.name for f in dataclasses.fields(Finding))


def _dirty(v: Any) -> bool:
    """Whether v holds a string with a character printable() would escape (checked before copying:
    almost every report has none, and a fleet has thousands of findings)."""
    if isinstance(v, str):
        return textsafe.has_unsafe(v)
    if isinstance(v, (tuple, list)):
        return any(_dirty(x) for x in v)
    if isinstance(v, dict):
        return any(_dirty(k) or _dirty(x) for k, x in v.items())
    return False


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
    for name in _FINDING_FIELDS:
        v = getattr(f, name)
        # enum members (Status, Severity, Scope) are str/int subclasses: never touched
        if type(v) in (str, tuple, list, dict) and _dirty(v):
            changes[name] = _value(v)
    return dataclasses.replace(f, **changes) if changes else f


def _report(r: Report) -> Report:
    findings = tuple(_finding(f) for f in r.findings)
    if not (_dirty(r.profile) or _dirty(r.params) or _dirty(r.host) or _dirty(r.origin)
            or _dirty(r.collected_at)) and all(a is b for a, b in zip(findings, r.findings)):
        return r
    return dataclasses.replace(r, profile=printable(r.profile), params=_value(r.params), host=_value(r.host),
                               findings=findings, origin=printable(r.origin),
                               collected_at=printable(r.collected_at))


def escaped(x: T) -> T:
    """The same Report or Fleet with every string escaped by tuneup.textsafe.printable."""
    if isinstance(x, Fleet):
        return dataclasses.replace(x, profile=printable(x.profile), params=_value(x.params),
                                   reports=tuple(_report(r) for r in x.reports))
    return _report(x)
