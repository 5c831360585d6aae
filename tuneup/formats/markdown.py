"""Markdown for a pull-request comment (GitHub/GitLab flavoured): problems in a table, the rest
folded away. Every value from a host or a rule is escaped: markdown and inline HTML both."""

from __future__ import annotations

from typing import Any

from tuneup.engine import render
from tuneup.model import Finding, Fleet, Report, Status

_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.UNKNOWN: 2, Status.WAIVED: 3, Status.SKIP: 4, Status.PASS: 5}
_ICON = {Status.FAIL: "❌", Status.ERROR: "💥", Status.UNKNOWN: "❔", Status.WAIVED: "🔕",
         Status.SKIP: "⏭️", Status.PASS: "✅"}
_SPECIAL = {c: f"\\{c}" for c in "\\`*_{}[]()!|~"}
_SPECIAL.update({"<": "&lt;", ">": "&gt;", "&": "&amp;", "@": "&#64;", "\n": " ", "\r": " "})


def esc(value: Any) -> str:
    """Text safe inside a table cell: no markup, no HTML, no line breaks."""
    return "".join(_SPECIAL.get(c, c) for c in str(value))


def code(value: Any) -> str:
    """An inline code span (keys, values): HTML is inert inside one; backticks and pipes are not."""
    text = str(value).replace("\n", " ").replace("\r", " ").replace("|", "\\|")
    if "`" in text:
        return esc(text)
    return f"`{text}`" if text else ""


def _value(v: Any) -> str:
    return code(render(v)) if v is not None else "–"


def _problems(findings: list[Finding]) -> list[str]:
    lines = ["| | Severity | Rule | Key | Actual | Expected | Message |", "|---|---|---|---|---|---|---|"]
    for f in findings:
        lines.append(f"| {_ICON[f.status]} {f.status.value} | {f.severity} | {esc(f.rule)} | {code(f.key)} | "
                     f"{_value(f.actual)} | {code(f.expected) or '–'} | {esc(f.message)} |")
    return lines


def _host_line(report: Report) -> str:
    h = report.host
    return (f"**{esc(h.get('hostname', '?'))}** — kernel {code(h.get('kernel', '?'))}, "
            f"{esc(h.get('distro', '?'))}, netns {esc(h.get('netns', '?'))}; profile **{esc(report.profile)}**; "
            f"facts collected {esc(report.collected_at or 'at an unknown time')}")


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v or k in ("pass", "fail"))


def _report_body(report: Report, level: str = "###") -> list[str]:
    findings = sorted(report.findings, key=lambda f: (_ORDER[f.status], -f.severity, f.rule))
    problems = [f for f in findings if f.status in (Status.FAIL, Status.ERROR)]
    other = [f for f in findings if f not in problems]
    lines = [_host_line(report), "", f"{_summary(report.summary())}", ""]
    if problems:
        lines += _problems(problems) + [""]
        why = [f"- **{esc(f.rule)}**: {esc(f.rationale)}" for f in problems if f.rationale]
        if why:
            lines += ["<details><summary>Why these matter</summary>", "", *why, "", "</details>", ""]
    else:
        lines += ["No failing findings.", ""]
    if other:
        lines += [f"<details><summary>{len(other)} other findings (passed, skipped, waived, unknown)</summary>", ""]
        lines += _problems(other) + ["", "</details>", ""]
    return lines


def format_report(report: Report, **_: Any) -> str:
    params = ", ".join(f"{esc(k)}={v}" for k, v in report.params.items())
    bad = sum(1 for f in report.findings if f.status in (Status.FAIL, Status.ERROR))
    head = "## tuneup audit: " + (f"❌ {bad} failing" if bad else "✅ passing")
    lines = [head, "", *_report_body(report), f"<sub>Parameters: {params}</sub>", ""]
    return "\n".join(lines)


def format_fleet(fleet: Fleet, **_: Any) -> str:
    labels = fleet.labels()
    n = len(fleet.reports)
    bad = [(label, r) for label, r in zip(labels, fleet.reports)
           if any(f.status in (Status.FAIL, Status.ERROR) for f in r.findings)]
    head = f"## tuneup fleet audit: {len(bad)} of {n} hosts failing" if bad else f"## tuneup fleet audit: ✅ {n} hosts passing"
    lines = [head, "", f"Profile **{esc(fleet.profile)}**; findings: {_summary(fleet.summary())}", ""]
    failing = fleet.failing_rules()
    if failing:
        lines += ["| Rule | Severity | Hosts failing | Which |", "|---|---|---|---|"]
        for rid, sev, _title, hosts in failing:
            shown = ", ".join(esc(h) for h in hosts[:10]) + (f" and {len(hosts) - 10} more" if len(hosts) > 10 else "")
            lines.append(f"| {esc(rid)} | {sev} | {len(hosts)}/{n} | {shown} |")
        lines.append("")
    lines += ["| Host | Kernel | Fail | Error | Waived | Pass |", "|---|---|---|---|---|---|"]
    for label, r in zip(labels, fleet.reports):
        s = r.summary()
        lines.append(f"| {esc(label)} | {code(r.host.get('kernel', '?'))} | {s['fail']} | {s['error']} | "
                     f"{s['waived']} | {s['pass']} |")
    lines.append("")
    for label, r in bad:
        lines += [f"<details><summary>{esc(label)}</summary>", "", *_report_body(r), "</details>", ""]
    return "\n".join(lines)
