"""Waivers: accepted exceptions with a reason and an expiry date.

A waiver file (TOML) holds any number of entries:

    [[waiver]]
    rule = "NET-SOMAXCONN"           # rule id (a glob such as "CT-*" works too)
    reason = "redis sets its own backlog; tracked in OPS-123"
    expires = 2099-12-31             # TOML date (or "2099-12-31"); valid through that day
    hosts = "db-*"                   # optional hostname glob, or a list of globs

`apply` is pure: Report -> Report. A failing (or erroring) finding that a live waiver matches gets
status WAIVED and does not fail the run; a matching waiver that has expired leaves the finding
failing and says so in its message.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from tuneup.errors import TuneupError
from tuneup.inputs import loads_toml, read_text
from tuneup.model import Report, Status
from tuneup.record import Frozen
from tuneup.rx import lazy
from tuneup.textsafe import printable

_set = object.__setattr__   # the written-out __init__s of the Frozen classes

_FIELDS = {"rule", "reason", "expires", "hosts"}
_RULE_GLOB = lazy(r"[A-Z0-9*?\[\]!_-]{1,200}")
WAIVABLE = (Status.FAIL, Status.ERROR)


class WaiverError(TuneupError):
    kind = "waiver file"


@dataclass(init=False, eq=False, repr=False)
class Waiver(Frozen):
    """An accepted finding: rule id or glob, reason, expiry, hostname globs, origin."""

    rule: str                      # id or glob, upper case
    reason: str
    expires: _dt.date
    hosts: tuple[str, ...] = ()    # hostname globs; empty = every host
    origin: str = ""               # "waivers.toml:4"

    def __init__(self, rule, reason, expires, hosts=(), origin="") -> None:
        _set(self, "rule", rule)
        _set(self, "reason", reason)
        _set(self, "expires", expires)
        _set(self, "hosts", hosts)
        _set(self, "origin", origin)

    def matches(self, rule: str, hostname: str) -> bool:
        if not fnmatchcase(rule, self.rule):
            return False
        return not self.hosts or any(fnmatchcase(hostname, h) for h in self.hosts)

    def expired(self, today: _dt.date) -> bool:
        return today > self.expires


def parse(data: dict[str, Any], text: str, where: str, *, allow: Iterable[str] = ()) -> list[Waiver]:
    """Waivers from parsed TOML; `text` finds line numbers; `allow` = other top-level keys allowed."""
    extra = set(data) - {"waiver", *allow}
    if extra:
        raise WaiverError(f"unknown top-level key(s) {', '.join(sorted(extra))}; expected [[waiver]]", where)
    entries = data.get("waiver", [])
    if not isinstance(entries, list):
        raise WaiverError("'waiver' must be an array of tables ([[waiver]])", where)
    lines = [n for n, line in enumerate(text.splitlines(), 1) if line.strip() == "[[waiver]]"]
    out = []
    for i, entry in enumerate(entries):
        loc = f"{where}:{lines[i]}" if i < len(lines) else where
        out.append(_build(entry, loc))
    return out


def _build(e: Any, where: str) -> Waiver:
    if not isinstance(e, dict):
        raise WaiverError("[[waiver]] entry must be a table", where)
    rule = e.get("rule")
    label = f"waiver for {rule}" if isinstance(rule, str) and rule else "waiver"
    unknown = set(e) - _FIELDS
    if unknown:
        raise WaiverError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}", where)
    for req in ("rule", "reason", "expires"):
        if req not in e:
            raise WaiverError(f"{label}: missing field {req!r}", where)
    if not isinstance(rule, str) or not rule.strip():
        raise WaiverError("waiver: 'rule' must be a non-empty string (a rule id)", where)
    if not _RULE_GLOB.fullmatch(rule.strip().upper()):
        raise WaiverError(f"waiver: 'rule' must be a rule id or glob (letters, digits, - * ? [ ]), "
                          f"got {printable(rule)[:100]!r}", where)
    reason = e["reason"]
    if not isinstance(reason, str) or not reason.strip():
        raise WaiverError(f"{label}: 'reason' must be a non-empty string", where)
    expires = e["expires"]
    if isinstance(expires, str):
        try:
            expires = _dt.date.fromisoformat(expires.strip())
        except ValueError:
            raise WaiverError(f"{label}: expires {e['expires']!r} is not a date (YYYY-MM-DD)", where) from None
    elif isinstance(expires, _dt.datetime):
        expires = expires.date()
    if not isinstance(expires, _dt.date):
        raise WaiverError(f"{label}: expires must be a date such as 2025-06-30", where)
    hosts = e.get("hosts", ())
    if isinstance(hosts, str):
        hosts = (hosts,)
    if not isinstance(hosts, (list, tuple)) or not all(isinstance(h, str) and 0 < len(h) <= 255 for h in hosts):
        raise WaiverError(f"{label}: hosts must be a hostname glob or a list of them (at most 255 characters each)",
                          where)
    return Waiver(rule=rule.strip().upper(), reason=" ".join(reason.split()), expires=expires,
                  hosts=tuple(hosts), origin=where)


def load(path: Path | str) -> list[Waiver]:
    text = read_text(path, WaiverError)
    return parse(loads_toml(text, str(path), WaiverError), text, str(path))


def check_rules(waivers: Sequence[Waiver], rule_ids: Iterable[str]) -> None:
    """A waiver that names no known rule is a typo that would silently waive nothing: exit 2."""
    ids = list(rule_ids)
    for w in waivers:
        if not any(fnmatchcase(r, w.rule) for r in ids):
            raise WaiverError(f"waiver for {w.rule}: no such rule (see `tuneup rules list`)", w.origin)


def apply(report: Report, waivers: Sequence[Waiver], today: _dt.date) -> Report:
    """Report -> Report with matching failures waived (or marked as failing past an expired waiver)."""
    if not waivers:
        return report
    hostname = str(report.host.get("hostname", ""))
    findings = []
    changed = False
    for f in report.findings:
        if f.status in WAIVABLE:
            hits = [w for w in waivers if w.matches(f.rule, hostname)]
            live = [w for w in hits if not w.expired(today)]
            if live:
                w = max(live, key=lambda w: w.expires)
                f = dataclasses.replace(
                    f, status=Status.WAIVED, waiver=f"{w.reason} (until {w.expires}, {w.origin})",
                    message=f"waived until {w.expires}: {w.reason} [{f.message}]")
                changed = True
            elif hits:
                w = max(hits, key=lambda w: w.expires)
                f = dataclasses.replace(
                    f, waiver=f"expired {w.expires}: {w.reason} ({w.origin})",
                    message=f"{f.message} (waiver expired on {w.expires}: {w.reason}; {w.origin})")
                changed = True
        findings.append(f)
    return dataclasses.replace(report, findings=tuple(findings)) if changed else report


def matching_no_host(waivers: Sequence[Waiver], hostnames: Iterable[str]) -> list[Waiver]:
    """Waivers whose `hosts` globs match none of the audited hostnames.

    Globs match the hostname each snapshot carries (what `tuneup collect` read on the host), not an
    inventory name: such a waiver is almost always a typo or an inventory alias, and waives nothing."""
    names = list(hostnames)
    return [w for w in waivers if w.hosts and not any(fnmatchcase(n, h) for n in names for h in w.hosts)]
