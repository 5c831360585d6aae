"""Prometheus text exposition format for node_exporter's textfile collector.

    tuneup_rule_failed{rule,key,severity,status}   1 when the finding fails the audit (fail or
                                                   error), 0 otherwise (pass, skip, unknown, waived)
    tuneup_rule_observed_value{rule,key}           the value found, when it is a number
    tuneup_rule_expected_value{rule,key,op}        the threshold it was compared with, when a number;
                                                   op is the comparison (">=", "<=", "==", ...)
    tuneup_findings{status}                        findings per status
    tuneup_audit_info{profile,version}             1
    tuneup_snapshot_collected_timestamp_seconds    when the facts were collected (Unix time)

Process rules add a ``target`` label ("pid 812 (nginx)"). A fleet adds a ``host`` label to every series. Write it with ``-o DIR/tuneup.prom --force``: the
CLI writes a temp file and renames it, so the collector never reads half a file.
"""

from __future__ import annotations

import math
from typing import Any

from tuneup import __version__
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.freshness import parse_time
from tuneup.model import RLIM_INFINITY, Fleet, Report, Status
from tuneup.textsafe import printable

FAILING = (Status.FAIL, Status.ERROR)

_HELP = {
    "tuneup_rule_failed": "1 if the rule fails on this host (status fail or error), else 0; status says why.",
    "tuneup_rule_observed_value": "Value tuneup observed for the rule's key (numeric values only).",
    "tuneup_rule_expected_value": "Threshold the observed value is compared with (numeric thresholds only).",
    "tuneup_findings": "Findings of the last tuneup audit by status.",
    "tuneup_audit_info": "Profile and version of the last tuneup audit.",
    "tuneup_snapshot_collected_timestamp_seconds": "When the audited facts were collected (Unix time).",
}


def _label(value: Any) -> str:
    # newlines round-trip through the format's own escape; every other control character is shown
    # escaped (tuneup.textsafe) so that `cat` of the file cannot drive a terminal
    text = "\n".join(printable(part) for part in str(value).split("\n"))
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: dict[str, Any]) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in pairs.items()) + "}"


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, int) and v >= RLIM_INFINITY:
        return math.inf
    return float(v)


def _fmt(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def _series(reports: list[tuple[dict[str, str], Report]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {name: [] for name in _HELP}
    for extra, r in reports:
        seen: set[tuple[str, str]] = set()
        for f in r.findings:
            ident = (f.rule, f.key, f.target or "")
            if ident in seen:          # one series per rule, key (and target process)
                continue
            seen.add(ident)
            base = {**extra, "rule": f.rule, "key": f.key, **({"target": f.target} if f.target else {})}
            out["tuneup_rule_failed"].append(
                f"tuneup_rule_failed{_labels({**base, 'severity': str(f.severity), 'status': f.status.value})} "
                f"{1 if f.status in FAILING else 0}")
            actual = _number(f.actual)
            if actual is not None:
                out["tuneup_rule_observed_value"].append(f"tuneup_rule_observed_value{_labels(base)} {_fmt(actual)}")
            expected = _number(f.expected_value)
            if expected is not None:
                op = f.expected.split()[0] if f.expected.split() else ""
                out["tuneup_rule_expected_value"].append(
                    f"tuneup_rule_expected_value{_labels({**base, 'op': op})} {_fmt(expected)}")
        for status, n in r.summary().items():
            out["tuneup_findings"].append(f"tuneup_findings{_labels({**extra, 'status': status})} {n}")
        out["tuneup_audit_info"].append(
            f"tuneup_audit_info{_labels({**extra, 'profile': r.profile, 'version': __version__})} 1")
        when = parse_time(r.collected_at)
        if when is not None:
            out["tuneup_snapshot_collected_timestamp_seconds"].append(
                f"tuneup_snapshot_collected_timestamp_seconds{_labels(extra) if extra else ''} "
                f"{int(when.timestamp())}")
    return out


def _document(reports: list[tuple[dict[str, str], Report]]) -> str:
    lines: list[str] = []
    for name, samples in _series(reports).items():
        if not samples:
            continue
        lines += [f"# HELP {name} {_HELP[name]}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n"


def format_report(report: Report, **_: Any) -> str:
    return _document([({}, report)])


class _FleetSink(Sink):
    """The exposition format keeps each metric family together: one spool file per family,
    joined at the end. Every series has a host label."""

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.spools: dict[str, Any] = {}

    def host(self, row, report: Report, index: int) -> None:
        import tempfile

        for name, samples in _series([({"host": row.label}, report)]).items():
            if samples:
                if name not in self.spools:
                    self.spools[name] = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="tuneup-prom-")
                self.spools[name].write("\n".join(samples) + "\n")

    def finish(self, fleet, out) -> None:
        import shutil

        for name in _HELP:
            spool = self.spools.get(name)
            if spool is not None:
                out.write(f"# HELP {name} {_HELP[name]}\n# TYPE {name} gauge\n")
                spool.seek(0)
                shutil.copyfileobj(spool, out, 1 << 20)
        if not self.spools:
            out.write("\n")
        self.close()

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools = {}


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
