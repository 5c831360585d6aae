"""For real, inside throwaway network namespaces: the round trip audit -> fix -> `sysctl -p` ->
audit, and `fix --apply` / `rollback` with --root under a temp dir. Every test ends with the
host-global values compared with their values before (fx_netns fixture)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .conftest import write

BAD = {"net.core.somaxconn": "128", "net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_max_syn_backlog": "64",
       "net.ipv4.ip_local_port_range": "40000 40100", "net.ipv4.tcp_tw_reuse": "0"}
FIXED_RULES = ("NET-SOMAXCONN", "NET-SYNCOOKIES", "NET-PORT-RANGE-SPAN", "NET-TW-REUSE")


def _findings(p) -> dict[str, dict]:
    assert p.returncode in (0, 1), p.stderr
    return {f["rule"]: f for f in json.loads(p.stdout)["findings"] if f["key"] != "pam.nofile.soft"}


def test_round_trip_audit_fix_sysctl_p_audit(fx_netns, tmp_path):
    for k, v in BAD.items():
        fx_netns.set(k, v)
    before = _findings(fx_netns.tuneup("audit", "-p", "proxy", "-f", "json"))
    assert all(before[r]["status"] == "fail" for r in FIXED_RULES)

    out = tmp_path / "out"
    p = fx_netns.tuneup("fix", "-p", "proxy", "--out-dir", str(out))
    assert p.returncode == 0, p.stderr
    (conf,) = (out / "etc/sysctl.d").glob("*-tuneup.conf")
    text = conf.read_text()
    assert "fs." not in text and "net.netfilter" not in text      # host-global keys are kept apart
    assert (out / "container/docker-sysctl.txt").exists() and (out / "container/kubernetes-sysctls.yaml").exists()
    assert os.access(out / "apply.sh", os.X_OK)

    load = fx_netns.run("sysctl", "-p", str(conf), check=False)
    assert load.returncode == 0, load.stderr
    after = _findings(fx_netns.tuneup("audit", "-p", "proxy", "-f", "json"))
    for r in FIXED_RULES:
        assert after[r]["status"] == "pass", after[r]
    assert after["NET-SYN-BACKLOG"]["status"] in ("pass", "skip")
    # a second fix has nothing left to do for the per-namespace keys
    again = fx_netns.tuneup("fix", "-p", "proxy")
    assert not any(line.startswith(FIXED_RULES) for line in again.stdout.splitlines())


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_apply_and_rollback_under_a_root(fx_netns, tmp_path):
    """--root means the tree: the files are written under it and nothing is loaded into the kernel
    (before: the image's values were loaded into the running kernel of the machine)."""
    root = tmp_path / "root"
    write(root, "etc/sysctl.d/50-bad.conf", "net.core.somaxconn = 128\nnet.ipv4.tcp_syncookies = 0\n"
                                            "fs.file-max = 1000\nfs.nr_open = 1024\n")
    write(root, "etc/sysctl.d/60-tuneup.conf.keep", "not ours\n")
    files_before = _tree(root)
    live_before = {k: fx_netns.get(k) for k in ("net.core.somaxconn", "net.ipv4.tcp_syncookies")}

    p = fx_netns.tuneup("fix", "--apply", "--root", str(root))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "not loaded      net.core.somaxconn = 65535" in p.stdout
    assert "not loaded      fs.file-max" in p.stdout and "verified" not in p.stdout
    assert {k: fx_netns.get(k) for k in live_before} == live_before      # the running kernel is untouched
    written = root / "etc/sysctl.d/60-tuneup.conf"
    assert "net.core.somaxconn = 65535" in written.read_text()
    assert oct(written.stat().st_mode & 0o777) == oct(0o644)
    rec = root / "var/lib/tuneup/state.json"
    assert rec.stat().st_mode & 0o777 == 0o600
    state = json.loads(rec.read_text())
    assert state["sysctls"] == [] and state["complete"] is True and state["live"] is False
    assert {"path": "etc/sysctl.d/60-tuneup.conf", "created": True, "done": True} in state["files"]
    # the root now audits clean for those keys
    a = _findings(fx_netns.tuneup("audit", "--root", str(root), "-f", "json"))
    assert a["NET-SOMAXCONN"]["status"] == "pass" and a["FD-FILE-MAX"]["status"] == "pass"
    # a second apply over a record that was not rolled back says so instead of stacking
    again = fx_netns.tuneup("fix", "--apply", "--force", "--root", str(root))
    assert again.returncode == 2 and "not been rolled back" in again.stderr and len(again.stderr.splitlines()) == 1

    r = fx_netns.tuneup("rollback", "--root", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    assert {k: fx_netns.get(k) for k in live_before} == live_before
    assert _tree(root) == files_before
    assert not (root / "var").exists()       # directories it created are gone too


def test_apply_never_overwrites_a_file_it_did_not_create(fx_netns, tmp_path):
    root = tmp_path / "root"
    write(root, "etc/sysctl.d/50-bad.conf", "net.core.somaxconn = 128\n")
    mine = write(root, "etc/sysctl.d/60-tuneup.conf", "# the operator's own file\nnet.core.somaxconn = 256\n")
    somax = fx_netns.get("net.core.somaxconn")
    p = fx_netns.tuneup("fix", "--apply", "--root", str(root))
    assert p.returncode == 2 and "--force" in p.stderr and str(mine) in p.stderr
    assert mine.read_text().startswith("# the operator's own file") and fx_netns.get("net.core.somaxconn") == somax
    assert not (root / "var").exists()
    # with --force it is replaced, and rollback brings the operator's text back
    mine.chmod(0o600)
    os.chown(mine, 65534, 65534)
    p = fx_netns.tuneup("fix", "--apply", "--force", "--root", str(root))
    assert p.returncode == 0, p.stderr
    assert "tuneup" in mine.read_text().splitlines()[0]
    st = mine.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)   # owner and mode kept
    r = fx_netns.tuneup("rollback", "--root", str(root))
    assert r.returncode == 0 and mine.read_text() == "# the operator's own file\nnet.core.somaxconn = 256\n"
    st = mine.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
    assert fx_netns.get("net.core.somaxconn") == somax


def test_rollback_without_a_record_is_a_usage_error(fx_netns, tmp_path):
    p = fx_netns.tuneup("rollback", "--root", str(tmp_path))
    assert p.returncode == 2 and "nothing to roll back" in p.stderr


def test_apply_refuses_without_root(tmp_path):
    import subprocess

    from .conftest import tuneup_cmd

    if os.geteuid() != 0:
        p = subprocess.run([*tuneup_cmd(), "fix", "--apply", "--root", str(tmp_path)], capture_output=True, text=True)
    else:
        # drop to nobody for this one command; the tree is world-readable
        tmp_path.chmod(0o755)
        drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        probe = subprocess.run([*drop, *tuneup_cmd(), "--help"], capture_output=True, text=True,
                               env={**os.environ, "HOME": "/"})
        if probe.returncode != 0:   # e.g. an interpreter whose libpython lies under /root (pyenv)
            pytest.skip(f"this interpreter cannot run as an unprivileged user here: {probe.stderr.strip()[:120]}")
        p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *tuneup_cmd(), "fix",
                            "--apply", "--root", str(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "HOME": "/"})
    assert p.returncode == 2, p.stdout + p.stderr
    assert "run it as root" in p.stderr and "Traceback" not in p.stderr
