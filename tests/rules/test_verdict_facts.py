"""The facts the verdict rules read, from the real host (/proc, /sys/fs/cgroup), and what `rules show`
and `profiles` print for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rule_helpers import REPO, book
from typer.testing import CliRunner

from tuneup.cli import app
from tuneup.facts import beam, cgroups, counters
from tuneup.facts.collect import collect
from tuneup.model import RLIM_INFINITY

runner = CliRunner()


def invoke(*args: str) -> str:
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def test_cgroup_limits_of_a_real_process():
    facts = cgroups.process_cgroup_facts(os.getpid())
    for kind in ("pids", "memory"):
        f = facts[f"proc.{os.getpid()}.cgroup.{kind}.max"]
        assert f.error is None
        # a number, "max" as RLIM_INFINITY, or absent when the controller is not mounted for us
        assert f.value is None or (isinstance(f.value, int) and f.value > 0), f
        if f.value is not None:
            assert Path(f.source).is_file() and f.source.startswith("/sys/fs/cgroup")


def test_cgroup_parsers():
    assert cgroups.parse_proc_cgroup("0::/system.slice/nginx.service\n") == {"": "/system.slice/nginx.service"}
    v1 = cgroups.parse_proc_cgroup("8:pids:/system.slice/x.service\n4:memory:/system.slice/x.service\n")
    assert v1["pids"] == v1["memory"] == "/system.slice/x.service"
    assert cgroups.parse_limit("max\n") == RLIM_INFINITY and cgroups.parse_limit("4915\n") == 4915
    assert cgroups.parse_limit("9223372036854771712") == RLIM_INFINITY     # v1 "no limit"


def test_cgroup_tightest_limit_wins(tmp_path):
    (tmp_path / "system.slice" / "app.service").mkdir(parents=True)
    (tmp_path / "pids.max").write_text("max\n")
    (tmp_path / "system.slice" / "pids.max").write_text("1000\n")
    (tmp_path / "system.slice" / "app.service" / "pids.max").write_text("4915\n")
    proc = tmp_path / "proc" / "77"
    proc.mkdir(parents=True)
    (proc / "cgroup").write_text("0::/system.slice/app.service\n")
    facts = cgroups.process_cgroup_facts(77, str(tmp_path / "proc"), str(tmp_path))
    assert facts["proc.77.cgroup.pids.max"].value == 1000                   # the slice caps the service
    assert facts["proc.77.cgroup.memory.max"].value is None                 # no memory controller here


def test_beam_process_limit_by_release():
    assert beam.erts_version(["/usr/lib/erlang/erts-13.2.2.5/bin/beam.smp"]) == (13, 2, 2)
    assert beam.process_limit(["beam.smp", "-P", "5000000", "--"], None)[0] == 5000000
    value, how, _ = beam.process_limit(["beam.smp", "--", "-root", "/x"], "/usr/lib/erlang/erts-14.2/bin/beam.smp")
    assert value == 262144 and "erts 14.2" in how
    value, how, _ = beam.process_limit(["beam.smp"], None)
    assert value == 262144 and "unknown" in how                            # the conservative default
    assert beam.process_limit(["beam.smp"], "/opt/erts-5.9.3/bin/beam.smp")[0] == 32768   # R15


def test_softnet_stat_from_the_real_file():
    text = Path("/proc/net/softnet_stat").read_text()
    totals = counters.parse_softnet_stat(text)
    assert totals["processed"] >= 0 and totals["dropped"] >= 0
    assert counters.parse_softnet_stat("0000000a 00000002 00000001\n00000001 00000003 00000000\n") == \
        {"processed": 11, "dropped": 5, "time_squeeze": 1}


def test_live_collect_records_the_server_and_the_new_facts():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        snap = collect(book().fact_keys(), [p.pid], sample=0.2)
        assert [t["pid"] for t in snap.processes] == [p.pid]
        assert f"proc.{p.pid}.cgroup.pids.max" in snap.facts
        assert snap.facts[f"proc.{p.pid}.beam.process_limit"].value is None      # not a BEAM VM
        assert isinstance(snap.facts["sample.softnet.dropped.delta"].value, int)
        for key in ("fs.epoll.max_user_watches", "vm.max_map_count", "net.ipv4.tcp_retries2"):
            assert isinstance(snap.facts[key].value, int), key
    finally:
        p.kill()
        p.wait()
    snap = collect(book().fact_keys(), [])          # no --sample: no window, the rule skips
    assert snap.facts["sample.softnet.dropped.delta"].value is None and snap.processes == []


def test_live_audit_without_a_server_never_judges_tuneup():
    r = runner.invoke(app, ["audit", "-f", "json", "--fail-on", "never"])
    assert r.exit_code == 0, r.output
    import json
    soft = next(f for f in json.loads(r.output)["findings"] if f["rule"] == "PROC-NOFILE-SOFT")
    assert soft["status"] == "skip" and "no server named (use --pid, --process or --service)" in soft["message"]


def test_rules_show_prints_need_and_derived_values_and_only_its_profiles():
    text = " ".join(invoke("rules", "show", "NET-SOMAXCONN", "--set", "connections=1000000").split())
    assert "need:" in text and "(need >= 8334)" in text
    assert "accept_rate_per_s=16667 (= ceil(connections / reconnect_window_s))" in text
    text = invoke("rules", "show", "BEAM-MAX-PROCESSES", "-p", "websocket")
    assert "for websocket" not in text and "not in profile websocket" in text
    text = invoke("rules", "show", "NET-RESERVED-PORTS")
    assert "!= (empty)" in text
    text = invoke("rules", "show", "MEM-LOAD-FITS-RAM")
    assert "an estimate" in text


def test_docs_name_the_need_and_the_derived_parameters():
    doc = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert "`ceil(connections / reconnect_window_s)`" in doc and "within the margin" in doc


def test_process_by_name_never_selects_tuneup_itself(tmp_path):
    """A /proc-shaped tree (the real /proc holds other helpers' processes with any name): tuneup's own
    pid is left out of a name match, another process of that name is kept."""
    from tuneup.facts.collect import resolve_targets

    for pid in (os.getpid(), 999999):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text("python3\n")
        (tmp_path / str(pid) / "cmdline").write_bytes(b"python3\0")
    assert resolve_targets((), ("python3",), str(tmp_path)) == [999999]


def test_tasks_max_of_a_service_from_its_unit_files(tmp_path):
    """TasksMax= in a drop-in, else DefaultTasksMax=, else systemd's 15% of the task ceiling."""
    import json

    assert cgroups.parse_tasks_max("15%", 32768) == 4915 and cgroups.parse_tasks_max("infinity", None) == RLIM_INFINITY
    unit = tmp_path / "etc/systemd/system"
    (unit / "app.service.d").mkdir(parents=True)
    (unit / "app.service").write_text("[Service]\nExecStart=/bin/true\n")
    (unit / "app.service.d/tasks.conf").write_text("[Service]\nTasksMax=4915\n")

    def audit(*extra: str) -> dict:
        r = runner.invoke(app, ["audit", "--root", str(tmp_path), "--set", "threads_per_connection=1",
                                "--set", "connections=10000", "-f", "json", "--fail-on", "never", *extra])
        assert r.exit_code == 0, r.output
        return next(f for f in json.loads(r.output)["findings"] if f["rule"] == "PROC-CGROUP-PIDS-MAX")

    f = audit("--service", "app")
    assert f["status"] == "fail" and f["severity"] == "critical" and "TasksMax=4915" in f["message"]
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d/50-pid-max.conf").write_text("kernel.pid_max = 4194304\n")
    (unit / "app.service.d/tasks.conf").write_text("[Service]\nTasksMax=infinity\n")
    assert audit("--service", "app")["status"] == "pass"
    f = audit()      # any service: DefaultTasksMax unset -> 15%; a tree has no threads-max, so of pid_max
    assert f["status"] == "pass" and "TasksMax=15%" in f["source"]
