"""Fixtures for the fix/apply/rollback tests: throwaway network namespaces and filesystem trees.

Only per-namespace keys are ever written to a kernel, and only inside a namespace created here
(tuneup-fx-<random>), which a finalizer deletes whatever happens. Host-global values are read
before and after to prove they were not touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from conftest import Netns as BaseNetns
from conftest import tuneup_cmd

from tuneup.model import Fact, Snapshot

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# host-global keys a broken apply could touch; compared before and after every netns test
HOST_GLOBAL = ("fs.file-max", "fs.nr_open", "net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans",
               "net.core.netdev_max_backlog", "net.core.rmem_max", "kernel.pid_max", "vm.max_map_count")

HOST = {"hostname": "fx-host", "kernel": "6.1.0", "kernel_version": [6, 1, 0], "arch": "x86_64",
        "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096,
        "netns": "initial", "netns_evidence": "test"}


def snapshot(values: dict, *, host: dict | None = None, sources: dict | None = None, origin: str = "test") -> Snapshot:
    facts = {k: Fact(k, tuple(v) if isinstance(v, list) else v, (sources or {}).get(k, f"test:{k}"))
             for k, v in values.items()}
    return Snapshot(host={**HOST, **(host or {})}, facts=facts, origin=origin)


def host_values() -> dict[str, str]:
    out = {}
    for k in HOST_GLOBAL:
        try:
            out[k] = Path("/proc/sys/" + k.replace(".", "/")).read_text()
        except OSError:
            out[k] = "<absent>"
    return out


class Netns(BaseNetns):
    def tuneup(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        env = {**os.environ, "NO_COLOR": "1"}
        return self.run(*tuneup_cmd(), *args, check=check, env=env)

    def set(self, key: str, value: str) -> None:
        assert key.startswith("net."), "only per-namespace keys are written in tests"
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def get(self, key: str) -> str:
        return self.run("sysctl", "-n", key).stdout.strip()


@pytest.fixture
def fx_netns():
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 'ip' is not installed")
    name = f"tuneup-fx-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    before = host_values()
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield Netns(name)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert host_values() == before, "a host-global value changed"


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p
