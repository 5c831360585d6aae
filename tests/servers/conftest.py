"""Real servers from Debian packages, started in a throwaway network namespace on loopback with
small configs in a temp dir (never the package's /etc config, never its service), stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid

import pytest
from conftest import can_netns, tuneup_cmd  # noqa: F401 (tests/conftest.py; tuneup_cmd re-exported)


class Ns:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pids: list[int] = []

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, **kw)
        self.pids.append(p.pid)
        return p

    def run(self, *argv: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], capture_output=True, text=True,
                              check=check, timeout=timeout)

    def adopt(self, pid: int) -> None:
        self.pids.append(pid)

    def wait_port(self, port: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.run("python3", "-c", f"import socket; socket.create_connection(('127.0.0.1', {port}), 1)",
                         check=False)
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"nothing listens on 127.0.0.1:{port} in {self.name}")


def need(*tools: str) -> None:
    why = can_netns()
    if why:
        pytest.skip(why)
    for t in tools:
        if shutil.which(t) is None and not os.path.exists(f"/usr/sbin/{t}"):
            pytest.skip(f"{t} is not installed (Debian package in .ci/apt-packages)")


@pytest.fixture
def ns():
    why = can_netns()
    if why:
        pytest.skip(why)
    name = f"tH-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    n = Ns(name)
    try:
        n.run("ip", "link", "set", "lo", "up")
        yield n
    finally:
        for pid in reversed(n.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        time.sleep(0.3)
        for pid in n.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
        subprocess.run(["ip", "netns", "del", name], check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
