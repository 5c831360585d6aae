"""Terminal table: problems first, then the reasons, then one summary line."""

from __future__ import annotations

from typing import Any

from tuneup.engine import render
from tuneup.formats.safe import escaped
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.model import Fleet, Report, Status

_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.UNKNOWN: 2, Status.WAIVED: 3, Status.SKIP: 4, Status.PASS: 5}


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ANSI colours per status; only used when the CLI says the output is a terminal without NO_COLOR.
_COLOURS = {Status.FAIL: "31;1", Status.ERROR: "35;1", Status.UNKNOWN: "33", Status.WAIVED: "36",
            Status.SKIP: "2", Status.PASS: "32"}


def _status(status: Status, text: str, color: bool) -> str:
    return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if color else text


def format_report(report: Report, *, color: bool = False, **_: Any) -> str:
    report = escaped(report)
    from tabulate import tabulate

    findings = sorted(report.findings, key=lambda f: (_ORDER[f.status], -f.severity, f.rule))
    rows = [
        [_status(f.status, f.status.value.upper() + (" (host)" if f.host_only else ""), color), str(f.severity), f.rule,
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
                if f.source and not f.source.startswith("/proc/sys/"):
                    lines.append(f"      from: {f.source}")
    s = report.summary()
    lines += ["", "Summary: " + ", ".join(f"{v} {k}" for k, v in s.items() if v or k in ("pass", "fail"))]
    return "\n".join(lines) + "\n"


class _FleetSink(Sink):
    """One line per host (most failures first), then the rules failing anywhere, most severe first.
    Nothing per host is kept but its row."""

    escape = True

    def head(self, fleet) -> str:
        from tabulate import tabulate

        color = bool(self.opts.get("color"))
        rows = []
        for r in fleet.hosts_by_failures():
            s = r.counts
            state = _status(Status.FAIL if r.bad else Status.PASS, "FAIL" if r.bad else "OK", color)
            rows.append([state, _clip(r.label, 40), _clip(r.kernel, 24), _clip(r.collected_at[:19] or "-", 19),
                         s["fail"], s["error"], s["waived"], s["unknown"], s["pass"]])
        failing = fleet.failing_rules()
        n = len(fleet)
        lines = [
            f"tuneup fleet audit of {n} host{'s' if n != 1 else ''}, profile {fleet.profile}: "
            + ", ".join(f"{k}={v}" for k, v in fleet.params.items()),
            "",
            tabulate(rows, headers=["STATE", "HOST", "KERNEL", "COLLECTED", "FAIL", "ERROR", "WAIVED", "UNKNOWN",
                                    "PASS"], tablefmt="simple"),
        ]
        if failing:
            lines += ["", "Rules failing on hosts (most severe first):", ""]
            lines.append(tabulate(
                [[rid, str(sev), f"{len(hosts)}/{n}", _clip(", ".join(hosts[:20]), 60)]
                 for rid, sev, _t, hosts in failing],
                headers=["RULE", "SEVERITY", "HOSTS", "WHICH"], tablefmt="simple"))
        s = fleet.summary()
        lines += ["", f"Summary: {fleet.failing_hosts} of {n} hosts failing; findings: "
                  + ", ".join(f"{v} {k}" for k, v in s.items() if v or k in ("pass", "fail"))]
        return "\n".join(lines) + "\n"


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    """One line per host, then the rules that fail on hosts."""
    return render_fleet(fleet_sink(**opts), fleet)
