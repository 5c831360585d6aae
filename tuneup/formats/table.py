"""Terminal table: problems first, then the reasons, then one summary line."""

from __future__ import annotations

from typing import Any

from tuneup.engine import render
from tuneup.formats.safe import escaped
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.formats.termfit import group, table, terminal_width, wrap
from tuneup.model import Fleet, Report, Status
from tuneup.textsafe import printable

_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.UNKNOWN: 2, Status.WAIVED: 3, Status.SKIP: 4, Status.PASS: 5}


def _clip(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# ANSI colours per status; only used when the CLI says the output is a terminal without NO_COLOR.
_COLOURS = {Status.FAIL: "31;1", Status.ERROR: "35;1", Status.UNKNOWN: "33", Status.WAIVED: "36",
            Status.SKIP: "2", Status.PASS: "32"}


def _status(status: Status, text: str, color: bool) -> str:
    return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if color else text


_SEV_WORD = {2: "critical", 1: "warning", 0: "info"}
PROBLEMS = (Status.FAIL, Status.ERROR, Status.UNKNOWN, Status.WAIVED)


def _by_severity(findings) -> list:
    """Severity first (critical at the top), then status (fail before error, unknown, waived, skip,
    pass), then rule id."""
    return sorted(findings, key=lambda f: (-f.severity, _ORDER[f.status], f.rule, f.target or ""))


def _age(collected_at: str, now: Any = None) -> str:
    """ "2026-12-03 23:00 UTC (3 hours ago)"; "" when unknown."""
    from tuneup.freshness import age_of, describe_age, parse_time

    when = parse_time(collected_at)
    if when is None:
        return printable(collected_at)
    stamp = when.strftime("%Y-%m-%d %H:%M UTC")
    return f"{stamp} ({describe_age(age_of(when, now))})"


def _header(report: Report, width: int, defaults: dict | None, config: str | None) -> list[str]:
    host = report.host
    lines = wrap(f"tuneup audit of {printable(host.get('hostname', '?'))}: profile {printable(report.profile)}, "
                 f"kernel {printable(host.get('kernel', '?'))} ({printable(host.get('distro', '?'))}"
                 + (f", netns {printable(host.get('netns'))}" if host.get("netns") not in (None, "initial") else "")
                 + ")", width, "", "  ")
    origin = report.origin
    where = ("the live host" if origin == "live" else f"tree {printable(origin[5:])}" if origin.startswith("root:")
             else f"snapshot {printable(origin)}")
    when = _age(report.collected_at) if report.collected_at else "at an unknown time"
    lines += wrap(f"facts: {where}, collected {when}", width, "  ", "    ")
    if defaults is not None:
        diff = [f"{k}={group(str(v))} (profile: {group(str(defaults.get(k)))})" for k, v in report.params.items()
                if defaults.get(k) != v]
        text = ", ".join(diff) if diff else f"the {printable(report.profile)} profile's defaults"
    else:
        text = ", ".join(f"{k}={group(str(v))}" for k, v in report.params.items())
    lines += wrap(f"parameters: {text}", width, "  ", "    ")
    lines += wrap(f"config: {printable(config)}" if config else "config: none (no ./tuneup.toml)", width, "  ", "    ")
    return lines


def _rule_cell(f) -> str:
    """The rule id, and what it judged when a rule runs per process or listener: one row each."""
    return printable(f.rule) + (f" ({printable(f.target)})" if f.target else "")


def _table(findings, width: int, color: bool) -> list[str]:
    rows = [[f.status.value.upper() + (" (host)" if f.host_only else ""), str(f.severity), _rule_cell(f),
             group(printable(render(f.actual))) if f.actual is not None else "-",
             group(printable(f.expected)) if f.expected else "-"]
            for f in findings]
    headers = ["STATUS", "SEVERITY", "RULE", "ACTUAL", "EXPECTED"]
    if width >= 110:
        headers.insert(3, "KEY")
        for f, row in zip(findings, rows):
            row.insert(3, printable(f.key))
    statuses = [f.status for f in findings]

    def style(ri: int, ci: int, text: str) -> str:
        return _status(statuses[ri], text, color) if ri >= 0 and ci == 0 else text

    return table(headers, rows, width, flex=(len(headers) - 1, len(headers) - 2, 3, 2), style=style)


def _count_line(counts: dict[str, int]) -> str:
    """Failures first: "3 fail, 5 unknown, 14 skip, 18 pass"."""
    order = sorted(counts, key=lambda k: _ORDER.get(Status(k), 9) if k in Status._value2member_map_ else 9)
    return ", ".join(f"{counts[k]} {k}" for k in order if counts[k] or k in ("pass", "fail"))


def next_steps(report: Report, fix_command: str | None, pid_named: bool) -> list[tuple[str, str]]:
    """(command, what it does) for the operator's next move."""
    fails = _by_severity(f for f in report.findings if f.status is Status.FAIL)
    steps: list[tuple[str, str]] = []
    fixable = [f for f in fails if f.how]
    if fixable and fix_command:
        steps.append((f"{fix_command} --out-dir ./tuneup-fix",
                      f"write the config for {len(fixable)} fixable failure(s), then review and run "
                      "./tuneup-fix/apply.sh (or `--apply` as root)"))
    if not pid_named and report.origin == "live" and any(f.target and "use --pid" in f.target
                                                         for f in report.findings):
        steps.append(("tuneup audit --pid PID", "check your server's own limits: the process rules "
                      "above looked at tuneup itself (or --process NAME, --service UNIT)"))
    unfixable = sorted({f.rule for f in fails if not f.how})
    if unfixable:
        steps.append((f"tuneup rules show {unfixable[0]}",
                      f"{len(unfixable)} failure(s) no config can fix ({', '.join(unfixable)}): "
                      "see what the rule needs"))
    elif fails:
        steps.append((f"tuneup rules show {fails[0].rule}", "why a rule exists, its threshold and references"))
    return steps


def format_report(report: Report, *, color: bool = False, width: int | None = None, show_all: bool = False,
                  failures_only: bool = False, quiet: bool = False, defaults: dict | None = None,
                  config: str | None = None, fix_command: str | None = None, pid_named: bool = False,
                  **_: Any) -> str:
    """The screen after `tuneup audit`: a short header, the problems (severity first) with a
    how-to-fix line each, what was left out, and the exact commands to run next."""
    report = escaped(report)
    width = width or terminal_width()
    findings = _by_severity(report.findings)
    failing = [f for f in findings if f.status in (Status.FAIL, Status.ERROR)]
    if quiet:
        out = []
        for f in failing:
            out += wrap(f"{f.status.value.upper()} {f.severity} {printable(f.rule)}: {printable(f.message)}",
                        width, "", "    ")
        return "\n".join(out) + "\n" if out else ""
    shown = failing if failures_only else [f for f in findings if f.status in PROBLEMS]
    rest = [f for f in findings if f not in shown]
    lines = _header(report, width, defaults, config) + [""]
    if shown:
        lines += _table(shown, width, color)
    else:
        lines.append("No failures." if failures_only else "No problems: every rule passed or does not apply here.")
    if rest:
        if show_all:
            lines += ["", "Not failing:"] + _table(rest, width, color)
        else:
            c = {s.value: sum(1 for f in rest if f.status is s) for s in Status}
            lines += [""] + wrap("Not listed: " + _count_line({k: v for k, v in c.items() if v})
                                 + " (--all lists them" + (", without --only-failures" if failures_only else "")
                                 + ")", width)
    detailed = [f for f in shown if f.status in (Status.FAIL, Status.ERROR, Status.WAIVED)]
    if detailed:
        lines += ["", "Details and how to fix:"]
        for f in detailed:
            lines += wrap(f"{printable(f.rule)} ({f.severity}, {f.status.value}): {printable(f.message)}",
                          width, "  ", "    ")
            if f.status is Status.FAIL:
                fix = f"fix: {f.how}" if f.how else "fix: no config tuneup writes fixes this (`tuneup fix` " \
                      "skips it); " + _first_sentence(f.rationale)
                lines += wrap(group(printable(fix)), width, "    ", "      ")
                if f.source and not f.source.startswith("/proc/sys/"):
                    lines += wrap(f"from: {printable(f.source)}", width, "    ", "      ")
    unknown = [f for f in shown if f.status is Status.UNKNOWN]
    if unknown:
        reasons: dict[str, list[str]] = {}
        for f in unknown:
            why = "not collected in this snapshot" if "not collected" in f.message else \
                "could not be read" if "could not be read" in f.message else "threshold needs a missing fact"
            reasons.setdefault(why, []).append(_rule_cell(f))
        lines += [""] + wrap(f"Unknown ({len(unknown)}): " + "; ".join(
            f"{', '.join(ids)}: {why}" for why, ids in reasons.items())
            + " (a live audit as root, or `tuneup collect` on the host, reads them)", width, "", "  ")
    if show_all and rest:
        skipped = [f for f in rest if f.status is Status.SKIP]
        if skipped:
            lines += ["", "Why rules were skipped:"]
            for f in skipped:
                lines += wrap(f"{printable(f.rule)}: {printable(f.message)}", width, "  ", "    ")
    lines += [""] + wrap("Summary: " + _count_line(report.summary()), width, "", "  ")
    steps = next_steps(report, fix_command, pid_named)
    if steps:
        lines += ["", "Next steps:"]
        for cmd, what in steps:
            lines += wrap(printable(cmd), width, "  ", "    ")
            lines += wrap(printable(what), width, "      ", "      ")
    return "\n".join(lines) + "\n"


def _first_sentence(text: str) -> str:
    text = (text or "").strip()
    cut = text.find(". ")
    return text if cut < 0 else text[: cut + 1]


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
