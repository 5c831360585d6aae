"""Snapshots round-trip, and every kind of broken snapshot is a one-line error with a JSON path."""

from __future__ import annotations

import json

import pytest
from conftest import make_snapshot

from tuneup import snapshot
from tuneup.errors import SnapshotError
from tuneup.model import RLIM_INFINITY


def test_round_trip_keeps_types_and_states():
    snap = make_snapshot({"net.ipv4.tcp_mem": (1, 2, 3), "net.core.somaxconn": 4096, "x.absent": None,
                          "rlimit.nofile.hard": RLIM_INFINITY, "net.ipv4.tcp_congestion_control": "cubic"},
                         errors={"fs.file-max": "permission denied"}, processes=[{"pid": 7, "name": "nginx"}])
    text = snapshot.dumps(snap)
    assert json.loads(text)["schema"] == "tuneup.snapshot/1"
    back = snapshot.loads(text, "s.json")
    assert back.facts == snap.facts
    assert back.host == snap.host and back.processes == snap.processes
    assert back.facts["x.absent"].absent and not back.facts["fs.file-max"].absent


@pytest.mark.parametrize("text,pattern", [
    ('{"schema": "tuneup.snapshot/1", "host": {', r"s.json:1:\d+: invalid JSON"),
    ('[]', r"\$: not a JSON object"),
    ('{"schema": "other/1"}', r"\$.schema: not a tuneup snapshot"),
    ('{"schema": "tuneup.snapshot/9"}', r"unsupported version"),
    ('{"schema": "tuneup.snapshot/1", "host": {"hostname": "h"}, "facts": {}}', r"\$.host.kernel"),
    ('{"schema": "tuneup.snapshot/1", "host": {"hostname": "h", "kernel": "6"}}', r"\$.facts: missing"),
    ('{"schema": "tuneup.snapshot/1", "host": {"hostname": "h", "kernel": "6"}, "facts": {"a": 1}}',
     r'\$.facts\["a"\]: must be an object'),
    ('{"schema": "tuneup.snapshot/1", "host": {"hostname": "h", "kernel": "6"}, "facts": {"a": {"value": {"x": 1}}}}',
     r'\$.facts\["a"\].value: expected'),
    ('{"schema": "tuneup.snapshot/1", "host": {"hostname": "h", "kernel": "6", "cpus": -1}, "facts": {}}',
     r"\$.host.cpus: must be a positive integer"),
])
def test_bad_snapshots(text, pattern):
    with pytest.raises(SnapshotError, match=pattern):
        snapshot.loads(text, "s.json")


def test_missing_file():
    with pytest.raises(SnapshotError, match="no such file"):
        snapshot.load("/nonexistent/snap.json")
