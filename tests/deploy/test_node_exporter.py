"""examples/node_exporter: the unit and timer checked by `systemd-analyze verify`, and the textfile
read by the real node_exporter (Debian's prometheus-node-exporter) on a loopback port inside a
throwaway network namespace, with only the textfile collector: tuneup's metrics are served and the
collector reports no scrape error.

PID 1 here is not systemd, so the unit is not started by systemd: its ExecStart is run as written
(with the installed console script), and StateDirectory= is checked against the output path."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from conftest import STOCK

from tuneup import snapshot as snapmod

from .conftest import REPO
from .test_prometheus import _snap

UNITS = REPO / "examples" / "node_exporter"
SERVICE = UNITS / "tuneup-textfile.service"
TIMER = UNITS / "tuneup-textfile.timer"
DOCUMENTED_BIN = "/opt/tuneup/bin/tuneup"          # docs/install.md: python3 -m venv /opt/tuneup


def _unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(path)
    return unit


def _exec_start() -> list[str]:
    return shlex.split(_unit(SERVICE)["Service"]["ExecStart"])


def test_unit_runs_the_documented_console_script_and_creates_its_directory():
    argv = _exec_start()
    assert argv[0] == DOCUMENTED_BIN
    assert DOCUMENTED_BIN in (REPO / "docs" / "install.md").read_text()
    svc = _unit(SERVICE)["Service"]
    out = Path(argv[argv.index("-o") + 1])
    # systemd creates /var/lib/<StateDirectory> before ExecStart (and keeps it writable under
    # ProtectSystem=strict): the output's directory must be exactly that
    assert Path("/var/lib") / svc["StateDirectory"] == out.parent
    assert out.suffix == ".prom" and "--force" in argv
    assert _unit(TIMER)["Install"]["WantedBy"] == "timers.target"


def test_systemd_analyze_verify_accepts_unit_and_timer(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    root = tmp_path / "root"
    # the system's own unit files (sysinit.target, timers.target, ...) and the documented install
    shutil.copytree("/lib/systemd/system", root / "usr" / "lib" / "systemd" / "system", symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    for unit in (SERVICE, TIMER):
        shutil.copy(unit, root / "etc" / "systemd" / "system")
    script = root / DOCUMENTED_BIN.lstrip("/")
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\nexec tuneup \"$@\"\n")     # verify checks the path is executable
    script.chmod(0o755)

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run([exe, "verify", "--man=no", f"--root={root}", SERVICE.name, TIMER.name],
                              capture_output=True, text=True, timeout=120, env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"})

    out = verify()
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr
    script.unlink()                                   # the check bites: no console script, no pass
    out = verify()
    assert out.returncode != 0 and "is not executable" in out.stderr


def _tuneup_script() -> str:
    script = Path(sys.executable).parent / "tuneup"
    if not script.exists():
        pytest.skip("the tuneup console script is not installed beside this Python")
    return str(script)


@pytest.fixture
def tf_netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a throwaway network namespace")
    name = f"tF-nodeexp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _scrape(ns: str, port: int) -> str:
    code = (f"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics', "
            "timeout=5).read().decode())")
    deadline = time.monotonic() + 30
    while True:
        out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code], capture_output=True, text=True,
                             timeout=30)
        if out.returncode == 0:
            return out.stdout
        if time.monotonic() > deadline:
            raise AssertionError("node_exporter did not answer: " + out.stderr[-500:])
        time.sleep(0.3)


def test_real_node_exporter_serves_tuneup_metrics_without_scrape_error(tmp_path, tf_netns):
    exporter = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if exporter is None:
        pytest.skip("node_exporter is not installed (Debian package prometheus-node-exporter)")
    parser = pytest.importorskip("prometheus_client.parser", reason="prometheus_client is a test dependency")
    textdir = tmp_path / "textfile_collector"
    textdir.mkdir()
    # the unit's command as written, with the installed console script and this test's directory
    argv = _exec_start()
    argv[0] = _tuneup_script()
    argv[argv.index("-o") + 1] = str(textdir / "tuneup.prom")
    for _ in range(2):                                       # the timer rewrites the same file
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0 and out.stdout == "", out.stderr
    # and a fleet's textfile (the controller's view: a host label on every series)
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    for h in ("web-1", "web-2"):
        (snaps / f"{h}.json").write_text(snapmod.dumps(_snap(h, {"net.core.somaxconn": STOCK["net.core.somaxconn"]})))
    out = subprocess.run([argv[0], "audit", "--snapshot", str(snaps), "-f", "prometheus", "--fail-on", "never",
                          "-o", str(textdir / "tuneup-fleet.prom")], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in textdir.iterdir()) == ["tuneup-fleet.prom", "tuneup.prom"]   # no temp file left

    port = 19100
    proc = subprocess.Popen(["ip", "netns", "exec", tf_netns, exporter, f"--web.listen-address=127.0.0.1:{port}",
                             "--collector.disable-defaults", "--collector.textfile",
                             f"--collector.textfile.directory={textdir}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        text = _scrape(tf_netns, port)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
    fams = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert [s.value for s in fams["node_textfile_scrape_error"].samples] == [0.0], err
    mtimes = {s.labels["file"] for s in fams["node_textfile_mtime_seconds"].samples}
    assert {os.path.basename(f) for f in mtimes} == {"tuneup.prom", "tuneup-fleet.prom"}
    failed = fams["tuneup_rule_failed"].samples
    assert any("host" not in s.labels for s in failed)                      # this host's own audit
    assert {s.labels.get("host") for s in failed if "host" in s.labels} == {"web-1", "web-2"}
    assert {"rule", "key", "severity", "status"} <= set(failed[0].labels)
    assert "tuneup_audit_info" in fams and "tuneup_rule_expected_value" in fams
    assert "error" not in err.lower() or "level=error" not in err, err
