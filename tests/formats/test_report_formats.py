"""Every report format, parsed back by a real parser; escaping with hostile values."""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from fmt_samples import HOSTILE, file_report, report

from tuneup.formats import OutputFormat, module, render
from tuneup.model import Fleet, Status

SARIF_LEVELS = {"none", "note", "warning", "error"}


def fleet(*reports):
    return Fleet(profile="web", params=dict(reports[0].params), reports=tuple(reports))


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_every_format_renders_a_report_and_a_fleet(fmt):
    mod = module(fmt)
    assert callable(mod.format_report) and callable(mod.format_fleet)
    r = report()
    assert render(r, fmt).strip()
    assert render(fleet(r, report("web-2")), fmt).strip()


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_formats_accept_and_ignore_unknown_options(fmt):
    assert render(report(), fmt, color=False, anything=1)


# -- JUnit -----------------------------------------------------------------------------------
def test_junit_one_testcase_per_finding_failures_carry_message():
    r = report()
    root = ET.fromstring(render(r, OutputFormat.JUNIT))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    cases = suites[0].findall("testcase")
    assert len(cases) == len(r.findings)
    fails = [f for f in r.findings if f.status is Status.FAIL]
    failures = [c.find("failure") for c in cases if c.find("failure") is not None]
    assert len(failures) == len(fails) == int(suites[0].get("failures")) == int(root.get("failures"))
    assert {el.get("message") for el in failures} == {f.message for f in fails}
    som = next(c for c in cases if c.get("name").startswith("NET-SOMAXCONN"))
    assert "want >= " in som.find("failure").get("message")
    assert "why:" in som.find("failure").text
    skipped = sum(1 for c in cases if c.find("skipped") is not None)
    assert skipped == int(suites[0].get("skipped"))
    assert int(suites[0].get("tests")) == len(cases)
    for c in cases:     # what Jenkins and GitLab key on
        assert c.get("classname") and c.get("name")


def test_junit_fleet_one_suite_per_host_and_hostile_text_is_well_formed():
    bad = HOSTILE + "\x00\x07"
    f = fleet(report("web-1"), report(bad))
    root = ET.fromstring(render(f, OutputFormat.JUNIT))
    suites = root.findall("testsuite")
    assert len(suites) == 2
    assert suites[1].get("hostname").startswith('<script>alert("x")</script>')
    assert int(root.get("tests")) == sum(int(s.get("tests")) for s in suites)


def test_junit_waived_is_skipped_with_reason():
    import dataclasses
    r = report()
    r = dataclasses.replace(r, findings=tuple(
        dataclasses.replace(x, status=Status.WAIVED, message="waived until 2099-01-01: ok") if x.rule == "NET-SOMAXCONN"
        else x for x in r.findings))
    root = ET.fromstring(render(r, OutputFormat.JUNIT))
    case = next(c for c in root.iter("testcase") if c.get("name").startswith("NET-SOMAXCONN"))
    assert case.find("failure") is None
    assert case.find("skipped").get("message").startswith("waived: waived until 2099-01-01")


# -- SARIF -----------------------------------------------------------------------------------
def _check_sarif(doc: dict) -> None:
    """The SARIF 2.1.0 required properties (and the ones GitHub code scanning needs)."""
    assert doc["version"] == "2.1.0"
    assert doc["$schema"].endswith("sarif-2.1.0.json")
    assert isinstance(doc["runs"], list) and doc["runs"]
    for run in doc["runs"]:
        driver = run["tool"]["driver"]
        assert driver["name"] == "tuneup"
        ids = [r["id"] for r in driver["rules"]]
        assert len(ids) == len(set(ids))
        for rule in driver["rules"]:
            assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
            assert rule["help"]["text"] and rule["help"]["markdown"]
            assert rule["defaultConfiguration"]["level"] in SARIF_LEVELS
            assert isinstance(rule["properties"]["references"], list)
        for res in run["results"]:
            assert res["message"]["text"]
            assert driver["rules"][res["ruleIndex"]]["id"] == res["ruleId"]
            assert res["level"] in SARIF_LEVELS
            assert res["kind"] == "fail"
            for loc in res["locations"]:
                if "physicalLocation" in loc:
                    phys = loc["physicalLocation"]
                    assert phys["artifactLocation"]["uri"]
                    if "region" in phys:
                        assert isinstance(phys["region"]["startLine"], int) and phys["region"]["startLine"] >= 1


def test_sarif_report_required_fields_rules_with_help_and_references():
    r = report()
    doc = json.loads(render(r, OutputFormat.SARIF))
    _check_sarif(doc)
    run = doc["runs"][0]
    rules = {x["id"]: x for x in run["tool"]["driver"]["rules"]}
    assert set(rules) == {f.rule for f in r.findings}     # every rule that ran is declared
    som = rules["NET-SOMAXCONN"]
    assert som["helpUri"].startswith("https://") and " " not in som["helpUri"]
    assert som["properties"]["references"]
    failing = [f for f in r.findings if f.status in (Status.FAIL, Status.ERROR)]
    assert len(run["results"]) == len(failing)
    res = next(x for x in run["results"] if x["ruleId"] == "NET-SOMAXCONN")
    assert res["level"] == "warning"
    # a /proc value: the file, but no line
    phys = res["locations"][0]["physicalLocation"]
    assert phys["artifactLocation"]["uri"] == "file:///proc/sys/net/core/somaxconn"
    assert "region" not in phys


def test_sarif_locates_file_facts_at_file_and_line():
    doc = json.loads(render(file_report("root:tree"), OutputFormat.SARIF))
    _check_sarif(doc)
    res = {x["ruleId"]: x for x in doc["runs"][0]["results"]}
    assert set(res) == {"NET-A", "NET-B", "NET-C", "NET-E"}       # the pass is not a result
    a = res["NET-A"]["locations"][0]["physicalLocation"]
    assert a["artifactLocation"]["uri"] == "tree/etc/sysctl.d/99-x.conf"
    assert a["region"]["startLine"] == 3
    c = res["NET-C"]["locations"][0]["physicalLocation"]
    assert c["artifactLocation"]["uri"] == "file:///etc/sysctl.conf" and c["region"]["startLine"] == 12
    assert res["NET-C"]["level"] == "error" and res["NET-E"]["level"] == "note"
    assert "region" not in res["NET-B"]["locations"][0]["physicalLocation"]
    assert "physicalLocation" not in res["NET-E"]["locations"][0]           # getrlimit(2) is no file
    assert res["NET-E"]["locations"][0]["logicalLocations"][0]["name"] == "net.core.somaxconn"


def test_sarif_absolute_root_uses_a_uri_base():
    doc = json.loads(render(file_report("root:/srv/image"), OutputFormat.SARIF))
    run = doc["runs"][0]
    assert run["originalUriBaseIds"]["ROOT"]["uri"] == "file:///srv/image/"
    a = next(x for x in run["results"] if x["ruleId"] == "NET-A")["locations"][0]["physicalLocation"]
    assert a["artifactLocation"] == {"uri": "etc/sysctl.d/99-x.conf", "uriBaseId": "ROOT"}


def test_sarif_snapshot_findings_fall_back_to_the_snapshot_file():
    r = report(origin="snaps/web-1.json")
    doc = json.loads(render(r, OutputFormat.SARIF))
    res = next(x for x in doc["runs"][0]["results"] if x["ruleId"] == "PROC-NOFILE-SOFT")
    assert res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "snaps/web-1.json"


def test_sarif_waived_result_is_suppressed_with_reason():
    from tuneup.waivers import Waiver, apply
    import datetime as dt
    r = apply(report(), [Waiver("NET-SOMAXCONN", "redis sets its own", dt.date(2099, 1, 1))], dt.date(2025, 1, 1))
    doc = json.loads(render(r, OutputFormat.SARIF))
    _check_sarif(doc)
    res = next(x for x in doc["runs"][0]["results"] if x["ruleId"] == "NET-SOMAXCONN")
    assert res["suppressions"][0]["kind"] == "external"
    assert "redis sets its own" in res["suppressions"][0]["justification"]


def test_sarif_fleet_is_one_run_with_host_in_messages():
    doc = json.loads(render(fleet(report("a"), report("b")), OutputFormat.SARIF))
    _check_sarif(doc)
    assert len(doc["runs"]) == 1
    msgs = [x["message"]["text"] for x in doc["runs"][0]["results"]]
    assert any(m.startswith("a: ") for m in msgs) and any(m.startswith("b: ") for m in msgs)
    fps = [x["partialFingerprints"]["tuneupFinding/v1"] for x in doc["runs"][0]["results"]]
    assert len(fps) == len(set(fps))


# -- Prometheus ------------------------------------------------------------------------------
def _families(text: str) -> dict:
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a test dependency")
    return {f.name: f for f in parser.text_string_to_metric_families(text)}


def test_prometheus_parses_one_gauge_per_rule_with_labels_and_values():
    r = report()
    fams = _families(render(r, OutputFormat.PROMETHEUS))
    failed = fams["tuneup_rule_failed"]
    assert failed.type == "gauge"
    by_rule = {s.labels["rule"]: s for s in failed.samples}
    assert set(by_rule) == {f.rule for f in r.findings}
    som = by_rule["NET-SOMAXCONN"]
    assert som.labels == {"rule": "NET-SOMAXCONN", "key": "net.core.somaxconn", "severity": "warning", "status": "fail"}
    assert som.value == 1
    assert all(s.value == 0 for s in failed.samples if s.labels["status"] not in ("fail", "error"))
    observed = {s.labels["rule"]: s.value for s in fams["tuneup_rule_observed_value"].samples}
    assert observed["NET-SOMAXCONN"] == 128
    assert math.isinf(observed["PROC-NOFILE-HARD"])              # RLIM_INFINITY
    assert "NET-PORT-RANGE-PARITY" not in observed               # a tuple is not one number
    expected = {s.labels["rule"]: s.value for s in fams["tuneup_rule_expected_value"].samples}
    assert expected["NET-SOMAXCONN"] > 128
    counts = {s.labels["status"]: s.value for s in fams["tuneup_findings"].samples}
    assert counts["fail"] == sum(1 for f in r.findings if f.status is Status.FAIL)


def test_prometheus_fleet_has_host_label_and_hostile_values_round_trip():
    f = fleet(report("web-1"), report(HOSTILE))
    fams = _families(render(f, OutputFormat.PROMETHEUS))
    hosts = {s.labels["host"] for s in fams["tuneup_rule_failed"].samples}
    assert hosts == {"web-1", HOSTILE}


# -- HTML ------------------------------------------------------------------------------------
class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.hrefs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.hrefs += [v for k, v in attrs if k == "href"]

    def handle_data(self, data):
        self.text.append(data)


def test_html_escapes_a_hostile_hostname_and_message():
    import dataclasses
    r = report(HOSTILE)
    evil = dataclasses.replace(r.findings[0], message=HOSTILE, status=Status.FAIL,
                               refs=("javascript:alert(1)", 'https://ok.example/" onmouseover="x'))
    r = dataclasses.replace(r, findings=(evil, *r.findings[1:]))
    page = render(r, OutputFormat.HTML)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    p = _Tags()
    p.feed(page)
    assert "script" not in p.tags and "style" in p.tags            # self-contained: inline style only
    assert not any(h.startswith("javascript:") for h in p.hrefs)
    assert all(h.startswith(("https://", "http://", "#")) for h in p.hrefs)
    assert any(HOSTILE.split("\n")[0] in t for t in p.text)       # shown, as text
    assert 'onmouseover="' not in page                              # no attribute break-out
    assert "<link" not in page and "src=" not in page               # nothing fetched from elsewhere


def test_html_fleet_view_lists_hosts_and_failing_rules():
    page = render(fleet(report("web-1"), report("web-2", **{"net.core.somaxconn": 65535})), OutputFormat.HTML)
    assert "Fleet: 2 of 2 hosts failing" in page
    assert 'href="#host-2"' in page and "NET-SOMAXCONN" in page


# -- markdown --------------------------------------------------------------------------------
def test_markdown_is_a_pr_comment_with_escaped_cells():
    page = render(report(HOSTILE), OutputFormat.MARKDOWN)
    assert page.startswith("## tuneup audit: ❌")
    assert "<script" not in page and "&lt;script&gt;" in page
    assert "&#64;team" in page                                      # no @-mention from a hostname
    rows = [ln for ln in page.splitlines() if ln.startswith("| ") and "NET-" in ln]
    assert rows and all(ln.count(" | ") == rows[0].count(" | ") for ln in rows)
    assert "<details>" in page


def test_markdown_fleet_counts_hosts_per_rule():
    page = render(fleet(report("web-1"), report("web-2", **{"net.core.somaxconn": 65535})), OutputFormat.MARKDOWN)
    assert "2 of 2 hosts failing" in page
    assert "| NET-SOMAXCONN | warning | 1/2 | web\\-1 |" in page or "| NET-SOMAXCONN | warning | 1/2 | web-1 |" in page


# -- table and colour ------------------------------------------------------------------------
def test_table_colour_only_when_asked():
    assert "\x1b[" not in render(report(), OutputFormat.TABLE)
    assert "\x1b[31;1mFAIL" in render(report(), OutputFormat.TABLE, color=True)


def test_cli_colour_needs_a_terminal_and_no_NO_COLOR(monkeypatch):
    import sys
    from tuneup import cli

    class Tty:
        def isatty(self):
            return True
    monkeypatch.setattr(sys, "stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert cli._color(None) is True
    assert cli._color(__import__("pathlib").Path("out.txt")) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert cli._color(None) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(sys, "stdout", type("P", (), {"isatty": lambda self: False})())
    assert cli._color(None) is False


def test_json_fleet_schema():
    data = json.loads(render(fleet(report("a"), report("b", **{"net.core.somaxconn": 65535})), OutputFormat.JSON))
    assert data["schema"] == "tuneup.fleet/1"
    assert [h["host"]["hostname"] for h in data["hosts"]] == ["a", "b"]
    assert all(h["schema"] == "tuneup.report/1" for h in data["hosts"])
    rules = {x["rule"]: x for x in data["summary"]["rules"]}
    assert rules["NET-SOMAXCONN"]["hosts_failing"] == 1 and rules["NET-SOMAXCONN"]["hosts"] == ["a"]
    assert data["summary"]["hosts"] == 2 and data["summary"]["failing_hosts"] == 2


def test_heavy_imports_stay_out_of_plain_audit():
    import subprocess
    import sys
    code = ("import sys; from tuneup.cli import main\n"
            "import tuneup.formats.table, tuneup.formats.json_report, tuneup.run, tuneup.config\n"
            "bad = [m for m in ('jinja2', 'xml.etree.ElementTree', 'tuneup.formats.html', 'tuneup.formats.sarif') "
            "if m in sys.modules]\nprint(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert out.stdout.strip() == "[]"
