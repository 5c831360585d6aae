"""The shipped integrations, run for real: the Ansible playbook (ansible-core, localhost,
connection local) and the node_exporter textfile unit (parsed with prometheus_client)."""

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

PLAYBOOK = REPO / "examples" / "ansible" / "site.yml"
TEXTFILE = REPO / "examples" / "node_exporter"


def _tuneup() -> str:
    """The tuneup command as a shell word list: the installed script beside this python, or -m."""
    script = Path(sys.executable).parent / "tuneup"
    if script.exists():
        return shlex.quote(str(script))
    return f"{shlex.quote(sys.executable)} -m tuneup"


def _ansible_playbook() -> str | None:
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.exists():
        return str(beside)
    return shutil.which("ansible-playbook")


def test_ansible_playbook_collects_on_every_host_and_audits_the_fleet(tmp_path):
    playbook = _ansible_playbook()
    if playbook is None:
        pytest.skip("ansible-playbook is not installed (pip install ansible-core to run this test)")
    inventory = tmp_path / "inventory.ini"
    py = sys.executable
    inventory.write_text(
        "[servers]\n"
        f"web-1 ansible_connection=local ansible_python_interpreter={py}\n"
        f"web-2 ansible_connection=local ansible_python_interpreter={py}\n"
        f"\n[all:vars]\nansible_python_interpreter={py}\n")
    home = tmp_path / "ansible-home"
    env = {
        **os.environ,
        "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"), "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": py, "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_COLLECTIONS_PATH": str(home / "collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),      # ignore any ansible.cfg around
    }
    extra = {
        "tuneup_install": False,                         # installing from an index is not under test
        "tuneup_bin": _tuneup(), "tuneup_controller_bin": _tuneup(),
        "tuneup_remote_dir": str(tmp_path / "remote"),
        "tuneup_fetch_dir": str(tmp_path / "snapshots"),
        "tuneup_report_dir": str(tmp_path / "reports"),
        "tuneup_fail_on": "never",
        "ansible_python_interpreter": py,
    }
    out = subprocess.run([playbook, "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(extra)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=110)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    snaps = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert snaps == ["web-1.json", "web-2.json"]
    for name in snaps:
        assert json.loads((tmp_path / "snapshots" / name).read_text())["schema"] == "tuneup.snapshot/1"
    fleet = json.loads((tmp_path / "reports" / "fleet.json").read_text())
    assert fleet["schema"] == "tuneup.fleet/1" and fleet["summary"]["hosts"] == 2
    assert (tmp_path / "reports" / "fleet.md").read_text().startswith("## tuneup fleet audit")
    assert "<!DOCTYPE html>" in (tmp_path / "reports" / "fleet.html").read_text()
    assert "tuneup fleet audit of 2 hosts" in out.stdout           # the summary the play shows
    assert "failed=0" in out.stdout


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
