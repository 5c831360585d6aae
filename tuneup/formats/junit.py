"""JUnit XML (the Jenkins/GitLab flavour): one testsuite per host, one testcase per finding.

fail -> <failure>, error -> <error>, skip/unknown/waived -> <skipped> with the reason; the
message attribute carries the finding's message, the body the rationale and references.
A fail or error below --fail-on does not fail the build: it is a <skipped> test case whose
message says so ("below --fail-on critical: ..."), so it stays visible.
"""

from __future__ import annotations

import re
from typing import Any

from tuneup.engine import render
from tuneup.formats.fleetsink import Sink
from tuneup.formats.fleetsink import render as render_fleet
from tuneup.model import Fleet, Report, Severity, Status

# XML 1.0 cannot carry most control characters, even escaped: drop them.
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _t(value: Any) -> str:
    return _XML_BAD.sub("\ufffd", str(value))


def counts_as_failure(severity: Severity, fail_on: Severity | str | None) -> bool:
    """Whether a fail/error of this severity fails the run: fail_on is a Severity, "never", or
    None (no threshold given: every failure counts)."""
    if fail_on is None:
        return True
    if fail_on == "never":
        return False
    return severity >= fail_on


def _suite(parent, report: Report, label: str, ET, fail_on: Severity | str | None = None) -> dict[str, int]:
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
    if report.collected_at:
        ET.SubElement(props, "property", name="collected_at", value=_t(report.collected_at))
        suite.set("timestamp", _t(report.collected_at))
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
        if f.status in (Status.FAIL, Status.ERROR) and not counts_as_failure(f.severity, fail_on):
            counts["skipped"] += 1
            below = "never" if fail_on == "never" else str(fail_on)
            el = ET.SubElement(case, "skipped", message=_t(f"{f.status.value} below --fail-on {below}: {f.message}"))
            el.text = _t(detail)
        elif f.status is Status.FAIL:
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


def _document(reports: list[tuple[str, Report]], fail_on: Severity | str | None = None) -> str:
    import xml.etree.ElementTree as ET

    root = ET.Element("testsuites", name="tuneup")
    total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for label, report in reports:
        for k, v in _suite(root, report, label, ET, fail_on).items():
            total[k] += v
    for k, v in total.items():
        if k != "skipped":     # the published JUnit XSD (xUnit's junit-10.xsd) allows skipped on testsuite only
            root.set(k, str(v))
    root.set("time", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def format_report(report: Report, *, fail_on: Severity | str | None = None, **_: Any) -> str:
    return _document([(str(report.host.get("hostname", "?")), report)], fail_on)


_UNSET = object()


def below_fail_on(report: Report, fail_on: Any) -> Report:
    """Failures below --fail-on (all of them for `never`) become skipped cases that keep their
    message: visible, but not failures."""
    if fail_on is _UNSET:
        return report
    from dataclasses import replace

    limit = f"--fail-on {fail_on}" if fail_on is not None else "--fail-on never"
    out = []
    for f in report.findings:
        if f.status in (Status.FAIL, Status.ERROR) and (fail_on is None or f.severity < fail_on):
            f = replace(f, status=Status.SKIP, message=f"{f.status.value} ({f.severity}, below {limit}): {f.message}")
        out.append(f)
    return replace(report, findings=tuple(out))


class _FleetSink(Sink):
    """<testsuites> with one <testsuite> per host, written as each host is audited."""

    def __init__(self, **opts: Any) -> None:
        super().__init__(**opts)
        self.total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def chunk(self, row, report: Report, index: int) -> str:
        import xml.etree.ElementTree as ET

        holder = ET.Element("testsuites")
        counts = _suite(holder, below_fail_on(report, self.opts.get("fail_on", _UNSET)), row.label, ET)
        for k, v in counts.items():
            self.total[k] += v
        suite = holder[0]
        if row.collected_at:
            ET.SubElement(suite.find("properties"), "property", name="collected_at", value=_t(row.collected_at))
        ET.indent(suite, "  ", level=1)
        return "  " + ET.tostring(suite, encoding="unicode").rstrip() + "\n"

    def head(self, fleet) -> str:
        from xml.sax.saxutils import quoteattr

        # the published JUnit XSD (xUnit's junit-10.xsd) allows skipped on testsuite only
        attrs = " ".join(f'{k}="{v}"' for k, v in self.total.items() if k != "skipped")
        return (f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites name={quoteattr("tuneup")} {attrs} '
                f'time="0">\n')

    def tail(self, fleet) -> str:
        return "</testsuites>\n"


def fleet_sink(**opts: Any) -> Sink:
    return _FleetSink(**opts)


def format_fleet(fleet: Fleet, **opts: Any) -> str:
    return render_fleet(fleet_sink(**opts), fleet)
