"""Fixtures for capacity and probe tests: throwaway network namespaces named tuneup-cap-*.

Only per-namespace keys are written, and only inside the namespace. Every process started here is
stopped by pid and the namespace deleted in a finalizer, whatever happens in the test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent


def tuneup_cmd() -> list[str]:
    """The installed console script beside this interpreter when there is one, else python -m."""
    script = Path(sys.executable).parent / "tuneup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuneup"]


def netns_skip_reason(*tools: str) -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a network namespace"
    for tool in ("ip", "ss", *tools):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed"
    return None


def snmp(text: str) -> dict[str, dict[str, int]]:
    """/proc/net/snmp text -> {"Tcp": {"ActiveOpens": n, ...}, "Ip": {...}, ...}."""
    out: dict[str, dict[str, int]] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        sec, _, names = head.partition(":")
        out[sec] = {k: int(v) for k, v in zip(names.split(), vals.partition(":")[2].split())}
    return out


class CapNs:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen] = []

    def run(self, *args: str, check: bool = False, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True, text=True,
                              check=check, timeout=timeout, **kw)

    def sysctl(self, key: str, value: str) -> None:
        """Write a per-namespace key inside this namespace only."""
        self.run("sysctl", "-q", "-w", f"{key}={value}", check=True)

    def tuneup(self, *args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        return self.run(*prefix, *tuneup_cmd(), *args)

    def tuneup_json(self, *args: str, prefix: tuple[str, ...] = ()) -> tuple[int, dict, str]:
        p = self.tuneup(*args, "-f", "json", prefix=prefix)
        assert p.stdout, p.stderr
        return p.returncode, json.loads(p.stdout), p.stderr

    def snmp(self) -> dict[str, dict[str, int]]:
        return snmp(self.run("cat", "/proc/net/snmp", check=True).stdout)

    def spawn(self, *args: str) -> subprocess.Popen:
        """A long-running process inside the namespace (ip netns exec execs it: same pid)."""
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *args], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def pids(self) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True).stdout
        return [int(x) for x in out.split()]

    def tcp_states(self) -> dict[str, int]:
        """TCP sockets in the namespace per state, as ss names them (ESTAB, LISTEN, TIME-WAIT...)."""
        out = self.run("ss", "-Htan", check=True).stdout
        states: dict[str, int] = {}
        for line in out.splitlines():
            if line.split():
                states[line.split()[0]] = states.get(line.split()[0], 0) + 1
        return states

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=10)
            for s in (p.stdout, p.stderr):
                if s:
                    s.close()
        # anything else still inside (a probe's listener): by pid
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)


def _make(tools: tuple[str, ...]):
    why = netns_skip_reason(*tools)
    if why:
        pytest.skip(why)
    ns = CapNs(f"tuneup-cap-{uuid.uuid4().hex[:8]}")
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        ns.run("ip", "link", "set", "lo", "up", check=True)
    except Exception:
        ns.close()
        raise
    return ns


@pytest.fixture
def capns():
    """A fresh network namespace with only lo up (no route out)."""
    ns = _make(())
    try:
        yield ns
    finally:
        ns.close()


@pytest.fixture
def capns_prlimit():
    ns = _make(("prlimit",))
    try:
        yield ns
    finally:
        ns.close()
