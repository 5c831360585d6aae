"""Real Debian packages for the offline (config tree) tests.

The packages are downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into a cache
directory under /tmp (never installed). systemd-sysctl and procps `sysctl` are run in a chroot
whose proc/sys is a plain directory of files, inside a new network namespace: they cannot reach the
running kernel, and what they "write" is read back from those files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CACHE = Path(os.environ.get("TUNEUP_DEB_CACHE", "/tmp/tuneup-debcache"))
PACKAGES = ("systemd", "procps", "libproc2-0", "tuned", "libsystemd-shared")


def _download(pkg: str) -> Path | None:
    """The cached .deb of pkg, downloaded first when missing. CI runs several suites at once
    against one cache: a download lands in a private directory and is renamed into place, so no
    suite ever sees a half-written package."""
    found = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if found:
        return found[-1]
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=CACHE))
    try:
        subprocess.run(["apt-get", "download", pkg], cwd=tmp, capture_output=True, timeout=300)
        for deb in tmp.glob(f"{pkg}_*.deb"):
            os.replace(deb, CACHE / deb.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    found = sorted(CACHE.glob(f"{pkg}_*.deb"))
    return found[-1] if found else None


def unpack(pkg: str, dest: Path) -> None:
    deb = _download(pkg)
    if deb is None:
        pytest.skip(f"apt-get download {pkg} failed (no package registry reachable)")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)


@pytest.fixture(scope="session")
def packages() -> Path:
    """Every package of PACKAGES unpacked into one directory (cached across runs)."""
    if shutil.which("dpkg-deb") is None or shutil.which("apt-get") is None:
        pytest.skip("needs dpkg-deb and apt-get (a Debian system)")
    out = CACHE / "unpacked"
    stamp = out / ".tuneup-complete"
    if stamp.exists():
        return out
    # unpacked privately, then renamed into place whole: suites running at once never see a
    # half-unpacked tree, and the first to finish wins
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpacked-", dir=CACHE))
    try:
        for pkg in PACKAGES:
            unpack(pkg, tmp)
    except BaseException:           # a skip (no registry) or a failure: leave no partial tree behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".tuneup-complete").write_text("")
    try:
        os.rename(tmp, out)
    except OSError:                 # out exists: another suite's finished tree, or a stale partial one
        if not stamp.exists():
            stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=CACHE))
            try:
                os.rename(out, stale / "unpacked")
                os.rename(tmp, out)
            except OSError:
                pass
            shutil.rmtree(stale, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    assert stamp.exists(), f"{out}: no complete unpacked tree"
    return out


def _libs(binary: Path, extra_paths: list[str]) -> list[str]:
    env = {**os.environ, "LD_LIBRARY_PATH": ":".join(extra_paths)}
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, env=env).stdout
    libs = []
    for line in out.splitlines():
        for tok in line.split():
            if tok.startswith("/"):
                libs.append(tok)
    return libs


class SysctlChroot:
    """A chroot with the real systemd-sysctl and procps sysctl; the tree under test is written
    into it (etc/, run/, usr/, lib/ sysctl.d) and proc/sys is a directory of empty files."""

    TREE_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")

    def __init__(self, root: Path, keys: list[str]) -> None:
        self.root = root
        self.keys = keys     # slash paths under proc/sys

    def reset(self) -> None:
        for d in self.TREE_DIRS:
            shutil.rmtree(self.root / d, ignore_errors=True)
        for f in ("etc/sysctl.conf",):
            p = self.root / f
            if p.exists() or p.is_symlink():
                p.unlink()
        shutil.rmtree(self.root / "proc", ignore_errors=True)
        for k in self.keys:
            p = self.root / "proc/sys" / k
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("")

    def run(self, which: str = "systemd") -> dict[str, str]:
        """Run the applier; key path -> the value it wrote (keys it did not write are left out)."""
        cmd = ["/tuneup-bin/systemd-sysctl"] if which == "systemd" else ["/tuneup-bin/sysctl", "--system", "-q"]
        subprocess.run(["unshare", "-n", "chroot", str(self.root), *cmd], capture_output=True, timeout=60,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL": "err"})
        out = {}
        for k in self.keys:
            v = (self.root / "proc/sys" / k).read_text()
            if v:
                out[k] = v.strip()
        return out


@pytest.fixture(scope="session")
def sysctl_chroot(packages):
    if os.geteuid() != 0 or shutil.which("unshare") is None or shutil.which("ldd") is None:
        pytest.skip("needs root, unshare and ldd to run systemd-sysctl in a chroot")
    # our own directory: pytest's basetemp is pruned by concurrent pytest runs of the same user
    root = Path(tempfile.mkdtemp(prefix="tuneup-sysctl-chroot-"))
    try:
        yield _build_chroot(root, packages)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _build_chroot(root: Path, packages: Path) -> SysctlChroot:
    (root / "tuneup-bin").mkdir()
    extra = [str(packages / "lib/x86_64-linux-gnu"), str(packages / "usr/lib/x86_64-linux-gnu"),
             str(packages / "usr/lib/x86_64-linux-gnu/systemd"), str(packages / "lib/x86_64-linux-gnu/systemd")]
    for src, name in ((packages / "lib/systemd/systemd-sysctl", "systemd-sysctl"), (packages / "sbin/sysctl", "sysctl")):
        if not src.exists():
            pytest.skip(f"{src} not in the unpacked packages")
        shutil.copy2(src, root / "tuneup-bin" / name)
        for lib in _libs(src, extra):
            dst = root / lib.lstrip("/")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                shutil.copy2(lib, dst)
    # systemd-sysctl is linked against libsystemd-shared in its private directory
    for lib in (packages / "usr/lib/x86_64-linux-gnu/systemd").glob("libsystemd-shared-*.so"):
        dst = root / "usr/lib/x86_64-linux-gnu/systemd" / lib.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, dst)
    (root / "dev").mkdir()
    (root / "dev/null").write_text("")    # a masking symlink to /dev/null points at an empty file
    return SysctlChroot(root, [])
