"""Fixtures for the socket census tests: a throwaway network namespace holding a known TCP scene.

Only per-namespace keys are written, and only inside the namespace. Everything started here is
stopped by pid and the namespace deleted in a finalizer, whatever happens in the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import can_netns   # tests/conftest.py

from .sockets_scene import PORT_RANGE, SCENE

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


@dataclass
class SceneNs:
    name: str
    pid: int

    def run(self, *args: str, check: bool = True, cwd: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *args], capture_output=True,
                              text=True, check=check, timeout=60, cwd=cwd)

    def py(self, code: str) -> str:
        """Run python code inside the namespace with the repository importable; its stdout."""
        prog = f"import sys; sys.path.insert(0, {str(REPO)!r})\n" + code
        return self.run(sys.executable, "-c", prog).stdout

    def census_json(self, method: str, scope: str = "all") -> dict:
        out = self.py(
            "import json\n"
            "from tuneup.facts.sockets import census\n"
            "from tuneup.facts.counters import read_counters\n"
            "from tuneup.facts.sockets_render import to_json_dict, census_facts\n"
            f"c = census({method!r}, scope={scope!r})\n"
            "k = read_counters()\n"
            "d = to_json_dict(c, k)\n"
            "d['_inodes'] = [x.inode for x in c.listeners]\n"
            "d['_facts'] = census_facts(c, k)\n"
            "d['_distinct'] = c.ephemeral.distinct_destinations\n"
            "print(json.dumps(d))\n")
        return json.loads(out)


def _new_netns():
    why = can_netns()
    if why:
        pytest.skip(why)
    name = f"tuneup-t-{uuid.uuid4().hex[:10]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    return name


def _sysctl(name: str, key: str, value: str) -> None:
    subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{key}={value}"], check=True,
                   timeout=30)


@pytest.fixture(scope="module")
def scene():
    """A namespace with the SCENE built and held by a helper process; yields SceneNs."""
    name = _new_netns()
    helper = None
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                       timeout=30)
        _sysctl(name, "net.ipv4.ip_local_port_range", f"{PORT_RANGE[0]} {PORT_RANGE[1]}")
        helper = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, str(HERE / "sockets_scene.py"), json.dumps(SCENE)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = helper.stdout.readline()
        if not line:
            raise RuntimeError(f"scene helper failed: {helper.stderr.read()}")
        info = json.loads(line)
        yield SceneNs(name, info["pid"])
    finally:
        if helper is not None:
            try:
                helper.kill()
            except ProcessLookupError:
                pass
            helper.wait(timeout=30)
            for f in (helper.stdin, helper.stdout, helper.stderr):
                f.close()
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)


@pytest.fixture
def empty_netns():
    """A bare namespace (lo up) for tests that build their own sockets."""
    name = _new_netns()
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True,
                       timeout=30)
        yield SceneNs(name, 0)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=30)
