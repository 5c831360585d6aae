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
from tuneup.formats.safe import escaped
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
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

    report = escaped(report)
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


FLEET_TEMPLATE = "fleet.html.j2"
_SHOWN_HOSTS = 5          # host names per failing rule before the fold
_FOLDED_HOSTS = 200       # inside the fold; the rest are counted
_COLORS = {"critical": "#c81e1e", "warning": "#e3a008", "info": "#3f83f8"}


@functools.lru_cache(maxsize=1)
def _fleet_macros():
    import jinja2

    from tuneup.rulebook.loader import builtin_dir

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(builtin_dir("templates"))),
        autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
    )
    return env.get_template(FLEET_TEMPLATE).module


def heatmap(fleet, failing) -> dict[str, Any]:
    """Geometry of the rules x hosts heatmap: one row per failing rule, one column per host (most
    failures first, the order of the host table); a run of neighbouring hosts failing the same rule
    is one rectangle, so the drawing stays small and legible at thousands of hosts."""
    order = fleet.hosts_by_failures()
    n = max(len(order), 1)
    label_w, row_h = 190, 16
    cell = max(1.0, min(16.0, 960 / n))
    grid_w = round(cell * n, 1)
    rows = []
    for k, (rid, sev, _title, _hosts) in enumerate(failing):
        runs = []
        start = None
        for j, r in enumerate(order + [None]):
            hit = r is not None and rid in r.failing
            if hit and start is None:
                start = j
            elif not hit and start is not None:
                first, last = order[start].label, order[j - 1].label
                tip = f"{rid} fails on {first}" if j - start == 1 else f"{rid} fails on {j - start} hosts: {first} … {last}"
                runs.append((round(label_w + start * cell, 1), round((j - start) * cell, 1), tip))
                start = None
        rows.append({"rule": rid, "y": k * row_h, "color": _COLORS.get(str(sev), "#888"), "runs": runs})
    return {"rows": rows, "label_w": label_w, "row_h": row_h, "grid_w": grid_w,
            "width": round(label_w + grid_w + 4, 1), "height": len(rows) * row_h + 20}


class _FleetSink(Sink):
    """Head (summary, heatmap, rules with hosts folded past a few, hosts most failures first), one
    folded section per failing host (its failures only) written as it is audited, tail."""

    escape = True

    def chunk(self, row, report: Report, index: int) -> str:
        if not row.bad:
            return ""
        h = report.host
        findings = sorted((f for f in report.findings if f.status in (Status.FAIL, Status.ERROR)),
                          key=lambda f: (-f.severity, _ORDER[f.status], f.rule))
        return str(_fleet_macros().host({
            "anchor": f"host-{index + 1}", "label": row.label, "fail": row.counts["fail"],
            "error": row.counts["error"], "kernel": row.kernel, "distro": str(h.get("distro", "?")),
            "collected": row.collected_at or "unknown", "origin": report.origin,
            "findings": [{"status": f.status.value, "severity": str(f.severity), "rule": f.rule, "key": f.key,
                          "actual": render(f.actual) if f.actual is not None else "", "expected": f.expected,
                          "message": f.message} for f in findings],
        }))

    def head(self, fleet) -> str:
        failing = fleet.failing_rules()
        index = {id(r): i for i, r in enumerate(fleet.rows)}
        stamps = sorted(r.collected_at for r in fleet.rows if r.collected_at)
        summary = {
            "hosts": len(fleet), "failing_hosts": fleet.failing_hosts, "summary": fleet.summary(),
            "collected": (stamps[0], stamps[-1]) if stamps else None,
            "rules": [{"rule": rid, "severity": str(sev), "title": title, "count": len(hs),
                       "shown": hs[:_SHOWN_HOSTS], "folded": hs[_SHOWN_HOSTS:_SHOWN_HOSTS + _FOLDED_HOSTS],
                       "hidden": max(0, len(hs) - _SHOWN_HOSTS - _FOLDED_HOSTS)}
                      for rid, sev, title, hs in failing],
            "rows": [{"label": r.label, "anchor": f"host-{index[id(r)] + 1}" if r.bad else "",
                      "kernel": r.kernel, "collected": r.collected_at or "unknown", "fail": r.counts["fail"],
                      "error": r.counts["error"], "waived": r.counts["waived"], "pass_": r.counts["pass"],
                      "failing": r.failing} for r in fleet.hosts_by_failures()],
        }
        n = len(fleet)
        return str(_fleet_macros().head(f"tuneup fleet audit of {n} host{'s' if n != 1 else ''}", __version__,
                                        fleet.profile, fleet.params, summary, heatmap(fleet, failing)))

    def tail(self, fleet) -> str:
        return str(_fleet_macros().tail(__version__))


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
