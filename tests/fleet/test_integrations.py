"""The node_exporter textfile unit, run for real (parsed with prometheus_client). The Ansible
playbook is run, install step included, in tests/deploy/test_ansible.py."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fleet_samples import REPO

TEXTFILE = REPO / "examples" / "node_exporter"


def _tuneup() -> str:
    """The tuneup command as a shell word list: the installed script beside this python, or -m."""
    script = Path(sys.executable).parent / "tuneup"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m tuneup"


def _exec_start() -> list[str]:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(TEXTFILE / "tuneup-textfile.service")
    return shlex.split(unit["Service"]["ExecStart"])


def test_textfile_unit_writes_parseable_metrics_every_run(tmp_path):
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a test dependency")
    argv = _exec_start()
    assert argv[0].endswith("/tuneup") and "--force" in argv and argv[argv.index("--format") + 1] == "prometheus"
    assert argv[argv.index("--fail-on") + 1] == "never"
    prom = tmp_path / "tuneup.prom"
    argv[argv.index("-o") + 1] = str(prom)
    cmd = shlex.split(_tuneup()) + argv[1:]
    for _ in range(2):                          # the timer rewrites the same file
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tuneup.prom"]      # no temp file left behind
    fams = {f.name: f for f in parser.text_string_to_metric_families(prom.read_text())}
    assert {"tuneup_rule_failed", "tuneup_findings", "tuneup_audit_info"} <= set(fams)
    for s in fams["tuneup_rule_failed"].samples:
        assert {"rule", "key", "severity", "status"} <= set(s.labels) and s.value in (0.0, 1.0)


def test_alert_rules_use_metrics_tuneup_writes():
    yaml = pytest.importorskip("yaml", reason="PyYAML (comes with ansible-core) parses the alert rules")
    from fleet_samples import snap

    from tuneup import run
    from tuneup.formats import OutputFormat, render

    doc = yaml.safe_load((TEXTFILE / "tuneup-alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert rules and all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules)
    text = render(run.plan("web", {}).audit(snap("x", net__core__somaxconn=128)), OutputFormat.PROMETHEUS)
    names = {ln.split()[2] for ln in text.splitlines() if ln.startswith("# TYPE")}
    used = {n for r in rules for n in names if n in r["expr"]}
    assert {"tuneup_rule_failed", "tuneup_rule_observed_value", "tuneup_rule_expected_value"} <= used
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning", "info")


def test_timer_runs_the_service():
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(TEXTFILE / "tuneup-textfile.timer")
    assert timer["Timer"]["OnUnitActiveSec"] and timer["Install"]["WantedBy"] == "timers.target"
