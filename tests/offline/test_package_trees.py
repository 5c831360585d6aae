"""Config trees built from real Debian packages (systemd, procps, tuned; unpacked with dpkg-deb -x,
never installed) plus a few operator files, audited with `tuneup audit --root`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuneup.facts import configfiles as cf

from .test_sysctl_oracle import build

RELEASE = "6.1.0-27-amd64"
OPERATOR = {
    "etc/sysctl.d/60-site.conf": "net.core.somaxconn = 65535\nnet.netfilter.nf_conntrack_max = 1048576\n"
                                 "net.ipv4.ip_local_port_range = 1000 65535\nkernel.pid_max = 4194304\n",
    "etc/security/limits.d/90-app.conf": "* soft nofile 1048576\n* hard nofile 1048576\n",
    "etc/systemd/system/app.service": "[Service]\nExecStart=/usr/bin/app\nLimitNOFILE=1048576\n",
    f"lib/modules/{RELEASE}/modules.dep": "",
}


def _copy(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)


def make_tree(base: Path, packages: Path, name: str, *, tuned: str | None = None, procps_only: bool = False) -> Path:
    root = base / name
    _copy(packages, root)
    if procps_only:   # a sysvinit host: no systemd-sysctl, procps's init script applies sysctl --system
        for rel in ("lib/systemd", "usr/lib/systemd", "usr/lib/x86_64-linux-gnu/systemd"):
            shutil.rmtree(root / rel, ignore_errors=True)
    else:
        (root / "sbin").mkdir(exist_ok=True)
        if not (root / "sbin/init").exists():
            os.symlink("/lib/systemd/systemd", root / "sbin/init")
    if not tuned:
        (root / "etc/tuned/active_profile").unlink(missing_ok=True)
    else:
        (root / "etc/tuned/active_profile").write_text(tuned + "\n")
        wants = root / "etc/systemd/system/multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        os.symlink("/lib/systemd/system/tuned.service", wants / "tuned.service")
    build(root, OPERATOR)
    return root


@pytest.fixture(scope="module")
def trees(packages, tmp_path_factory):
    base = tmp_path_factory.mktemp("tD-trees")
    return {"systemd": make_tree(base, packages, "systemd"),
            "tuned": make_tree(base, packages, "tuned", tuned="atomic-guest"),
            "procps": make_tree(base, packages, "procps", procps_only=True)}


def audit(root: Path, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "tuneup", "audit", "--root", str(root), "-f", "json", *args],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def by(data: dict) -> dict:
    return {(f["rule"], f["key"]): f for f in data["findings"]}


def test_systemd_tree(trees):
    root = trees["systemd"]
    data = audit(root, "--ram", "8G", "--service", "app")
    assert data["host"]["kernel"].startswith(RELEASE) and "lib/modules" in data["host"]["kernel"]
    f = by(data)
    # nf_conntrack is loaded after systemd-sysctl: the sysctl.d line never applies, the default does
    mod = f[("BOOT-MODULE-KEY", "net.netfilter.nf_conntrack_max")]
    assert mod["status"] == "fail" and "never applied at boot" in mod["message"]
    ct = f[("CT-MAX", "net.netfilter.nf_conntrack_max")]
    assert ct["actual"] == 262144 and "kernel default for 6.1 with 8 GiB, computed" in ct["message"]
    # the port range starts below ip_unprivileged_port_start: the kernel refuses it
    rej = f[("BOOT-LINE-REJECTED", "net.ipv4.ip_local_port_range")]
    assert "this line never applies" in rej["message"]
    # the service's own LimitNOFILE= covers the need: the limits.d entry is harmless
    assert not [k for k in f if k[0] == "BOOT-PAM-LIMITS"]
    # live-only rules
    assert f[("SOCK-TIME-WAIT", "sockstat.tcp.tw")]["status"] == "skip"
    assert "not applicable to a config tree" in f[("SOCK-TIME-WAIT", "sockstat.tcp.tw")]["message"]
    # procps's /etc/sysctl.conf is linked as 99-sysctl.conf: nothing unread
    assert not [k for k in f if k[0] == "BOOT-SYSCTL-CONF-UNREAD"]


def test_systemd_tree_with_modules_load(trees, tmp_path):
    root = tmp_path / "t"
    _copy(trees["systemd"], root)
    build(root, {"etc/modules-load.d/conntrack.conf": "nf_conntrack\n"})
    f = by(audit(root, "--ram", "8G"))
    assert ("BOOT-MODULE-KEY", "net.netfilter.nf_conntrack_max") not in f
    assert f[("CT-MAX", "net.netfilter.nf_conntrack_max")]["actual"] == 1048576


def test_systemd_tree_matches_the_real_systemd_sysctl(trees, sysctl_chroot):
    """The package tree's sysctl.d files, applied by the real systemd-sysctl from the same package."""
    root = trees["systemd"]
    assigns = cf.sysctl_assignments(root, "systemd")
    keys = sorted({a.path for a in assigns if not a.glob})
    sysctl_chroot.keys = keys
    sysctl_chroot.reset()
    for d in cf.SYSCTL_DIRS + ("etc/sysctl.conf",):
        src = root / d
        if src.is_dir():
            _copy(src, sysctl_chroot.root / d)
        elif src.is_file():
            shutil.copy2(src, sysctl_chroot.root / d)
    real = sysctl_chroot.run("systemd")
    mine = {k: bv.value for k, bv in cf.boot_sysctl(sysctl_chroot.root, {cf.normalize_key(k) for k in keys}, "systemd").items()}
    assert {cf.sysctl_path(k): v for k, v in mine.items()} == real
    assert real["kernel/pid_max"] == "4194304"


def test_tuned_tree(trees):
    root = trees["tuned"]
    facts = cf.boot_facts({"kernel.pid_max", "net.core.somaxconn"}, root, rootfs=True)
    # atomic-guest sets pid_max 131072, but tuned re-applies etc/sysctl.d after its profile
    assert facts["kernel.pid_max"].value == 4194304 and facts["kernel.pid_max"].source == "etc/sysctl.d/60-site.conf:4"
    assert "tuned" in facts["boot.tuned"].source
    (root / "etc/tuned/tuned-main.conf").write_text("reapply_sysctl = 0\n")
    facts = cf.boot_facts({"kernel.pid_max"}, root, rootfs=True)
    assert facts["kernel.pid_max"].value == 131072
    assert facts["kernel.pid_max"].source == "usr/lib/tuned/atomic-guest/tuned.conf:" + str(
        next(n for n, line in enumerate((root / "usr/lib/tuned/atomic-guest/tuned.conf").read_text().splitlines(), 1)
             if line.startswith("kernel.pid_max")))


def test_procps_tree(trees):
    root = trees["procps"]
    assert cf.boot_applier(root)[0] == "procps"
    build(root, {"etc/sysctl.conf": "net.core.somaxconn = 8192\n"})
    facts = cf.boot_facts({"net.core.somaxconn"}, root, rootfs=True)
    assert facts["net.core.somaxconn"].value == 8192 and facts["net.core.somaxconn"].source == "etc/sysctl.conf:1"


def test_fix_loads_the_module_and_offers_a_tuned_child_profile(trees, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tuneup", "fix", "--root", str(trees["tuned"]), "--ram", "8G",
                        "--set", "connections=2000000", "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    loads = list((out / "etc/modules-load.d").iterdir())
    assert len(loads) == 1 and "\nnf_conntrack\n" in loads[0].read_text()
    assert "options nf_conntrack hashsize=" in (out / "etc/modprobe.d/99-tuneup.conf").read_text()
    child = (out / "etc/tuned/tuneup-atomic-guest/tuned.conf").read_text()
    assert "include=atomic-guest" in child and "net.netfilter.nf_conntrack_max=" in child
    # the sysctl.d file sorts after every name in the tree's sysctl.d directories
    names = cf.sysctl_names(trees["tuned"]).split("/")
    ours = [p.name for p in (out / "etc/sysctl.d").iterdir()]
    assert len(ours) == 1 and all(ours[0].encode() > n.encode() for n in names)


def test_fix_on_a_procps_host_names_the_sysctl_conf_line(trees, tmp_path):
    root = tmp_path / "p"
    _copy(trees["procps"], root)
    build(root, {"etc/sysctl.conf": "net.ipv4.tcp_abort_on_overflow = 1\n"})
    r = subprocess.run([sys.executable, "-m", "tuneup", "fix", "--root", str(root), "--out-dir", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stdout.split())    # the summary is wrapped to the terminal's width
    assert "etc/sysctl.conf:1, which procps `sysctl --system` applies after every sysctl.d file" in said
