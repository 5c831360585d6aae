"""How old a snapshot is, and `--max-age DURATION`: a per-report check, the same for one host and
for every host of a fleet (call check_age on each report).

A report whose facts are older than the limit, or that does not say when they were collected,
gets one extra finding, SNAPSHOT-AGE, with status fail and severity warning: it fails the run at
the default --fail-on warning (and info), and is reported without failing it at --fail-on critical.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import re

from tuneup.errors import UsageError
from tuneup.model import Finding, Report, Scope, Severity, Status

RULE_ID = "SNAPSHOT-AGE"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$"     # compiled on first use: only --max-age needs it


def parse_duration(text: str, where: str = "--max-age") -> _dt.timedelta:
    """"90s", "30m", "12h", "7d", "2w" -> timedelta; anything else is a usage error (exit 2)."""
    m = re.match(_DURATION, text or "", re.IGNORECASE)
    if not m:
        raise UsageError(f"{text!r}: expected a number and a unit, e.g. 30m, 12h, 7d (units: s m h d w)", where)
    seconds = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if seconds <= 0:
        raise UsageError(f"{text!r}: must be more than zero", where)
    return _dt.timedelta(seconds=seconds)


def parse_time(text: str) -> _dt.datetime | None:
    """An ISO 8601 time from a snapshot, as an aware datetime (UTC when it names no zone)."""
    if not text:
        return None
    try:
        when = _dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=_dt.timezone.utc)


def age_of(when: _dt.datetime, now: _dt.datetime | None = None) -> _dt.timedelta:
    return (now or _dt.datetime.now(_dt.timezone.utc)) - when


def describe_age(age: _dt.timedelta) -> str:
    s = age.total_seconds()
    if s < -60:
        return "in the future: check the clocks"
    if s < 90:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size * (1.5 if unit != "minute" else 1):
            n = round(s / size)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def check_age(report: Report, max_age: _dt.timedelta | None, now: _dt.datetime | None = None) -> Report:
    """The report, with a failing SNAPSHOT-AGE finding when its facts are older than max_age (or
    undated). None: no check. A live audit is collected now and always passes."""
    if max_age is None:
        return report
    when = parse_time(report.collected_at)
    limit = describe_limit(max_age)
    if when is None:
        status, actual = Status.FAIL, None
        message = f"the snapshot does not say when it was collected, so it cannot be shown to be newer than {limit}"
    else:
        age = age_of(when, now)
        actual = int(age.total_seconds())
        status = Status.FAIL if age > max_age else Status.PASS
        message = (f"facts collected {describe_age(age)} ({report.collected_at})"
                   + (f", older than --max-age {limit}: collect a fresh snapshot" if status is Status.FAIL else ""))
    finding = Finding(rule=RULE_ID, key="collected_at", status=status, severity=Severity.WARNING, actual=actual,
                      expected=f"<= {int(max_age.total_seconds())} s", message=message,
                      title="Snapshot is recent enough (--max-age)", scope=Scope.HOST,
                      source=report.origin, expected_value=int(max_age.total_seconds()),
                      rationale="A snapshot shows the host as it was when collected; settings may have changed since.",
                      how="`tuneup collect -o FILE` on the host for a fresh snapshot")
    return dataclasses.replace(report, findings=report.findings + (finding,))


def describe_limit(d: _dt.timedelta) -> str:
    s = int(d.total_seconds())
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"
