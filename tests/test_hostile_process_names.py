"""A process whose name is not UTF-8 (comm is any 15 bytes) must not turn an audit into an
internal error: a real listening process named b"\\xff\\xfebad" on loopback, a real CLI run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import ctypes, socket, sys
ctypes.CDLL(None).prctl(15, b"\xff\xfebad", 0, 0, 0)       # PR_SET_NAME: /proc/PID/comm
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_audit_survives_a_listener_with_a_non_utf8_name(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip().isdigit()
        for args in (["audit", "-f", "json", "--fail-on", "never"], ["sockets", "--format", "json"]):
            res = subprocess.run([sys.executable, "-m", "tuneup", *args], capture_output=True, cwd=tmp_path)
            assert res.returncode == 0, res.stderr.decode(errors="replace")[-500:]
    finally:
        child.kill()
        child.wait()
