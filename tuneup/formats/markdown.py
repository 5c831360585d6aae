"""Markdown for a pull-request comment (GitHub/GitLab flavoured): problems in a table, the rest
folded away. Every value from a host or a rule is escaped: markdown and inline HTML both."""

from __future__ import annotations

from typing import Any

from tuneup.engine import render
from tuneup.formats.safe import escaped
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
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
    bad = (Status.FAIL, Status.ERROR)
    problems = [f for f in findings if f.status in bad]
    other = [f for f in findings if f.status not in bad]
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
    report = escaped(report)
    params = ", ".join(f"{esc(k)}={v}" for k, v in report.params.items())
    bad = sum(1 for f in report.findings if f.status in (Status.FAIL, Status.ERROR))
    head = "## tuneup audit: " + (f"❌ {bad} failing" if bad else "✅ passing")
    lines = [head, "", *_report_body(report), f"<sub>Parameters: {params}</sub>", ""]
    return "\n".join(lines)


# GitHub refuses a comment body over 65,536 characters (and a job summary over 1 MiB): the fleet
# report stays under this budget whatever the fleet's size, keeping room for a caller's own text.
FLEET_BUDGET = 60_000
_SHOWN_HOSTS = 5        # host names listed per failing rule
_SHOWN_RULES = 6        # rule ids listed per failing host
_OPEN_ROWS = 20         # host rows shown before the <details> fold


def _clipped(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


class _FleetSink(Sink):
    """A pull-request comment: failing rules (most severe first) with host counts, then the hosts
    with the most failures, folded past a few and cut at FLEET_BUDGET characters; passing hosts
    are counted, not listed. Nothing per host is kept but its summary row."""

    escape = True

    def head(self, fleet) -> str:
        n = len(fleet)
        bad = fleet.failing_hosts
        head = (f"## tuneup fleet audit: {bad} of {n} hosts failing" if bad
                else f"## tuneup fleet audit: ✅ {n} hosts passing")
        params = ", ".join(f"{esc(k)}={v}" for k, v in fleet.params.items())
        lines = [head, "", f"Profile **{esc(fleet.profile)}** ({params}); findings: {_summary(fleet.summary())}", ""]
        stamps = sorted(r.collected_at for r in fleet.rows if r.collected_at)
        if stamps:
            lines += [f"Snapshots collected {esc(stamps[0])} to {esc(stamps[-1])}." if stamps[0] != stamps[-1]
                      else f"Snapshots collected {esc(stamps[0])}.", ""]
        failing = fleet.failing_rules()
        if failing:
            lines += ["| Rule | Severity | Hosts failing | Which |", "|---|---|---|---|"]
            for rid, sev, title, hosts in failing:
                shown = ", ".join(esc(_clipped(h)) for h in hosts[:_SHOWN_HOSTS])
                if len(hosts) > _SHOWN_HOSTS:
                    shown += f" and {len(hosts) - _SHOWN_HOSTS} more"
                lines.append(f"| {esc(rid)} | {sev} | {len(hosts)}/{n} | {shown} |")
            lines.append("")
        out = "\n".join(lines)
        rows = [r for r in fleet.hosts_by_failures() if r.bad]
        passing = n - len(rows)
        tail = (f"\n{passing} host{'s' if passing != 1 else ''} passing"
                f"{' (not listed)' if rows else ''}. The whole fleet, host by host: `tuneup audit --snapshot ... "
                f"--format html`.\n")
        if rows:
            table_head = "| Host | Kernel | Collected | Fail | Error | Failing rules |\n|---|---|---|---|---|---|\n"
            budget = FLEET_BUDGET - len(out) - len(tail) - 400
            shown: list[str] = []
            used = 0
            for r in rows:
                ids = ", ".join(esc(x) for x in r.failing[:_SHOWN_RULES])
                if len(r.failing) > _SHOWN_RULES:
                    ids += f" +{len(r.failing) - _SHOWN_RULES}"
                line = (f"| {esc(_clipped(r.label))} | {code(_clipped(r.kernel, 30))} | "
                        f"{esc(r.collected_at[:19]) or '–'} | {r.counts['fail']} | {r.counts['error']} | {ids} |\n")
                if used + len(line) > budget:
                    break
                shown.append(line)
                used += len(line)
            out += f"\n### Failing hosts ({len(rows)}), most failures first\n\n" + table_head + "".join(shown[:_OPEN_ROWS])
            if len(shown) > _OPEN_ROWS:
                out += (f"\n<details><summary>{len(shown) - _OPEN_ROWS} more failing hosts</summary>\n\n"
                        + table_head + "".join(shown[_OPEN_ROWS:]) + "\n</details>\n")
            if len(shown) < len(rows):
                out += f"\n… and {len(rows) - len(shown)} more failing hosts, not listed to fit a comment.\n"
        return out + tail


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
