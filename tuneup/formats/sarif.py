"""SARIF 2.1.0 for code-scanning UIs (GitHub, GitLab, Azure DevOps).

One run. driver.rules declares every rule that ran (so a fixed finding closes its alert), with
help text and references. Results are the findings that need attention: fail and error
(kind "fail", level from severity), and waived ones (with an external, accepted suppression
carrying the reason). Passing, skipped and unknown findings are counted in run.properties.

Locations: a finding's ``source`` "etc/sysctl.d/99-x.conf:3" becomes that file at line 3 (relative
to the audited tree, uriBaseId ROOT); absolute paths become file URIs (no line for /proc and /sys,
which are live values); findings without a file fall back to the snapshot that was audited.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from tuneup import __version__
from tuneup.engine import render
from tuneup.formats import split_ref
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.model import Finding, Fleet, Report, Severity, Status

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {Severity.CRITICAL: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+)(?::\d+)?$")
_PATHLIKE = re.compile(r"^[\w./+@-]+$")
_LIVE = ("/proc/", "/sys/")
REPORTED = (Status.FAIL, Status.ERROR, Status.WAIVED)


def split_source(source: str) -> tuple[str, int | None]:
    """"etc/sysctl.d/99-x.conf:3" -> ("etc/sysctl.d/99-x.conf", 3); no trailing :LINE -> None."""
    m = _LINE.match(source)
    if m and _PATHLIKE.match(m.group("path")):
        return m.group("path"), int(m.group("line"))
    return source, None


def _root_of(report: Report) -> str | None:
    return report.origin[5:] if report.origin.startswith("root:") else None


def _norm(p: PurePosixPath) -> str:
    parts: list[str] = []
    for part in p.parts:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def location(f: Finding, report: Report) -> dict[str, Any]:
    path, line = split_source(f.source or "")
    loc: dict[str, Any] = {}
    artifact: dict[str, Any] | None = None
    if path.startswith("/") and _PATHLIKE.match(path):
        artifact = {"uri": "file://" + quote(path)}
        if path.startswith(_LIVE):
            line = None
    elif path and _PATHLIKE.match(path) and not path.startswith("test:"):
        root = _root_of(report)
        if root and not root.startswith("/"):
            # a tree inside the checkout (`--root config/`): relative to the repository root
            artifact = {"uri": quote(_norm(PurePosixPath(root) / path)), "uriBaseId": "%SRCROOT%"}
        else:
            artifact = {"uri": quote(_norm(PurePosixPath(path))), "uriBaseId": "ROOT" if root else "%SRCROOT%"}
    else:
        line = None
        origin = report.origin
        if origin not in ("live", "test", "") and not origin.startswith("root:"):
            artifact = {"uri": quote(origin) if not origin.startswith("/") else "file://" + quote(origin)}
    if artifact:
        phys: dict[str, Any] = {"artifactLocation": artifact}
        if line:
            phys["region"] = {"startLine": line}
        loc["physicalLocation"] = phys
    loc["logicalLocations"] = [{"name": f.key, "fullyQualifiedName": f"{report.host.get('hostname', '?')}/{f.key}",
                                "kind": "variable"}]
    return loc


def _rule(f: Finding) -> dict[str, Any]:
    refs = list(f.refs)
    links = [split_ref(r) for r in refs]
    help_md = f"{f.rationale}\n\nReferences:\n" + "\n".join(
        f"- <{url}> {note}".rstrip() if url else f"- {note}" for url, note in links) if refs else f.rationale
    help_text = f"{f.rationale}\n\nReferences:\n" + "\n".join(f"- {r}" for r in refs) if refs else f.rationale
    out: dict[str, Any] = {
        "id": f.rule,
        "name": "".join(p.capitalize() for p in f.rule.split("-")),
        "shortDescription": {"text": f.title or f.rule},
        "fullDescription": {"text": f.rationale or f.title or f.rule},
        "help": {"text": help_text or f.rule, "markdown": help_md or f.rule},
        "defaultConfiguration": {"level": _LEVEL[f.severity]},
        "properties": {"tags": ["tuneup", f.scope.value], "severity": str(f.severity), "references": refs},
    }
    urls = [url for url, _ in links if url]
    if urls:
        out["helpUri"] = urls[0]
    return out


def _result(f: Finding, report: Report, index: int, host: str, fail_on: Severity | str | None = None) -> dict[str, Any]:
    from tuneup.formats.junit import counts_as_failure

    text = f.message if host == "" else f"{host}: {f.message}"
    res: dict[str, Any] = {
        "ruleId": f.rule,
        "ruleIndex": index,
        "kind": "fail",
        "level": _LEVEL[f.severity] if counts_as_failure(f.severity, fail_on) else "note",
        "message": {"text": text},
        "locations": [location(f, report)],
        "partialFingerprints": {
            "tuneupFinding/v1": hashlib.sha256(
                f"{report.host.get('hostname', '')}\0{f.rule}\0{f.key}\0{f.target or ''}".encode()).hexdigest()[:32],
        },
        "properties": {
            "status": f.status.value, "key": f.key, "hostname": report.host.get("hostname"),
            "actual": render(f.actual) if f.actual is not None else None, "expected": f.expected,
            "source": f.source, **({"target": f.target} if f.target else {}),
            **({"collected_at": report.collected_at} if report.collected_at else {}),
        },
    }
    if f.status is Status.WAIVED:
        res["suppressions"] = [{"kind": "external", "status": "accepted", "justification": f.waiver or "waived"}]
    return res


def _document(reports: list[tuple[str, Report]], fail_on: Severity | str | None = None) -> str:
    rules: dict[str, dict[str, Any]] = {}
    index: dict[str, int] = {}
    for _label, r in reports:
        for f in r.findings:
            if f.rule not in index:
                index[f.rule] = len(rules)
                rules[f.rule] = _rule(f)
    results = []
    counts = {s.value: 0 for s in Status}
    many = len(reports) > 1
    for label, r in reports:
        for f in r.findings:
            counts[f.status.value] += 1
            if f.status in REPORTED:
                results.append(_result(f, r, index[f.rule], label if many else "", fail_on))
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "tuneup", "version": __version__, "semanticVersion": __version__,
                            "rules": list(rules.values())}},
        "automationDetails": {"id": "tuneup/audit/"},
        "columnKind": "unicodeCodePoints",
        "results": results,
        "properties": {"profile": reports[0][1].profile if reports else None, "summary": counts,
                       "hosts": [label for label, _ in reports],
                       "collected_at": [r.collected_at or None for _l, r in reports],
                       "fail_on": "never" if fail_on == "never" else str(fail_on) if fail_on is not None else "info"},
    }
    roots = {_root_of(r) for _l, r in reports} - {None}
    if len(roots) == 1 and next(iter(roots)).startswith("/"):
        run["originalUriBaseIds"] = {"ROOT": {"uri": "file://" + quote(roots.pop().rstrip("/")) + "/"}}
    doc = {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2) + "\n"


def format_report(report: Report, *, fail_on: Severity | str | None = None, **_: Any) -> str:
    """Results below fail_on (a Severity, "never", or None: all count) get level "note"."""
    return _document([(str(report.host.get("hostname", "?")), report)], fail_on)


class _FleetSink(Sink):
    """One SARIF run for the fleet: results written host by host, the rules (known only at the
    end) in the head. Failures below --fail-on are reported at level "note"."""

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.rules: dict[str, dict[str, Any]] = {}
        self.index: dict[str, int] = {}
        self.roots: set[str] = set()
        self.wrote = False

    def chunk(self, row, report: Report, index: int) -> str:
        fail_on = self.opts.get("fail_on", _UNSET)
        root = _root_of(report)
        if root:
            self.roots.add(root)
        parts = []
        for f in report.findings:
            if f.rule not in self.index:
                self.index[f.rule] = len(self.rules)
                self.rules[f.rule] = _rule(f)
            if f.status in REPORTED:
                res = _result(f, report, self.index[f.rule], row.label)
                if fail_on is not _UNSET and (fail_on is None or f.severity < fail_on):
                    res["level"] = "note"
                if row.collected_at:
                    res["properties"]["collected_at"] = row.collected_at
                parts.append(json.dumps(res, separators=(",", ":")))
        if not parts:
            return ""
        text = (",\n" if self.wrote else "\n") + ",\n".join(parts)
        self.wrote = True
        return text

    def head(self, fleet) -> str:
        run: dict[str, Any] = {
            "tool": {"driver": {"name": "tuneup", "version": __version__, "semanticVersion": __version__,
                                "rules": list(self.rules.values())}},
            "automationDetails": {"id": "tuneup/audit/"},
            "columnKind": "unicodeCodePoints",
            "results": "\0results",
            "properties": {"profile": fleet.profile, "summary": fleet.summary(),
                           "hosts": [r.label for r in fleet.rows]},
        }
        if len(self.roots) == 1 and next(iter(self.roots)).startswith("/"):
            run["originalUriBaseIds"] = {"ROOT": {"uri": "file://" + quote(next(iter(self.roots)).rstrip("/")) + "/"}}
        doc = json.dumps({"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}, indent=2)
        self._after = doc.split('"\\u0000results"', 1)[1] + "\n"
        return doc.split('"\\u0000results"', 1)[0] + "["

    def tail(self, fleet) -> str:
        return "\n]" + self._after


_UNSET = object()


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
