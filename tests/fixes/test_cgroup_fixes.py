"""Fixes for the server's cgroup limits (PROC-CGROUP-PIDS-MAX, PROC-CGROUP-MEMORY-MAX): TasksMax= and
MemoryMax= in the unit's drop-in (one value, not soft:hard), DefaultTasksMax= for every service of a
tree, never limits.conf; and `fix --apply --root` with a module-owned sysctl (modules-load.d)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import tuneup_cmd

from tuneup import run
from tuneup.facts import cgroups
from tuneup.facts.collect import collect_root
from tuneup.fixes import plan_fixes
from tuneup.fixes.render import render_files

from .conftest import snapshot, write

TREE_OPTS = ["--service", "web", "--set", "threads_per_connection=1", "--kernel", "6.1", "--ram", "8G"]
UNIT = "[Unit]\nDescription=web\n[Service]\nExecStart=/bin/true\nTasksMax=100\n"


def tuneup(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*tuneup_cmd(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1"})


def findings(root: Path) -> dict[str, tuple[str, object]]:
    import json

    out = tuneup("audit", "--root", str(root), *TREE_OPTS, "-f", "json", "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    return {f["rule"]: (f["status"], f["actual"]) for f in json.loads(out.stdout)["findings"]}


def tree_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_tree_gets_tasks_max_in_the_units_drop_in_and_then_passes(tmp_path):
    """fix --apply --root: the drop-in sets TasksMax= (after the unit's own, which it beats), the
    module-owned conntrack key brings a modules-load.d file; the tree audited again passes; rollback
    gives the tree back byte for byte."""
    root = tmp_path / "tree"
    write(root, "etc/systemd/system/web.service", UNIT)
    before = tree_files(root)
    assert findings(root)["PROC-CGROUP-PIDS-MAX"] == ("fail", 100)
    applied = tuneup("fix", "--root", str(root), *TREE_OPTS, "--apply")
    assert applied.returncode == 0, applied.stderr
    dropin = root / "etc/systemd/system/web.service.d/60-tuneup-limits.conf"
    text = dropin.read_text()
    want = int(1.2 * 100000) + 512          # the rule's expected: web's connections, one task each
    assert f"\nTasksMax={want}\n" in text and "\nLimitNOFILE=" in text and "\nTasksMax=100\n" not in text
    assert "# before: 100 (etc/systemd/system/web.service:5 (TasksMax=100))" in text
    assert (root / "etc/modules-load.d/60-tuneup.conf").read_text().count("nf_conntrack") >= 1
    after = findings(root)
    assert after["PROC-CGROUP-PIDS-MAX"] == ("pass", want) and after["CT-MAX"][0] == "pass"
    if shutil.which("systemd-analyze") is not None:
        units = root / "etc/systemd/system"
        p = subprocess.run(["systemd-analyze", "verify", str(units / "web.service")], capture_output=True,
                           text=True, timeout=60, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})
        assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    back = tuneup("rollback", "--root", str(root))
    assert back.returncode == 0, back.stderr
    assert tree_files(root) == before


def test_a_tree_without_a_service_gets_default_tasks_max(tmp_path):
    write(tmp_path, "etc/systemd/system.conf", "[Manager]\nDefaultTasksMax=512\n")
    p = run.plan("web", {"threads_per_connection": 1}, [])
    snap = collect_root(p.book.fact_keys(), tmp_path, None, kernel="6.1", ram_bytes=8 << 30)
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap))
    files = render_files(fp)
    (path,) = [k for k in files if k.startswith("etc/systemd/system.conf.d/")]
    assert "\nDefaultTasksMax=120512\n" in files[path]
    assert not any("TasksMax" in t for k, t in files.items() if "limits.d" in k)
    write(tmp_path, path, files[path])
    got = cgroups.service_tasks_facts(tmp_path, None, snap.facts)["cgroup.pids.max"]
    assert got.value == 120512 and path in got.source


def test_a_running_services_memory_max_goes_to_its_drop_in(tmp_path):
    p = run.plan("web", {}, [])
    snap = snapshot({"cgroup.memory.max": 1 << 30, "cgroup.pids.max": 100},
                    sources={"cgroup.memory.max": "/sys/fs/cgroup/system.slice/tuneupfx.service/memory.max"},
                    host={"limits_of": "pid 4242 (web), tuneupfx.service"})
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap), "tuneupfx")
    files = render_files(fp)
    (path,) = [k for k in files if k.startswith("etc/systemd/system/tuneupfx.service.d/")]
    want = int(1.2 * p.profile.params["connections"] * p.profile.params["bytes_per_connection"])
    assert f"\nMemoryMax={want}\n" in files[path]
    assert "\nTasksMax=" not in files[path]      # threads_per_connection 0: the task rule does not apply
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units"
    write(units, "tuneupfx.service", "[Unit]\nDescription=t\n[Service]\nType=oneshot\nExecStart=/bin/true\n")
    dropin = write(units, "tuneupfx.service.d/" + path.rsplit("/", 1)[-1], files[path])
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"}
    ok = subprocess.run(["systemd-analyze", "verify", str(units / "tuneupfx.service")], capture_output=True,
                        text=True, timeout=60, env=env)
    assert ok.returncode == 0 and ok.stderr.strip() == "", ok.stderr
    dropin.write_text(files[path].replace(f"MemoryMax={want}", "MemoryMax=lots"))      # the checker is real
    bad = subprocess.run(["systemd-analyze", "verify", str(units / "tuneupfx.service")], capture_output=True,
                         text=True, timeout=60, env=env)
    assert "Invalid memory limit 'lots'" in bad.stderr


def test_a_cgroup_limit_without_a_unit_is_named_not_written():
    """No --service and no unit of the audited process: limits.conf cannot set a cgroup's limit, so
    nothing is written for it and the plan says what to give."""
    p = run.plan("web", {"threads_per_connection": 1}, [])
    snap = snapshot({"cgroup.memory.max": 1 << 30, "cgroup.pids.max": 100},
                    host={"limits_of": "pid 4242 (web), started from a login shell"})
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap))
    files = render_files(fp)
    assert not any(i.key in ("TasksMax", "MemoryMax") for i in fp.items)
    assert not any("TasksMax" in t or "MemoryMax" in t for t in files.values())
    skipped = {s.rule: s.reason for s in fp.skipped}
    for rule in ("PROC-CGROUP-PIDS-MAX", "PROC-CGROUP-MEMORY-MAX"):
        assert "--service NAME" in skipped[rule] and "--pid" in skipped[rule]


def test_every_file_a_fix_renders_lies_where_apply_may_write(tmp_path):
    """What `fix --out-dir` renders, `fix --apply` must be able to install: every etc/ path of the
    overlay is in apply's WRITE_AREAS (modules-load.d was rendered but refused by apply)."""
    from tuneup.fixes.apply import WRITE_AREAS

    write(tmp_path, "etc/systemd/system/web.service", UNIT)
    p = run.plan("web", {"threads_per_connection": 1, "connections": 1_000_000}, [])
    seen = set()
    for service in ("web", None):
        snap = collect_root(p.book.fact_keys(), tmp_path, service, kernel="6.1", ram_bytes=8 << 30)
        fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap), service)
        seen |= {path for path in render_files(fp) if path.startswith("etc/")}
    live = snapshot({"rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 4096, "net.core.somaxconn": 128},
                    host={"limits_of": "a server started from a login shell"})
    fp = plan_fixes(list(p.book.rules.values()), p.rules, live, p.profile.params, p.audit(live))
    seen |= {path for path in render_files(fp) if path.startswith("etc/")}
    areas = {a for a in WRITE_AREAS if any(path.startswith(a) for path in seen)}
    assert areas == set(WRITE_AREAS), seen          # every kind of file was rendered at least once
    assert all(path.startswith(WRITE_AREAS) for path in seen), seen
