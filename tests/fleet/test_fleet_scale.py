"""Fleets at scale: reports that fit where they are read (markdown under GitHub's comment limit,
bounded HTML with a heatmap), streaming equal to the in-memory path, the process pool equal to one
process, --fail-on in JUnit and SARIF fleets, and bounded inputs (one line, exit 2)."""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET

import pytest
from fleet_samples import cli, main, snap, write
from fleet_scale_samples import make_fleet

from tuneup import run
from tuneup.formats import OutputFormat, module
from tuneup.inputs import MAX_RECORD_BYTES, MAX_RULE_FILE_BYTES, MAX_SNAPSHOT_BYTES
from tuneup.model import Severity

GITHUB_COMMENT_LIMIT = 65_536          # characters in an issue or pull-request comment body
GITHUB_JOB_SUMMARY_LIMIT = 1024 * 1024  # bytes of $GITHUB_STEP_SUMMARY per step


@pytest.fixture(scope="module")
def fleets(tmp_path_factory):
    base = tmp_path_factory.mktemp("fleets")
    return {n: make_fleet(base / f"f{n}", n) for n in (10, 200, 1000)}


@pytest.mark.parametrize("n", [10, 200, 1000])
def test_markdown_fleet_fits_a_pull_request_comment(fleets, n):
    res = cli(["audit", "--snapshot", str(fleets[n]), "-f", "markdown", "--fail-on", "never"])
    md = res.stdout
    assert res.exit_code == 0
    assert len(md) < GITHUB_COMMENT_LIMIT and len(md.encode()) < GITHUB_JOB_SUMMARY_LIMIT
    assert md.startswith(f"## tuneup fleet audit: ") and f" of {n} hosts failing" in md.splitlines()[0]
    # failing rules first, most severe first: no critical row below a warning or info row
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| ") and "/" + str(n) + " |" in line]
    assert rows
    order = [["info", "warning", "critical"].index(r[1]) for r in rows]
    assert order == sorted(order, reverse=True)
    # hosts summarized with counts; the failing hosts listed most failures first
    assert "passing" in md and "Failing hosts" in md
    host_rows = [line for line in md.splitlines() if line.startswith("| node-")]
    fails = [int(line.split(" | ")[3]) + int(line.split(" | ")[4]) for line in host_rows]
    assert fails == sorted(fails, reverse=True)
    if n >= 200:
        assert "<details>" in md
    assert "2026-01-" in md            # collected_at shown


def test_html_fleet_is_bounded_and_has_a_heatmap(fleets):
    res = cli(["audit", "--snapshot", str(fleets[1000]), "-f", "html", "--fail-on", "never"])
    page = res.stdout
    assert res.exit_code == 0
    assert len(page.encode()) < 3_000_000, len(page)
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page and 'id="tuneup-heatmap"' in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    # hosts per rule folded past a few: no rule cell lists 1000 names before its <details>
    assert "more</summary>" in page
    # the rules table: a critical rule above warnings
    table = page[page.index("Failing rules, most severe first"):page.index("Hosts, most failures first")]
    sevs = [s for s in ("critical", "warning", "info") for _ in range(table.count(f'<td class="{s}">'))]
    firsts = [table.index(f'<td class="{s}">') for s in ("critical", "warning", "info") if f'<td class="{s}">' in table]
    assert firsts == sorted(firsts) and sevs
    assert "Collected" in page and "2026-01-" in page


def test_stream_equals_in_memory_and_pool_equals_one_process(fleets):
    paths = sorted(fleets[200].glob("*.json"))
    p = run.plan(None, {})
    outs = {}
    for jobs in (1, 2):
        sink = module(OutputFormat.JSON).fleet_sink()
        summary = run.audit_fleet_stream(p, paths, sink, Severity.WARNING, False, None, jobs)
        buf = io.StringIO()
        sink.finish(summary, buf)
        outs[jobs] = buf.getvalue()
    assert outs[1] == outs[2]
    doc = json.loads(outs[1])            # one valid JSON document
    assert doc["schema"] == "tuneup.fleet/1" and len(doc["hosts"]) == 200
    assert doc["summary"]["hosts"] == 200 and all(h["collected_at"].startswith("2026-01-") for h in doc["hosts"])
    # the in-memory path (format_fleet over a Fleet of reports) gives the same summary
    from tuneup import snapshot as snapmod
    from tuneup.model import Fleet

    fleet = Fleet(p.profile.name, dict(p.profile.params), tuple(p.audit(snapmod.load(str(x))) for x in paths))
    mem = json.loads(module(OutputFormat.JSON).format_fleet(fleet))
    assert mem["summary"]["rules"] == doc["summary"]["rules"]


def test_junit_and_sarif_fleets_respect_fail_on(tmp_path):
    d = tmp_path / "f"
    write(d / "a.json", snap("a", net__core__somaxconn=128))          # a warning rule fails
    write(d / "b.json", snap("b", **{"fs.file-max": 1000}))            # a critical rule fails
    res = cli(["audit", "--snapshot", str(d), "-f", "junit", "--fail-on", "critical"])
    assert res.exit_code == 1
    root = ET.fromstring(res.stdout)
    failures = [c.get("name") for c in root.iter("testcase") if c.find("failure") is not None]
    assert failures and all(n.startswith("FD-FILE-MAX") for n in failures)
    skipped = [c.find("skipped").get("message") for c in root.iter("testcase")
               if c.find("skipped") is not None and "NET-SOMAXCONN" in c.get("name")]
    assert any("below --fail-on critical" in m for m in skipped)
    assert int(root.get("failures")) == len(failures)
    res = cli(["audit", "--snapshot", str(d), "-f", "sarif", "--fail-on", "critical"])
    results = json.loads(res.stdout)["runs"][0]["results"]
    levels = {r["ruleId"]: r["level"] for r in results}
    assert levels["FD-FILE-MAX"] == "error" and levels["NET-SOMAXCONN"] == "note"
    res = cli(["audit", "--snapshot", str(d), "-f", "junit", "--fail-on", "never"])
    assert res.exit_code == 0 and ET.fromstring(res.stdout).get("failures") == "0"


def _big(path, size):
    with open(path, "wb") as fh:       # sparse: the size is what tuneup checks, not the content
        fh.truncate(size)
    return path


def test_inputs_over_their_limit_are_refused_before_loading(tmp_path, capsys):
    big = _big(tmp_path / "huge.json", MAX_SNAPSHOT_BYTES + 1)
    code, out, err = main(["audit", "--snapshot", str(big)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(big) in err and "too large" in err and "16.0 MiB" in err
    rules = tmp_path / "rules"
    rules.mkdir()
    _big(rules / "many.toml", MAX_RULE_FILE_BYTES + 1)
    code, out, err = main(["rules", "list", "--rules-dir", str(rules)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "many.toml" in err and "too large" in err
    waivers = _big(tmp_path / "w.toml", MAX_RECORD_BYTES + 1)
    ok = write(tmp_path / "ok.json", snap("ok"))
    code, out, err = main(["audit", "--snapshot", str(ok), "--waivers", str(waivers)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "w.toml" in err and "too large" in err


def test_a_pipe_larger_than_the_limit_is_refused(tmp_path, capsys):
    """A FIFO has no size: the limit holds while reading."""
    fifo = tmp_path / "snap.json"
    os.mkfifo(fifo)
    pid = os.fork()
    if pid == 0:                       # the writer: more than the limit, then gone
        try:
            with open(fifo, "wb") as fh:
                chunk = b" " * (1 << 20)
                for _ in range(MAX_SNAPSHOT_BYTES // len(chunk) + 2):
                    fh.write(chunk)
        finally:
            os._exit(0)
    try:
        code, out, err = main(["audit", "--snapshot", str(fifo)], capsys)
    finally:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    assert code == 2 and "too large" in err and len(err.strip().splitlines()) == 1
