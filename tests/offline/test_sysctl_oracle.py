"""tuneup's boot precedence against the real systemd-sysctl (Debian 12, v252) on random trees.

Every line of a generated tree carries a value unique to it, so the value systemd-sysctl writes
names the file and line that won; tuneup must give the same value and the same file:line for
every key, including keys no line sets. procps `sysctl --system` is compared on trees without the
constructs where it is documented to differ (see configfiles.py).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tuneup.facts import configfiles as cf

KEYS = ["net/core/somaxconn", "net/core/netdev_max_backlog", "net/ipv4/tcp_syncookies", "net/ipv4/tcp_fin_timeout",
        "net/ipv4/conf/all/rp_filter", "net/ipv4/conf/lo/rp_filter", "net/ipv4/conf/eth0.100/rp_filter",
        "kernel/pid_max", "fs/file-max", "vm/max_map_count"]
GLOBS = ["net.core.*", "*.somaxconn", "net.*", "net.ipv4.conf.*.rp_filter", "net.ipv4.conf.all.*", "net.core.s*",
         "kernel.pid_?ax", "net/ipv4/tcp_[sf]*", "fs.*", "*.*.*", "net.ipv4.conf.eth0/100.*"]
NAMES = ["10-a.conf", "50-x.conf", "50-y.conf", "99-sysctl.conf", "zz-later.conf", "~local.conf",
         "über-tuning.conf", "60-tuneup.conf", ".hidden.conf", "notconf.txt"]
DIRS = cf.SYSCTL_DIRS
N_TREES = int(os.environ.get("TUNEUP_ORACLE_TREES", "200"))


def _spell(path: str, rng: random.Random) -> str:
    """A key as an operator may write it: dotted, slashed, with a leading slash."""
    form = rng.randrange(4)
    if form == 0:
        return "/" + path
    if form == 1:
        return path
    return cf.normalize_key(path)


def generate(rng: random.Random) -> tuple[dict[str, object], dict[str, str]]:
    """{rel path: text | ("link", target)} and {value: file:line} for one random tree."""
    files: dict[str, object] = {}
    where: dict[str, str] = {}
    counter = [1000]
    for _ in range(rng.randrange(1, 7)):
        d, name = rng.choice(DIRS), rng.choice(NAMES)
        rel = f"{d}/{name}"
        kind = rng.random()
        if kind < 0.08:
            files[rel] = ("link", "/dev/null")
            continue
        if kind < 0.13:
            files[rel] = ("link", "/nowhere/gone.conf")
            continue
        lines = []
        for n in range(1, rng.randrange(2, 9)):
            counter[0] += 1
            v = str(counter[0])
            r = rng.random()
            if r < 0.5:
                lines.append(f"{_spell(rng.choice(KEYS), rng)} = {v}")
            elif r < 0.72:
                lines.append(f"{rng.choice(GLOBS)} = {v}")
            elif r < 0.82:
                lines.append(f"-{_spell(rng.choice(KEYS), rng)}")
            elif r < 0.9:
                lines.append(f"-{_spell(rng.choice(KEYS), rng)}={v}")
            elif r < 0.95:
                lines.append(f"# {rng.choice(KEYS)} = {v}")
            else:
                lines.append("not an assignment")
            where[v] = f"{rel}:{len(lines)}"
        files[rel] = "\n".join(lines) + "\n"
    if rng.random() < 0.3:
        counter[0] += 1
        files["etc/sysctl.conf"] = f"{_spell(rng.choice(KEYS), rng)} = {counter[0]}\n"
        where[str(counter[0])] = "etc/sysctl.conf:1"
        if rng.random() < 0.5:   # Debian's link: systemd-sysctl reads it under this name
            files["etc/sysctl.d/99-sysctl.conf"] = ("link", "../sysctl.conf")
            where[str(counter[0])] = "etc/sysctl.d/99-sysctl.conf:1"
    return files, where


def build(root: Path, files: dict[str, object]) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists() or p.is_symlink():
            p.unlink()
        if isinstance(text, tuple):
            os.symlink(text[1], p)
        else:
            p.write_text(text)


def tuneup_view(root: Path, where: dict[str, str], applier: str) -> dict[str, tuple[str, str]]:
    keys = {cf.normalize_key(k): k for k in KEYS}
    table = cf.boot_sysctl(root, set(keys), applier)
    out = {}
    for dotted, path in keys.items():
        bv = table.get(dotted)
        if bv is not None:
            out[path] = (bv.value, bv.winner.where)
    return out


def test_precedence_matches_real_systemd_sysctl(sysctl_chroot):
    sysctl_chroot.keys = KEYS
    rng = random.Random(20261203)
    compared = differ = 0
    failures = []
    for i in range(N_TREES):
        files, where = generate(rng)
        sysctl_chroot.reset()
        build(sysctl_chroot.root, files)
        real = sysctl_chroot.run("systemd")
        real_view = {k: (v, where.get(v, "?")) for k, v in real.items()}
        mine = tuneup_view(sysctl_chroot.root, where, "systemd")
        for k in KEYS:
            compared += 1
            if real_view.get(k) != mine.get(k):
                differ += 1
                failures.append((i, k, real_view.get(k), mine.get(k), files))
    assert compared == N_TREES * len(KEYS)
    assert not failures, f"{differ} of {compared} values differ; first: " + "\n".join(map(str, failures[:4]))


PROCPS_CASES = [
    ("sysctl.conf applied last", {"etc/sysctl.d/zz.conf": "net.core.somaxconn = 1\n", "etc/sysctl.conf": "net.core.somaxconn = 2\n"}),
    ("dot-files read", {"etc/sysctl.d/.h.conf": "net.core.somaxconn = 3\n"}),
    ("later line wins", {"etc/sysctl.d/10.conf": "net.core.somaxconn = 4\n", "usr/lib/sysctl.d/20.conf": "net.core.somaxconn = 5\n"}),
    ("mask by name", {"etc/sysctl.d/20.conf": "kernel.pid_max = 6\n", "usr/lib/sysctl.d/20.conf": "kernel.pid_max = 7\n"}),
    ("linked sysctl.conf read twice, last", {"etc/sysctl.conf": "fs.file-max = 8\n", "etc/sysctl.d/99-sysctl.conf": ("link", "../sysctl.conf"),
                                             "etc/sysctl.d/99-zz.conf": "fs.file-max = 9\n"}),
]


@pytest.mark.parametrize("files", [c[1] for c in PROCPS_CASES], ids=[c[0] for c in PROCPS_CASES])
def test_procps_sysctl_system_matches_the_real_one(sysctl_chroot, files):
    sysctl_chroot.keys = KEYS
    sysctl_chroot.reset()
    build(sysctl_chroot.root, files)
    real = sysctl_chroot.run("procps")
    mine = {k: v for k, (v, _) in tuneup_view(sysctl_chroot.root, {}, "procps").items()}
    assert real == mine


@pytest.mark.parametrize("late", ["zz-later.conf", "~local.conf", "über-tuning.conf"])
def test_fix_file_wins_under_the_real_systemd_sysctl(sysctl_chroot, tmp_path, late):
    """The issue's case: the key set in etc/sysctl.conf (linked as 99-sysctl.conf) and in a vendor
    file that sorts late; `tuneup fix` output, installed, must be what systemd-sysctl applies last."""
    import subprocess
    import sys

    key = "net/ipv4/tcp_abort_on_overflow"
    tree = {"etc/sysctl.conf": "net.ipv4.tcp_abort_on_overflow = 1\n",
            "etc/sysctl.d/99-sysctl.conf": ("link", "../sysctl.conf"),
            f"usr/lib/sysctl.d/{late}": "net.ipv4.tcp_abort_on_overflow = 1\n"}
    root = tmp_path / "tree"
    build(root, tree)
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tuneup", "fix", "--root", str(root), "-p", "web", "--out-dir", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sysctl_chroot.keys = [key]
    sysctl_chroot.reset()
    build(sysctl_chroot.root, tree)
    (sysctl_chroot.root / "etc/sysctl.d").mkdir(parents=True, exist_ok=True)
    for p in (out / "etc/sysctl.d").iterdir():
        (sysctl_chroot.root / "etc/sysctl.d" / p.name).write_bytes(p.read_bytes())
    assert sysctl_chroot.run("systemd")[key] == "0"
