"""Shared by the journal and hostile-tree tests: trees as data, exact captures, the namespaced driver."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import tuneup_cmd

HERE = Path(__file__).resolve().parent
LIVE_MOUNTS = ["/etc/sysctl.d", "/etc/systemd", "/var/lib"]

# per-namespace keys set badly before a live apply (only ever written inside a tA- netns)
BAD = {"net.core.somaxconn": "128", "net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_max_syn_backlog": "64",
       "net.ipv4.tcp_tw_reuse": "0"}
# values of the initial network namespace compared before and after every case: host-global keys a
# broken apply or rollback could touch, and the code-execution one a forged record aimed at
INITIAL = ("fs.file-max", "fs.nr_open", "kernel.pid_max", "kernel.threads-max", "kernel.core_pattern",
           "net.core.somaxconn", "net.ipv4.tcp_syncookies", "net.ipv4.tcp_mem", "net.netfilter.nf_conntrack_max",
           "kernel.randomize_va_space")

LATIN1 = "# r\xe9glage de l'op\xe9rateur\nnet.core.somaxconn = 256\n".encode("latin-1")
BINARY = bytes(range(256)) + b"\x00\xff\xfe"
UTF8 = "# réglage ✓\nnet.ipv4.tcp_syncookies = 1\n".encode("utf-8")


SERVICE = "web.service"
SYSCTL_CONF = "etc/sysctl.d/60-tuneup.conf"
DROPIN = f"etc/systemd/system/{SERVICE}.d/60-tuneup-limits.conf"


def entry(path: str, kind: str, payload: bytes | str = b"", mode: int = 0o644, uid: int = 0, gid: int = 0) -> list:
    if kind == "file":
        payload = base64.b64encode(payload).decode()
    return [path, kind, payload, mode, uid, gid]


# the tree a --root apply works on: bad values to fix, and the two files it will replace (with --force)
ROOT_TREE = [
    entry("etc/sysctl.d/50-bad.conf", "file", b"net.core.somaxconn = 128\nfs.file-max = 1000\nfs.nr_open = 1024\n"),
    entry("etc/sysctl.d/10-utf8.conf", "file", UTF8),
    entry("etc/security/limits.conf", "file", b"* soft nofile 1024\n* hard nofile 4096\n"),
    entry(SYSCTL_CONF, "file", LATIN1, 0o600, 65534, 65534),
    entry(DROPIN, "file", BINARY, 0o640, 0, 65534),
]


def plan_for(root: Path, service: str = SERVICE):
    """(FixPlan, files) for a tree, as `tuneup fix --root ROOT --service SERVICE` computes them."""
    from tuneup import run
    from tuneup.fixes import plan_fixes
    from tuneup.fixes.render import render_files

    p = run.plan(None, {})
    snap = run.obtain_snapshot(p, None, root=root, service=service)
    fixplan = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap), service)
    return fixplan, render_files(fixplan)


def initial_values() -> dict:
    out = {}
    for k in INITIAL:
        try:
            out[k] = Path("/proc/sys/" + k.replace(".", "/")).read_text()
        except OSError:
            out[k] = None
    return out


def capture(root: Path) -> dict:
    """Everything under root, exactly: type, permission bits, owner, group, bytes or link target."""
    out = {}
    for d, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            p = os.path.join(d, name)
            st = os.lstat(p)
            e = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                e += (Path(p).read_bytes(),)
            elif stat.S_ISLNK(st.st_mode):
                e += (os.readlink(p),)
            out[os.path.relpath(p, root)] = e
    return out


def plant(root: Path, tree: list) -> None:
    for rel, kind, payload, mode, uid, gid in tree:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "file":
            p.write_bytes(base64.b64decode(payload))
        elif kind == "symlink":
            p.symlink_to(payload)
            continue
        elif kind == "fifo":
            os.mkfifo(p)
        os.chown(p, uid, gid)
        os.chmod(p, mode)


def need_root_ns() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network and mount namespaces")
    for tool in ("ip", "unshare", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")


class TANetns:
    """A throwaway network namespace named tA-<random>, deleted by name afterwards."""

    def __init__(self) -> None:
        self.name = f"tA-{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> "TANetns":
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"], check=True)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False)

    def drive(self, cases: list[dict], timeout: int = 900) -> list[dict]:
        """Run cases through nsdriver.py in a private mount namespace inside this netns."""
        spec = {"tuneup": tuneup_cmd(), "cases": cases}
        p = subprocess.run(["ip", "netns", "exec", self.name, "unshare", "-m", "--propagation", "private",
                            sys.executable, str(HERE / "nsdriver.py")], input=json.dumps(spec),
                           capture_output=True, text=True, timeout=timeout)
        assert p.returncode == 0, p.stderr[-3000:]
        return json.loads(p.stdout)
