"""Fuzzing the apply-record loader (hypothesis): whatever the record holds, rollback ends with a
one-line TuneupError (exit 2) or a valid record, never another exception (exit 3), never a hang
(hypothesis deadline per example; subprocess timeout for the CLI sample)."""

from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from conftest import tuneup_cmd  # noqa: E402
from tuneup.errors import TuneupError  # noqa: E402
from tuneup.fixes import apply as applymod  # noqa: E402

KEYS = applymod.sysctl_keys()
GOOD = {"schema": applymod.STATE_SCHEMA, "applied_at": "2026-12-03T23:00:00+00:00", "live": True,
        "netns_inode": 4026531840, "complete": True, "dirs": ["var/lib/tuneup", "etc/systemd/system"],
        "files": [{"path": "etc/sysctl.d/60-tuneup.conf", "created": False, "done": True,
                   "data": base64.b64encode(b"\xe9\x00old").decode(), "uid": 0, "gid": 0, "mode": 0o600},
                  {"path": "etc/systemd/system/web.service.d/60-tuneup-limits.conf", "created": True, "done": False}],
        "sysctls": [{"key": "net.core.somaxconn", "before": "4096", "value": "65535", "done": True}]}
CLI_CASES = 8
OUTCOMES: collections.Counter = collections.Counter()

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
                      st.floats(allow_nan=False), st.text(max_size=40),
                      st.sampled_from(["../x", "/etc/passwd", "etc/sysctl.d/../../x", "kernel.core_pattern",
                                       "net.core.somaxconn", "etc/sysctl.d/a", "var/lib/tuneup", "4026531840",
                                       "|/tmp/x", "0", "-1", "aGVsbG8=", "1 2 3"]))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=5),
                                                          st.dictionaries(st.text(max_size=10), c, max_size=5)),
                          max_leaves=30)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


ALL_PATHS = list(_paths(GOOD))
ROOT_RECORD = {**GOOD, "live": False, "sysctls": [], "netns_inode": None}     # a --root apply's record
ROOT_PATHS = list(_paths(ROOT_RECORD))


def _set(rec, path, value):
    if not path:
        return value
    rec = json.loads(json.dumps(rec))
    node = rec
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return rec


def _check(data, live: bool) -> str:
    """Validate one record: "valid" or "refused" (a one-line TuneupError); any other exception fails."""
    try:
        applymod.validate_record(data, "state.json", live, KEYS)
        OUTCOMES["valid"] += 1
        return "valid"
    except TuneupError as exc:
        assert "\n" not in str(exc)
        OUTCOMES["refused (exit 2)"] += 1
        return "refused"


@settings(max_examples=600, deadline=2000, database=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(ALL_PATHS), value=json_value, live=st.booleans())
def test_one_field_replaced_by_anything(path, value, live):
    assert _check(_set(GOOD, path, value), live) in ("valid", "refused")


@settings(max_examples=300, deadline=2000, database=None, suppress_health_check=list(HealthCheck))
@given(data=json_value, live=st.booleans())
def test_any_json_document(data, live):
    got = _check(data, live)
    assert got in ("valid", "refused")
    if not isinstance(data, dict):
        assert got == "refused"        # a record is a JSON object; anything else is never valid


@settings(max_examples=200, deadline=2000, database=None, suppress_health_check=list(HealthCheck))
@given(pos=st.integers(min_value=0, max_value=10**6), junk=st.binary(min_size=1, max_size=8))
def test_corrupted_bytes_through_the_file_loader(tmp_path_factory, pos, junk):
    if os.geteuid() != 0:
        pytest.skip("the record must be owned by root")
    raw = json.dumps({**GOOD, "live": False, "sysctls": [], "netns_inode": None}).encode()
    pos %= len(raw)
    raw = raw[:pos] + junk + raw[pos + len(junk):]
    root = tmp_path_factory.mktemp("tA-fuzz")
    p = root / applymod.STATE
    p.parent.mkdir(parents=True)
    p.write_bytes(raw)
    p.chmod(0o600)
    try:
        applymod.load_state(root, KEYS)
        OUTCOMES["valid"] += 1
    except TuneupError as exc:
        assert "\n" not in str(exc)
        OUTCOMES["refused (exit 2)"] += 1


def test_cli_sample_exit_codes(tmp_path):
    """CLI_CASES fuzzed records through `tuneup rollback --root`: exit 2 with one line each, or 0."""
    if os.geteuid() != 0:
        pytest.skip("rollback runs as root")
    codes: collections.Counter = collections.Counter()

    @settings(max_examples=CLI_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(ROOT_PATHS), value=json_value)
    def one(path, value):
        root = Path(tempfile.mkdtemp(prefix="r", dir=tmp_path))
        p = root / applymod.STATE
        p.parent.mkdir(parents=True)
        p.write_text(json.dumps(_set(ROOT_RECORD, path, value)))
        p.chmod(0o600)
        r = subprocess.run([*tuneup_cmd(), "rollback", "--root", str(root)], capture_output=True, text=True, timeout=60)
        codes[r.returncode] += 1
        assert r.returncode in (0, 1, 2), r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) <= 1, r.stderr

    one()
    assert set(codes) <= {0, 1, 2} and sum(codes.values()) >= CLI_CASES
    print(f"\nrecord fuzz: in-process {dict(OUTCOMES)}; CLI exit codes {dict(codes)}")
