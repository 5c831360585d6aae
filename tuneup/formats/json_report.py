"""The JSON report contract: "schema": "tuneup.report/1". Add fields freely; never rename."""

from __future__ import annotations

import json
from typing import Any

from tuneup import __version__
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.model import Finding, Fleet, Report
from tuneup.snapshot import to_json_value

SCHEMA = "tuneup.report/1"
FLEET_SCHEMA = "tuneup.fleet/1"
HOST_FIELDS = ("hostname", "kernel", "distro", "netns", "cpus", "mem_total_bytes")


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "rule": f.rule,
        "key": f.key,
        "status": f.status.value,
        "severity": str(f.severity),
        "actual": to_json_value(f.actual),
        "expected": f.expected,
        "message": f.message,
        "title": f.title,
        "scope": f.scope.value,
        "host_only": f.host_only,
        "target": f.target,
        "source": f.source,
        "expected_value": to_json_value(f.expected_value),
        "rationale": f.rationale,
        "refs": list(f.refs),
        "waiver": f.waiver,
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tuneup": __version__,
        "host": {k: report.host.get(k) for k in HOST_FIELDS if k in report.host},
        "origin": report.origin,
        "collected_at": report.collected_at or None,
        "profile": report.profile,
        "params": report.params,
        "findings": [finding_dict(f) for f in report.findings],
        "summary": report.summary(),
    }


def format_report(report: Report, **_: Any) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"


def fleet_summary_dict(fleet) -> dict[str, Any]:
    """The fleet's "summary" member from a FleetSummary: rules most severe first, hosts by failures."""
    return {
        "hosts": len(fleet),
        "failing_hosts": fleet.failing_hosts,
        "failing": [r.label for r in fleet.hosts_by_failures() if r.bad],
        "findings": fleet.summary(),
        "rules": [{"rule": rid, "severity": str(sev), "title": title, "hosts_failing": len(hosts),
                   "hosts": hosts} for rid, sev, title, hosts in fleet.failing_rules()],
    }


class _FleetSink(Sink):
    """One JSON document: {"schema", ..., "hosts": [...], "summary": {...}}. The hosts come first
    and the summary last, so hosts are written as they are audited; each host is one line."""

    def chunk(self, row, report: Report, index: int) -> str:
        d = report_dict(report)
        d["collected_at"] = row.collected_at or None
        return ("[\n" if index == 0 else ",\n") + json.dumps(d, separators=(",", ":"))

    def head(self, fleet) -> str:
        top = {"schema": FLEET_SCHEMA, "tuneup": __version__, "profile": fleet.profile, "params": fleet.params}
        return json.dumps(top, indent=1)[:-2] + ',\n "hosts": '

    def tail(self, fleet) -> str:
        return ("\n]" if len(fleet) else "[]") + ',\n "summary": ' + json.dumps(fleet_summary_dict(fleet), indent=1) + "\n}\n"


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
