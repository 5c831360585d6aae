"""The CLI through typer's runner and through main(): outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import STOCK, make_snapshot, tuneup_cmd
from typer.testing import CliRunner

from tuneup import snapshot
from tuneup.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, FailOn, app, main
from tuneup.formats import OutputFormat, formatter

runner = CliRunner()



def run_main(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


@pytest.fixture
def snap_file(tmp_path):
    p = tmp_path / "snap.json"
    p.write_text(snapshot.dumps(make_snapshot(STOCK)))
    return p


def test_every_output_format_choice_has_an_implementation():
    for fmt in OutputFormat:
        assert callable(formatter(fmt))


def test_fail_on_choices_cover_severities():
    from tuneup.model import Severity
    assert {f.value for f in FailOn} == {s.name.lower() for s in Severity} | {"never"}


def test_audit_snapshot_json_contract(snap_file, capsys):
    code, out, err = run_main(["audit", "--snapshot", str(snap_file), "-f", "json", "-p", "web"], capsys)
    assert code == EXIT_FINDINGS, err
    data = json.loads(out)
    assert data["schema"] == "tuneup.report/1"
    assert {"hostname", "kernel", "distro", "netns"} <= set(data["host"])
    assert data["profile"] == "web" and data["params"]["connections"] == 100000
    by_rule = {f["rule"]: f for f in data["findings"]}
    som = by_rule["NET-SOMAXCONN"]
    assert {"rule", "key", "status", "severity", "actual", "expected", "message"} <= set(som)
    assert (som["status"], som["actual"], som["key"]) == ("fail", 128, "net.core.somaxconn")
    assert by_rule["NET-TW-RECYCLE"]["status"] == "pass"
    assert set(data["summary"]) >= {"pass", "fail", "skip", "unknown"}
    assert data["summary"]["fail"] == sum(f["status"] == "fail" for f in data["findings"])


def test_set_overrides_thresholds(snap_file, capsys):
    _, out, _ = run_main(["audit", "--snapshot", str(snap_file), "-f", "json", "--set", "connections=5000000"], capsys)
    data = json.loads(out)
    assert data["params"]["connections"] == 5000000
    fm = next(f for f in data["findings"] if f["rule"] == "FD-FILE-MAX")
    assert fm["status"] == "fail" and fm["expected_value"] >= 6_000_000


def test_fail_on_levels(snap_file, capsys):
    assert run_main(["audit", "--snapshot", str(snap_file), "--fail-on", "never"], capsys)[0] == EXIT_OK
    # the stock host holds 100K connections (its warnings are margins); at 5M the fd and memory limits fall
    assert run_main(["audit", "--snapshot", str(snap_file), "--fail-on", "warning"], capsys)[0] == EXIT_FINDINGS
    assert run_main(["audit", "--snapshot", str(snap_file), "--fail-on", "critical", "--set", "connections=5000000"],
                    capsys)[0] == EXIT_FINDINGS
    good = dict(STOCK, **{"rlimit.nofile.soft": 200000, "rlimit.nofile.hard": 200000, "net.core.somaxconn": 65535,
                          "net.ipv4.tcp_max_syn_backlog": 65535, "net.ipv4.tcp_mem": (1, 2, 10_000_000),
                          "net.netfilter.nf_conntrack_max": 1048576})
    snap_file.write_text(snapshot.dumps(make_snapshot(good)))
    assert run_main(["audit", "--snapshot", str(snap_file), "--fail-on", "critical"], capsys)[0] == EXIT_OK


def test_table_output_lists_problems_first(snap_file):
    result = runner.invoke(app, ["audit", "--snapshot", str(snap_file)])
    assert result.exit_code == EXIT_FINDINGS
    lines = result.output.splitlines()
    statuses = [ln.split()[0] for ln in lines if ln.split() and ln.split()[0] in ("PASS", "FAIL", "SKIP")]
    assert statuses[0] == "FAIL" and "PASS" not in statuses and "SKIP" not in statuses   # summarized
    assert "Summary:" in result.output and "fix: `tuneup fix" in result.output
    flat = " ".join(result.output.split())     # long commands wrap at the terminal's width
    assert "Next steps:" in flat and f"tuneup fix --snapshot {snap_file} --out-dir ./tuneup-fix" in flat
    everything = runner.invoke(app, ["audit", "--snapshot", str(snap_file), "--all"]).output.splitlines()
    statuses = [ln.split()[0] for ln in everything if ln.split() and ln.split()[0] in ("PASS", "FAIL", "SKIP")]
    assert statuses[0] == "FAIL" and statuses[-1] == "PASS"
    assert max(i for i, s in enumerate(statuses) if s == "FAIL") < min(i for i, s in enumerate(statuses) if s == "PASS")


def test_output_file_is_not_overwritten_without_force(snap_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    out.write_text("precious")
    code, _, err = run_main(["audit", "--snapshot", str(snap_file), "-f", "json", "-o", str(out)], capsys)
    assert code == EXIT_USAGE and "exists" in err and out.read_text() == "precious"
    code, _, _ = run_main(["audit", "--snapshot", str(snap_file), "-f", "json", "-o", str(out), "--force"], capsys)
    assert code == EXIT_FINDINGS and json.loads(out.read_text())["schema"] == "tuneup.report/1"


@pytest.mark.parametrize("args,where", [
    (["audit", "-p", "nosuch"], "--profile: unknown profile 'nosuch'"),
    (["audit", "--set", "connections=lots"], "--set: 'connections=lots': value 'lots' is not a number"),
    (["audit", "--set", "nosuch=1"], "--set: unknown parameter 'nosuch'"),
    (["audit", "--set", "connections"], "expected NAME=VALUE"),
    (["audit", "--set", "connections=-5"], "must not be negative"),
    (["audit", "--snapshot", "/nonexistent.json"], "/nonexistent.json: no such file"),
    (["audit", "--rules-dir", "/nonexistent"], "/nonexistent: rules directory does not exist"),
    (["audit", "-f", "xml"], "Invalid value for '--format'"),
    (["audit", "--fail-on", "sometimes"], "Invalid value for '--fail-on'"),
    (["rules", "show", "NOPE-X"], "no rule 'NOPE-X'"),
    (["audit", "--pid", "999999999"], "--pid: no process with pid 999999999"),
])
def test_bad_input_is_one_line_exit_2(args, where, capsys):
    code, out, err = run_main(args, capsys)
    assert code == EXIT_USAGE
    assert where in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_truncated_and_foreign_snapshots(tmp_path, snap_file, capsys):
    bad = tmp_path / "cut.json"
    bad.write_text(snap_file.read_text()[:200])
    code, _, err = run_main(["audit", "--snapshot", str(bad)], capsys)
    assert code == EXIT_USAGE and f"{bad}:" in err and "invalid JSON" in err
    bad.write_text(json.dumps({"schema": "tuneup.report/1"}))
    code, _, err = run_main(["audit", "--snapshot", str(bad)], capsys)
    assert code == EXIT_USAGE and "$.schema: not a tuneup snapshot" in err


def test_broken_rule_file_via_cli(tmp_path, capsys):
    (tmp_path / "mine.toml").write_text('[[rule]]\nid = "MY-RULE"\ntitle = "x"\nseverity = "loud"\n')
    code, _, err = run_main(["audit", "--rules-dir", str(tmp_path)], capsys)
    assert code == EXIT_USAGE and f"{tmp_path / 'mine.toml'}:2: rule MY-RULE" in err


def test_collect_then_audit_gives_the_same_findings_as_live(tmp_path, capsys):
    snap = tmp_path / "host.json"
    code, _, _ = run_main(["collect", "-o", str(snap)], capsys)
    assert code == EXIT_OK
    data = json.loads(snap.read_text())
    assert data["schema"] == "tuneup.snapshot/1" and "net.core.somaxconn" in data["facts"]
    _, from_snap, _ = run_main(["audit", "--snapshot", str(snap), "-f", "json", "--fail-on", "never"], capsys)
    _, live, _ = run_main(["audit", "-f", "json", "--fail-on", "never"], capsys)
    # per-listener findings are compared on the listeners both readings saw: the host's listening
    # sockets come and go between them (CI runs five suites at once, some listening on the host)
    def targets(doc):
        return {f["target"] for f in json.loads(doc)["findings"] if f.get("target")}
    both = targets(from_snap) & targets(live)

    def key(doc):
        return [(f["rule"], f.get("target"), f["status"], json.dumps(f["actual"])) for f in json.loads(doc)["findings"]
                if not f["key"].startswith(("fs.file-nr", "sockets.", "sockstat.", "netstat."))
                and (not f.get("target") or f["target"] in both)]
    assert key(from_snap) == key(live)


def test_audit_pid_reads_that_process(capsys):
    proc = subprocess.Popen(["prlimit", "--nofile=1024:1024", "sleep", "30"])
    try:
        import time
        for _ in range(50):   # wait until prlimit has exec'd sleep
            if open(f"/proc/{proc.pid}/comm").read().strip() == "sleep":
                break
            time.sleep(0.05)
        code, out, _ = run_main(["audit", "--pid", str(proc.pid), "-f", "json"], capsys)
        data = json.loads(out)
        soft = next(f for f in data["findings"] if f["rule"] == "PROC-NOFILE-SOFT")
        assert code == EXIT_FINDINGS
        assert soft["status"] == "fail" and soft["actual"] == 1024
        assert soft["key"] == f"proc.{proc.pid}.rlimit.nofile.soft" and "sleep" in soft["message"]
    finally:
        proc.kill()
        proc.wait()


def test_rules_and_profiles_commands():
    r = runner.invoke(app, ["rules", "list", "-f", "json"])
    assert r.exit_code == 0
    items = json.loads(r.output)
    assert all({"id", "title", "severity", "key", "scope", "rationale", "refs", "profiles"} <= set(i) for i in items)
    r = runner.invoke(app, ["rules", "show", "NET-SOMAXCONN", "--set", "accept_rate_per_s=100000"])
    assert r.exit_code == 0 and ">= 50000" in r.output
    r = runner.invoke(app, ["profiles"])
    assert r.exit_code == 0 and "proxy" in r.output and "extends web" in r.output


def test_console_script_and_module_entry_points(snap_file):
    for cmd in (tuneup_cmd(), [__import__("sys").executable, "-m", "tuneup"]):
        p = subprocess.run([*cmd, "audit", "--snapshot", str(snap_file), "-p", "nosuch"], capture_output=True, text=True)
        assert p.returncode == EXIT_USAGE and p.stderr.count("\n") == 1 and "unknown profile" in p.stderr
