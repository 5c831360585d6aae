"""One self-contained HTML page from templates/report.html.j2 (jinja2, autoescape on).

The template receives plain strings and numbers only; escaping is jinja2's job, and no value is
ever marked safe. Reference links are emitted only for http(s) URLs (never javascript: or data:).
"""

from __future__ import annotations

import functools
from typing import Any

from tuneup import __version__
from tuneup.engine import render
from tuneup.formats import split_ref
from tuneup.model import Fleet, Report, Status

TEMPLATE = "report.html.j2"
_ORDER = {Status.FAIL: 0, Status.ERROR: 1, Status.UNKNOWN: 2, Status.WAIVED: 3, Status.SKIP: 4, Status.PASS: 5}


@functools.lru_cache(maxsize=1)
def _template():
    import jinja2

    from tuneup.rulebook.loader import builtin_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(builtin_dir("templates"))),
        autoescape=True,                # every {{ }} is escaped, whatever the file name
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template(TEMPLATE)


def _host(report: Report, label: str, index: int) -> dict[str, Any]:
    h = report.host
    findings = sorted(report.findings, key=lambda f: (_ORDER[f.status], -f.severity, f.rule))
    return {
        "label": label,
        "anchor": f"host-{index}",
        "kernel": str(h.get("kernel", "?")),
        "distro": str(h.get("distro", "?")),
        "netns": str(h.get("netns", "?")),
        "origin": report.origin,
        "summary": report.summary(),
        "findings": [{
            "status": f.status.value, "severity": str(f.severity), "rule": f.rule, "title": f.title,
            "key": f.key, "source": f.source, "actual": render(f.actual) if f.actual is not None else "",
            "expected": f.expected, "message": f.message, "rationale": f.rationale,
            "refs": [{"text": r, "url": split_ref(r)[0]} for r in f.refs],
        } for f in findings],
    }


HOST_TEMPLATE = "host.html.j2"
BAR_W, LABEL_W, TEXT_W, ROW_H = 480, 110, 190, 28


@functools.lru_cache(maxsize=1)
def _host_template():
    return _template().environment.get_template(HOST_TEMPLATE)


def capacity_bars(cap: Any) -> dict[str, Any] | None:
    """The capacity model as bar geometry: one bar per inbound limit, length the ceiling on a log
    scale (ceilings span 10^3 to 10^18), red when below the target, and the target as a line."""
    import math

    from tuneup.model import RLIM_INFINITY

    if cap is None or not cap.limits:
        return None
    goal = int(cap.params.get("connections", 0) or 0)
    finite = [lim.ceiling for lim in cap.limits if lim.ceiling < RLIM_INFINITY]
    top = max(finite + [goal, 10]) * 4
    scale = math.log10(top)

    def x(v: int) -> int:
        if v >= RLIM_INFINITY:
            return BAR_W
        return max(2, round(BAR_W * math.log10(max(v, 1)) / scale))

    bars = []
    for i, lim in enumerate(cap.limits):
        bars.append({"name": lim.name, "y": 6 + i * ROW_H, "w": x(lim.ceiling), "binding": i == 0,
                     "short": bool(goal) and lim.ceiling < goal, "detail": lim.detail,
                     "ceiling_text": "unlimited" if lim.ceiling >= RLIM_INFINITY else f"{lim.ceiling:,}"})
    b = cap.binding
    summary = f"{b.name} binds first at {b.ceiling:,} connections"
    if goal:
        summary += (f": {goal - b.ceiling:,} short of the target of {goal:,}. To raise it: {b.hint}."
                    if b.ceiling < goal else f"; the target of {goal:,} fits.")
    return {"bars": bars, "width": LABEL_W + BAR_W + TEXT_W, "height": 6 + len(bars) * ROW_H + 24,
            "label_w": LABEL_W, "target": goal, "target_text": f"{goal:,}", "target_x": LABEL_W + x(goal) if goal else 0,
            "summary": summary, "skipped": [{"name": sk.name, "reason": sk.reason} for sk in cap.skipped]}


def format_report(report: Report, *, capacity: Any = None, defaults: dict | None = None, config: str | None = None,
                  fix_command: str | None = None, pid_named: bool = False, **_: Any) -> str:
    """One host: verdict, when and where the facts come from, the capacity model drawn as bars of
    ceiling per limit against the target, the problems with a how-to-fix column, next steps."""
    from tuneup.formats.table import PROBLEMS, _by_severity, _count_line, next_steps

    label = str(report.host.get("hostname", "?"))
    host = _host(report, label, 1)
    findings = _by_severity(report.findings)
    rows = {id(f): row for f, row in zip(sorted(report.findings, key=lambda f: (_ORDER[f.status], -f.severity,
                                                                               f.rule)), host["findings"])}
    for f in report.findings:
        rows[id(f)]["how"] = (f.how or "No config tuneup writes fixes this: see the rule's rationale."
                              if f.status is Status.FAIL else "")
    problems = [rows[id(f)] for f in findings if f.status in PROBLEMS]
    others = [rows[id(f)] for f in findings if f.status not in PROBLEMS]
    failing = sum(1 for f in report.findings if f.status in (Status.FAIL, Status.ERROR))
    if defaults is not None:
        diff = [f"{k}={v:,} (profile: {defaults.get(k)})" if isinstance(v, int) else f"{k}={v}"
                for k, v in report.params.items() if defaults.get(k) != v]
        params_text = ", ".join(diff) if diff else "the profile's default parameters"
    else:
        params_text = ", ".join(f"{k}={v}" for k, v in report.params.items())
    origin = report.origin
    facts_from = ("the live host" if origin == "live" else f"tree {origin[5:]}" if origin.startswith("root:")
                  else f"snapshot {origin}")
    from tuneup.formats.table import _age

    return _host_template().render(
        title=f"tuneup audit of {label}", version=__version__, profile=report.profile, params_text=params_text,
        host=host, failing=failing, verdict=f"{failing} failing" if failing else "passing",
        facts_from=facts_from, collected_at=report.collected_at,
        collected_text=_age(report.collected_at) if report.collected_at else "at an unknown time",
        config=config or "none", counts=_count_line(report.summary()), capacity=capacity_bars(capacity),
        problems=problems, others=others, steps=next_steps(report, fix_command, pid_named))


def format_fleet(fleet: Fleet, **_: Any) -> str:
    labels = fleet.labels()
    hosts = [_host(r, label, i) for i, (label, r) in enumerate(zip(labels, fleet.reports), 1)]
    summary = {
        "failing_hosts": sum(1 for h in hosts if h["summary"]["fail"] + h["summary"]["error"]),
        "rules": [{"rule": rid, "severity": str(sev), "count": len(hs), "hosts": hs}
                  for rid, sev, _t, hs in fleet.failing_rules()],
    }
    return _template().render(
        title=f"tuneup fleet audit of {len(hosts)} hosts", version=__version__, profile=fleet.profile,
        params=fleet.params, fleet=summary, hosts=hosts)
