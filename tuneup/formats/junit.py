"""JUnit XML (the Jenkins/GitLab flavour): one testsuite per host, one testcase per finding.

fail -> <failure>, error -> <error>, skip/unknown/waived -> <skipped> with the reason; the
message attribute carries the finding's message, the body the rationale and references.
"""

from __future__ import annotations

import re
from typing import Any

from tuneup.engine import render
from tuneup.model import Fleet, Report, Status

# XML 1.0 cannot carry most control characters, even escaped: drop them.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _t(value: Any) -> str:
    return _XML_BAD.sub("\ufffd", str(value))


def _suite(parent, report: Report, label: str, ET) -> dict[str, int]:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    host = _t(label)
    suite = ET.SubElement(parent, "testsuite", name=_t(f"tuneup {report.profile} on {label}"), hostname=host,
                          time="0")
    props = ET.SubElement(suite, "properties")
    for k in ("hostname", "kernel", "distro", "netns"):
        if k in report.host:
            ET.SubElement(props, "property", name=k, value=_t(report.host[k]))
    ET.SubElement(props, "property", name="profile", value=_t(report.profile))
    ET.SubElement(props, "property", name="origin", value=_t(report.origin))
    classname = "tuneup." + re.sub(r"[^A-Za-z0-9_-]+", "_", label)
    for f in report.findings:
        counts["tests"] += 1
        name = f"{f.rule} {f.key}" + (f" [{f.target}]" if f.target else "")
        case = ET.SubElement(suite, "testcase", classname=_t(classname), name=_t(name), time="0")
        detail = "\n".join(x for x in (
            f"severity: {f.severity}",
            f"actual: {render(f.actual)}" if f.actual is not None else "",
            f"expected: {f.expected}" if f.expected else "",
            f"source: {f.source}" if f.source else "",
            f"why: {f.rationale}" if f.rationale else "",
            *(f"ref: {r}" for r in f.refs),
        ) if x)
        if f.status is Status.FAIL:
            counts["failures"] += 1
            el = ET.SubElement(case, "failure", message=_t(f.message), type=str(f.severity))
            el.text = _t(detail)
        elif f.status is Status.ERROR:
            counts["errors"] += 1
            el = ET.SubElement(case, "error", message=_t(f.message), type="rule-error")
            el.text = _t(detail)
        elif f.status in (Status.SKIP, Status.UNKNOWN, Status.WAIVED):
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=_t(f"{f.status.value}: {f.message}"))
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _t(f.message)
    for k, v in counts.items():
        suite.set(k, str(v))
    return counts


def _document(reports: list[tuple[str, Report]]) -> str:
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="tuneup")
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for label, report in reports:
        for k, v in _suite(root, report, label, ET).items():
            total[k] += v
    for k, v in total.items():
        if k != "skipped":     # the published JUnit XSD (xUnit's junit-10.xsd) allows skipped on testsuite only
            root.set(k, str(v))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def format_report(report: Report, **_: Any) -> str:
    return _document([(str(report.host.get("hostname", "?")), report)])


def format_fleet(fleet: Fleet, **_: Any) -> str:
    return _document(list(zip(fleet.labels(), fleet.reports)))
