"""The alert rules in examples/node_exporter/tuneup-alerts.yml, judged by the real Prometheus tools
(Debian's prometheus package): `promtool check rules`, then `promtool test rules` on the series of a
real fleet textfile (tuneup's own output for two hosts, with the `host` label and node_exporter's
`instance`/`job`): the alerts fire exactly for the failing findings tuneup reports, keep the host,
and the value-below-threshold alert leaves `==` rules (syncookies 0) alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import STOCK

from tuneup import snapshot as snapmod
from tuneup.model import Fact, Snapshot

from .conftest import REPO

ALERTS = REPO / "examples" / "node_exporter" / "tuneup-alerts.yml"
INSTANCE = {"instance": "fleet-controller:9100", "job": "node"}
GOOD = {**STOCK, "net.core.somaxconn": 65535, "net.ipv4.tcp_max_syn_backlog": 65535,
        "net.core.netdev_max_backlog": 16384, "rlimit.nofile.soft": 1048576, "rlimit.nofile.hard": 1048576,
        "net.netfilter.nf_conntrack_max": 1048576}


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool is not installed (Debian package prometheus, listed in .ci/apt-packages)")
    return exe


def _snap(hostname: str, values: dict) -> Snapshot:
    facts = {k: Fact(k, v, "/proc/sys/" + k.replace(".", "/")) for k, v in {**GOOD, **values}.items()}
    host = {"hostname": hostname, "kernel": "6.1.0-13-amd64", "kernel_version": [6, 1, 0], "arch": "x86_64",
            "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096, "netns": "initial"}
    return Snapshot(host=host, facts=facts, collected_at="2025-01-01T00:00:00+00:00", origin="test")


def _tuneup(*args: str, cwd: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "tuneup", *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_alert_rules_pass_promtool_check():
    out = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 4 rules found" in out.stdout


def _labels(d: dict) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(d.items())) + "}"


def test_alerts_fire_for_failing_findings_of_a_fleet_textfile_and_only_those(tmp_path):
    promtool = _promtool()
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a test dependency")
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    # web-1: somaxconn far below (warning, >=), conntrack_max below (critical, >=), syncookies 0 (== 1);
    # web-2: what the profile wants.
    (snaps / "web-1.json").write_text(snapmod.dumps(_snap("web-1", {
        "net.core.somaxconn": 128, "net.netfilter.nf_conntrack_max": 100000, "net.ipv4.tcp_syncookies": 0})))
    (snaps / "web-2.json").write_text(snapmod.dumps(_snap("web-2", {})))
    text = _tuneup("audit", "--snapshot", str(snaps), "-f", "prometheus", "--fail-on", "never", cwd=tmp_path)
    fleet = json.loads(_tuneup("audit", "--snapshot", str(snaps), "-f", "json", "--fail-on", "never", cwd=tmp_path))

    series = []
    for fam in parser.text_string_to_metric_families(text):
        for s in fam.samples:
            if s.value == s.value and abs(s.value) != float("inf"):
                series.append({"series": s.name + _labels({**s.labels, **INSTANCE}), "values": f"{s.value:g}x180"})
    series.append({"series": 'node_textfile_mtime_seconds' + _labels({**INSTANCE, "file": "/tf/tuneup.prom"}),
                   "values": "0x180"})            # never rewritten: stale after an hour

    failing = [(h["host"]["hostname"], f) for h in fleet["hosts"] for f in h["findings"] if f["status"] in ("fail", "error")]
    assert {f["rule"] for _, f in failing} >= {"NET-SOMAXCONN", "CT-MAX", "NET-SYNCOOKIES"}
    assert {h for h, _ in failing} == {"web-1"}

    def base(host: str, f: dict) -> dict:
        return {**INSTANCE, "host": host, "rule": f["rule"], "key": f["key"]}

    def by_severity(sev: str) -> list[dict]:
        return [{"labels": _labels({**base(h, f), "severity": sev}), "value": 1}
                for h, f in failing if f["severity"] == sev]

    below = [(h, f) for h, f in failing
             if f["expected"].startswith(">= ") and isinstance(f["actual"], (int, float))
             and f["actual"] / float(f["expected"].split()[1]) < 0.5]
    assert {f["rule"] for _, f in below} == {"NET-SOMAXCONN", "CT-MAX"}        # not the == rule
    exp_below = [{"exp_labels": {**base(h, f), "severity": "warning"},
                  "exp_annotations": {"summary": f"{INSTANCE['instance']} ({h}): {f['key']} is under half of what {f['rule']} wants"}}
                 for h, f in below]
    rules = yaml_rules()
    test = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [
                {"eval_time": "10m", "alertname": "TuneupValueBelowThreshold", "exp_alerts": []},   # not yet: for 30m
                {"eval_time": "40m", "alertname": "TuneupValueBelowThreshold", "exp_alerts": exp_below},
                {"eval_time": "40m", "alertname": "TuneupAuditStale", "exp_alerts": []},
                {"eval_time": "90m", "alertname": "TuneupAuditStale", "exp_alerts": [{
                    "exp_labels": {**INSTANCE, "file": "/tf/tuneup.prom", "severity": "warning"},
                    "exp_annotations": {"summary": f"{INSTANCE['instance']}: tuneup textfile metrics are older than an hour"}}]},
            ],
            "promql_expr_test": [
                {"expr": rules["TuneupCriticalLimit"], "eval_time": "5m", "exp_samples": by_severity("critical")},
                {"expr": rules["TuneupWarningLimit"], "eval_time": "5m", "exp_samples": by_severity("warning")},
            ],
        }],
    }
    assert by_severity("critical") and by_severity("warning")
    spec = tmp_path / "tuneup-alerts.test.yml"
    spec.write_text(json.dumps(test, indent=1))           # JSON is YAML
    out = subprocess.run([promtool, "test", "rules", str(spec)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    assert "SUCCESS" in out.stdout + out.stderr


def yaml_rules() -> dict:
    yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency")
    doc = yaml.safe_load(ALERTS.read_text())
    return {r["alert"]: r["expr"] for g in doc["groups"] for r in g["rules"]}
