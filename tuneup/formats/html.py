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


def format_report(report: Report, **_: Any) -> str:
    report = escaped(report)
    label = str(report.host.get("hostname", "?"))
    return _template().render(
        title=f"tuneup audit of {label}", version=__version__, profile=report.profile,
        params=report.params, fleet=None, hosts=[_host(report, label, 1)])


def format_fleet(fleet: Fleet, **_: Any) -> str:
    fleet = escaped(fleet)
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
