"""The JSON report contract: "schema": "tuneup.report/1". Add fields freely; never rename."""

from __future__ import annotations

import json
from typing import Any

from tuneup import __version__
from tuneup.model import Finding, Report
from tuneup.snapshot import to_json_value

SCHEMA = "tuneup.report/1"
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
    }


def report_dict(report: Report) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tuneup": __version__,
        "host": {k: report.host.get(k) for k in HOST_FIELDS if k in report.host},
        "origin": report.origin,
        "profile": report.profile,
        "params": report.params,
        "findings": [finding_dict(f) for f in report.findings],
        "summary": report.summary(),
    }


def format_report(report: Report, **_: Any) -> str:
    return json.dumps(report_dict(report), indent=2) + "\n"
