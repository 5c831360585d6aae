"""A wheelhouse for the install tests: the connected machine's `pip download`, then everything else
offline (in a fresh network namespace with no network when root: `unshare -n`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuneup.compat import tomllib

REPO = Path(__file__).resolve().parent.parent.parent
DIST = "tuneup-limits"


def offline_env() -> dict:
    """No pip configuration (this machine's index mirrors and find-links), no proxies."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIP_", "VIRTUAL_ENV")) and "proxy" not in k.lower()}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def offline(argv: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run argv with no network: in a new, empty network namespace (only a down loopback)."""
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "-n", "--", *argv]
    out = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=offline_env(), timeout=timeout)
    assert out.returncode == 0, f"{argv}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="session")
def deps_wheelhouse(tmp_path_factory) -> Path:
    """The connected machine's step: `pip download` of tuneup's dependencies and its build backend.

    TUNEUP_WHEELHOUSE names a prebuilt one (copied, never written); otherwise pip downloads into a
    temporary one (from pip's cache when it has the files)."""
    wh = tmp_path_factory.mktemp("wheelhouse")
    pre = os.environ.get("TUNEUP_WHEELHOUSE")
    if pre:
        for f in Path(pre).iterdir():
            shutil.copy2(f, wh)
        return wh
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    out = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wh), "--only-binary=:all:",
                          "hatchling", *deps], capture_output=True, text=True, timeout=400)
    if out.returncode != 0:
        pytest.skip("pip download failed (no package index from here?): " + out.stderr.strip()[-300:])
    return wh


def clean_copy(dest: Path) -> Path:
    """The files a clone has (tracked, plus new files not ignored), as a fresh checkout would."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest




@pytest.fixture(scope="session")
def tuneup_wheelhouse(tmp_path_factory, deps_wheelhouse) -> Path:
    """deps_wheelhouse plus tuneup-limits' own wheel, built offline from a clean copy."""
    base = tmp_path_factory.mktemp("tuneup-wheelhouse")
    wh = base / "wheelhouse"
    shutil.copytree(deps_wheelhouse, wh)
    src = clean_copy(base / "src")
    offline([sys.executable, "-m", "pip", "wheel", "-q", "--no-index", "--find-links", str(wh), "--no-deps",
             "-w", str(wh), str(src)], base)
    assert list(wh.glob("tuneup_limits-*.whl"))
    return wh
