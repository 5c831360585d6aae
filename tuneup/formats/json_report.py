"""The JSON report contract: "schema": "tuneup.report/1". Add fields freely; never rename."""

from __future__ import annotations

import json
from typing import Any

from tuneup import __version__
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


def fleet_dict(fleet: Fleet) -> dict[str, Any]:
    n = len(fleet.reports)
    failing_hosts = [label for label, r in zip(fleet.labels(), fleet.reports)
                     if r.summary()["fail"] + r.summary()["error"]]
    return {
        "schema": FLEET_SCHEMA,
        "tuneup": __version__,
        "profile": fleet.profile,
        "params": fleet.params,
        "hosts": [report_dict(r) for r in fleet.reports],
        "summary": {
            "hosts": n,
            "failing_hosts": len(failing_hosts),
            "failing": failing_hosts,
            "findings": fleet.summary(),
            "rules": [{"rule": rid, "severity": str(sev), "title": title, "hosts_failing": len(hosts),
                       "hosts": hosts} for rid, sev, title, hosts in fleet.failing_rules()],
        },
    }


def format_fleet(fleet: Fleet, **_: Any) -> str:
    return json.dumps(fleet_dict(fleet), indent=1) + "\n"
