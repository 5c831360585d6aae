"""Terminal table: problems first, then the reasons, then one summary line."""

from __future__ import annotations

from typing import Any

from tuneup.engine import render
from tuneup.model import Report, Status

_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.UNKNOWN: 2, Status.WAIVED: 3, Status.SKIP: 4, Status.PASS: 5}


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_report(report: Report, **_: Any) -> str:
    from tabulate import tabulate

    findings = sorted(report.findings, key=lambda f: (_ORDER[f.status], -f.severity, f.rule))
    rows = [
        [f.status.value.upper() + (" (host)" if f.host_only else ""), str(f.severity), f.rule,
         _clip(f.key, 36), _clip(render(f.actual) if f.actual is not None else "-", 28), _clip(f.expected or "-", 28)]
        for f in findings
    ]
    host = report.host
    lines = [
        f"tuneup audit of {host.get('hostname', '?')} (kernel {host.get('kernel', '?')}, "
        f"{host.get('distro', '?')}, netns {host.get('netns', '?')}) profile {report.profile}: "
        + ", ".join(f"{k}={v}" for k, v in report.params.items()),
        "",
        tabulate(rows, headers=["STATUS", "SEVERITY", "RULE", "KEY", "ACTUAL", "EXPECTED"], tablefmt="simple"),
    ]
    notes = [f for f in findings if f.status is not Status.PASS]
    if notes:
        lines += ["", "Details:"]
        for f in notes:
            lines.append(f"  {f.rule}: {f.message}")
            if f.status is Status.FAIL:
                lines.append(f"      why: {f.rationale}")
    s = report.summary()
    lines += ["", "Summary: " + ", ".join(f"{v} {k}" for k, v in s.items() if v or k in ("pass", "fail"))]
    return "\n".join(lines) + "\n"
