"""Running servers: found by name, their unit, BEAM flags; audited with --pid/--process."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tuneup.cli import main
from tuneup.facts import processes


def test_parse_cgroup_unit():
    assert processes.parse_cgroup_unit("0::/system.slice/nginx.service\n") == "nginx.service"
    assert processes.parse_cgroup_unit("12:name=systemd:/system.slice/x.service\n1:cpu:/\n") == "x.service"
    assert processes.parse_cgroup_unit("0::/user.slice/user-0.slice/session-3.scope\n") == "session-3.scope"
    assert processes.parse_cgroup_unit("0::/\n") is None


def test_parse_beam_flags_and_effective_limits():
    argv = ["-Q", "1048576", "-P", "2097152", "--", "-root", "/usr/lib/erlang", "+Q", "5"]
    assert processes.parse_beam_flags(argv) == {"Q": 1048576, "P": 2097152}
    assert processes.parse_beam_flags(["+Q1024", "+P", "300000"]) == {"Q": 1024, "P": 300000}
    eff = processes.beam_effective({}, 200000, None)
    assert eff["max_ports"][0] == 200000          # default 65536 raised to the fd limit
    assert eff["max_processes"][0] == 1048576
    assert processes.beam_effective({}, 1024, None)["max_ports"][0] == 65536
    assert processes.beam_effective({"Q": 5}, 10, None)["max_ports"][0] == 1024   # clamped to +Q's minimum
    assert processes.beam_effective({}, 1024, "4096")["max_ports"][0] == 4096


@pytest.fixture
def fake_beam():
    """A process whose argv[0] is beam.smp with small +Q/+P, under a low fd limit (no Erlang here)."""
    code = "import time; time.sleep(60)"
    p = subprocess.Popen(["prlimit", "--nofile=2048:2048", "bash", "-c",
                          f'exec -a beam.smp {sys.executable} -c "{code}" -Q 1024 -P 5000 -- -root /x'])
    for _ in range(100):
        try:
            if open(f"/proc/{p.pid}/cmdline", "rb").read().startswith(b"beam.smp\0"):
                break
        except OSError:
            pass
        time.sleep(0.05)
    yield p
    p.kill()
    p.wait()


def run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_audit_process_by_name_flags_beam_limits(fake_beam, capsys):
    assert fake_beam.pid in processes.find_by_name("beam.smp")
    code, out, err = run(["audit", "-p", "erlang", "--process", "beam.smp", "-f", "json"], capsys)
    assert code == 1, err
    f = {(x["rule"], x["key"]): x for x in json.loads(out)["findings"]}
    pid = fake_beam.pid
    ports = f[("BEAM-MAX-PORTS", f"proc.{pid}.beam.max_ports")]
    assert ports["status"] == "fail" and ports["actual"] == 1024 and "+Q 1024" in ports["source"]
    procs = f[("BEAM-MAX-PROCESSES", f"proc.{pid}.beam.process_limit")]   # tuneup/facts/beam.py
    assert procs["status"] == "fail" and procs["actual"] == 5000 and "+P 5000" in procs["source"]
    soft = f[("PROC-NOFILE-SOFT", f"proc.{pid}.rlimit.nofile.soft")]
    assert soft["status"] == "fail" and soft["actual"] == 2048
    usage = f[("PROC-FD-USAGE", f"proc.{pid}.fds")]
    assert usage["status"] == "pass" and usage["actual"] < 50


def test_non_beam_process_skips_beam_rules(capsys):
    p = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        _, out, _ = run(["audit", "-p", "erlang", "--pid", str(p.pid), "-f", "json"], capsys)
        f = {x["rule"]: x for x in json.loads(out)["findings"] if x["target"] and str(p.pid) in x["target"]}
        assert f["BEAM-MAX-PORTS"]["status"] == "skip" and "not a BEAM VM" in f["BEAM-MAX-PORTS"]["message"]
    finally:
        p.kill()
        p.wait()


def test_unknown_process_name_is_usage_error(capsys):
    code, _, err = run(["audit", "--process", "no-such-server-xyz"], capsys)
    assert code == 2 and "--process: no running process named 'no-such-server-xyz'" in err
