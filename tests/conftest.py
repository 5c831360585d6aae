"""Shared fixtures: in-memory snapshots, throwaway network namespaces, the installed CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tuneup.model import Fact, Snapshot

REPO = Path(__file__).resolve().parent.parent

HOST = {
    "hostname": "test-host", "kernel": "6.1.0-13-amd64", "kernel_version": [6, 1, 0], "arch": "x86_64",
    "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096,
    "netns": "initial", "netns_evidence": "test",
}


# A stock Debian 12 host's values for the core keys (tuned nothing): shared by CLI, format and fleet tests.
STOCK = {
    "fs.file-max": 2466174, "fs.nr_open": 1048576, "fs.file-nr": (99, 0, 2466174),
    "net.core.somaxconn": 128, "net.ipv4.tcp_max_syn_backlog": 128, "net.ipv4.tcp_syncookies": 1,
    "net.ipv4.ip_local_port_range": (32768, 60999), "net.ipv4.tcp_tw_reuse": 2, "net.ipv4.tcp_tw_recycle": None,
    "net.ipv4.tcp_max_tw_buckets": 131072, "net.ipv4.tcp_fin_timeout": 60, "net.core.netdev_max_backlog": 1000,
    "net.ipv4.tcp_mem": (287898, 383866, 575796), "net.ipv4.tcp_abort_on_overflow": 0,
    "net.ipv4.tcp_max_orphans": 131072, "rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 524288,
    "net.netfilter.nf_conntrack_max": 262144,
}


def make_snapshot(values: dict, *, host: dict | None = None, errors: dict | None = None,
                  processes: list | None = None) -> Snapshot:
    """A Snapshot from {key: value}; value None = absent; errors = {key: "permission denied"}."""
    facts = {k: Fact(k, tuple(v) if isinstance(v, list) else v, f"test:{k}") for k, v in values.items()}
    for k, err in (errors or {}).items():
        facts[k] = Fact(k, None, f"test:{k}", error=err)
    return Snapshot(host={**HOST, **(host or {})}, facts=facts, processes=processes or [], origin="test")


def tuneup_cmd() -> list[str]:
    """The installed console script when there is one (CI installs the wheel), else python -m."""
    script = Path(sys.executable).parent / "tuneup"
    if script.exists():
        return [str(script)]
    found = shutil.which("tuneup")
    return [found] if found else [sys.executable, "-m", "tuneup"]


def can_netns() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "iproute2 'ip' is not installed"
    return None


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name

    def run(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True, text=True,
                              check=check, timeout=120, **kw)

    def sysctl(self, key: str, value: str) -> None:
        """Write a per-namespace key inside this namespace only."""
        self.run("sysctl", "-q", "-w", f"{key}={value}")


@pytest.fixture
def netns():
    why = can_netns()
    if why:
        pytest.skip(why)
    name = f"tuneup-t-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
