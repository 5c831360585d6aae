"""Compare two snapshots (and their reports): which facts and findings differ. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuneup.model import Finding, Report, Snapshot, Value

HOST_FIELDS = ("hostname", "kernel", "distro", "arch", "cpus", "mem_total_bytes", "netns")


@dataclass(frozen=True)
class FactChange:
    key: str
    a: Value
    b: Value
    a_error: str | None = None
    b_error: str | None = None
    a_present: bool = True       # the key is in snapshot A at all
    b_present: bool = True


@dataclass(frozen=True)
class FindingChange:
    rule: str
    key: str
    target: str | None
    a: Finding | None
    b: Finding | None


@dataclass(frozen=True)
class Diff:
    a_name: str
    b_name: str
    host: tuple[tuple[str, Any, Any], ...]
    facts: tuple[FactChange, ...]
    findings: tuple[FindingChange, ...]
    profile: str = ""

    @property
    def empty(self) -> bool:
        return not (self.facts or self.findings)


def _comparable(f) -> tuple:
    return (f.value, f.error)


def compare(a: Snapshot, b: Snapshot, ra: Report, rb: Report, a_name: str, b_name: str) -> Diff:
    host = tuple((k, a.host.get(k), b.host.get(k)) for k in HOST_FIELDS if a.host.get(k) != b.host.get(k))
    facts = []
    for key in sorted(set(a.facts) | set(b.facts)):
        fa, fb = a.facts.get(key), b.facts.get(key)
        if fa is not None and fb is not None and _comparable(fa) == _comparable(fb):
            continue
        facts.append(FactChange(
            key=key, a=fa.value if fa else None, b=fb.value if fb else None,
            a_error=fa.error if fa else None, b_error=fb.error if fb else None,
            a_present=fa is not None, b_present=fb is not None))
    index_a = {(f.rule, f.key, f.target): f for f in ra.findings}
    index_b = {(f.rule, f.key, f.target): f for f in rb.findings}
    findings = []
    for ident in sorted(set(index_a) | set(index_b), key=lambda t: (t[0], t[1], t[2] or "")):
        fa, fb = index_a.get(ident), index_b.get(ident)
        if fa and fb and fa.status == fb.status and fa.actual == fb.actual and fa.expected == fb.expected:
            continue
        findings.append(FindingChange(rule=ident[0], key=ident[1], target=ident[2], a=fa, b=fb))
    return Diff(a_name=a_name, b_name=b_name, host=host, facts=tuple(facts), findings=tuple(findings),
                profile=ra.profile)
