"""The hostile-tree corpus (hostile_cases.py) against apply, rollback and --out-dir.

Every case is refused (one line, exit 2, nothing written) or restored exactly, and after every case
a sentinel tree outside the root and the initial network namespace's sysctl values are compared
with their values before. Most cases call tuneup.fixes.apply in-process (the same code the CLI runs;
a TuneupError is what the CLI turns into exit 2, anything else would be exit 3); a sample goes
through the CLI to check the exit code and the one line. The live-root cases run in a throwaway
netns and a private mount namespace (nsdriver.py).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tuneup_cmd
from tuneup.errors import TuneupError, UsageError
from tuneup.fixes import apply as applymod

from . import hostile_cases as H
from .journal_util import (BAD, BINARY, LATIN1, LIVE_MOUNTS, ROOT_TREE, SERVICE, SYSCTL_CONF, UTF8, TANetns,
                           capture, entry, initial_values, need_root_ns, plan_for, plant)

TALLY: dict[str, int] = {}


def _count(kind: str) -> None:
    TALLY[kind] = TALLY.get(kind, 0) + 1


@pytest.fixture(scope="module")
def plan():
    if os.geteuid() != 0:
        pytest.skip("apply and rollback run as root")
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tA-plan-") as d:
        plant(Path(d), ROOT_TREE)
        return plan_for(Path(d))


@pytest.fixture
def world(tmp_path):
    """(root, sentinel): the root from ROOT_TREE, the sentinel a mirror of it outside the root."""
    root, sentinel = tmp_path / "root", tmp_path / "sentinel"
    plant(root, ROOT_TREE)
    plant(sentinel, ROOT_TREE)
    (sentinel / "var/lib/tuneup").mkdir(parents=True)
    (sentinel / "var/lib/tuneup/state.json").write_text("sentinel record\n")
    (sentinel / "apply.sh").write_text("#!/bin/sh\necho sentinel\n")
    return root, sentinel


def _unchanged(root: Path, sentinel: Path, before_root: dict, before_sentinel: dict, host: dict) -> None:
    assert capture(sentinel) == before_sentinel, "the sentinel tree outside the root changed"
    assert capture(root) == before_root, "the root changed"
    assert initial_values() == host, "a sysctl of the initial network namespace changed"


def _symlink_at(root: Path, sentinel: Path, prefix: str) -> None:
    p = root / prefix
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(sentinel / prefix)


def _prefixes(paths) -> list[str]:
    out = []
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            pre = "/".join(parts[:i])
            if pre not in out:
                out.append(pre)
    return out


@pytest.mark.parametrize("prefix", _prefixes(H.WRITTEN_PATHS))
def test_apply_refuses_a_symlink_at_any_component(plan, world, prefix):
    root, sentinel = world
    _symlink_at(root, sentinel, prefix)
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    with pytest.raises(UsageError) as e:
        applymod.apply(*plan, root, force=True)
    msg = str(e.value)
    assert "\n" not in msg and ("symbolic link" in msg or "not a regular file" in msg or "not been rolled back" in msg), msg
    _unchanged(root, sentinel, before, sbefore, host)
    _count("apply: symlinked component")


@pytest.mark.parametrize("prefix", _prefixes(H.WRITTEN_PATHS))
def test_rollback_refuses_a_symlink_at_any_component(plan, world, prefix):
    root, sentinel = world
    applymod.apply(*plan, root, force=True)
    if prefix.startswith("var"):
        # the record itself behind a symlink: mirror the genuine record into the sentinel first
        shutil.copy2(root / applymod.STATE, sentinel / applymod.STATE)
    _symlink_at(root, sentinel, prefix)
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    with pytest.raises(UsageError) as e:
        applymod.rollback(root)
    assert "\n" not in str(e.value)
    _unchanged(root, sentinel, before, sbefore, host)
    _count("rollback: symlinked component")


@pytest.mark.parametrize("prefix", _prefixes(H.OUT_DIR_PATHS))
def test_out_dir_refuses_a_symlink_at_any_component(plan, tmp_path, prefix):
    from tuneup.cli import write_tree

    out, sentinel = tmp_path / "out", tmp_path / "sentinel"
    for rel in H.OUT_DIR_PATHS:
        for d in (out, sentinel):
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text("there before\n")
    _symlink_at(out, sentinel, prefix)
    before, sbefore, host = capture(out), capture(sentinel), initial_values()
    with pytest.raises(UsageError) as e:
        write_tree(plan[1], out, True)
    assert "symbolic link" in str(e.value) or "not a regular file" in str(e.value)
    assert capture(sentinel) == sbefore and initial_values() == host
    # refused before anything was written: every file under out is as it was
    assert capture(out) == before
    _count("--out-dir: symlinked component")


def test_out_dir_refuses_dot_dot_and_absolute(tmp_path):
    from tuneup.cli import write_tree

    for bad in ("../escape.conf", "/etc/escape.conf", "etc/../../escape.conf", "etc//x"):
        with pytest.raises(UsageError):
            write_tree({bad: "x", "etc/ok.conf": "y"}, tmp_path / "out", True)
        assert not (tmp_path / "escape.conf").exists() and not (tmp_path / "out" / "etc" / "ok.conf").exists()
        _count("--out-dir: path leaving the root")


def test_planted_temp_names_are_never_followed(plan, world):
    root, sentinel = world
    d = root / "etc/sysctl.d"
    (d / ".60-tuneup.conf.tuneup-tmp").symlink_to(sentinel / SYSCTL_CONF)      # the old predictable name
    for i in range(64):                                                         # guesses at the new ones
        (d / f".tuneup-{i:016x}.tmp").symlink_to(sentinel / "etc/sysctl.d/50-bad.conf")
    sbefore, host = capture(sentinel), initial_values()
    applymod.apply(*plan, root, force=True)
    assert capture(sentinel) == sbefore and initial_values() == host
    assert (d / ".60-tuneup.conf.tuneup-tmp").is_symlink() and len(list(d.glob(".tuneup-*.tmp"))) == 64
    applymod.rollback(root)
    _count("planted temp names")


@pytest.mark.parametrize("kind", ["fifo", "dir", "setuid", "symlink"])
def test_apply_refuses_a_target_that_is_not_a_plain_file(plan, world, kind):
    root, sentinel = world
    t = root / SYSCTL_CONF
    t.unlink()
    if kind == "fifo":
        os.mkfifo(t)
    elif kind == "dir":
        t.mkdir()
    elif kind == "setuid":
        t.write_bytes(b"x")
        t.chmod(0o4755)
    else:
        t.symlink_to(sentinel / SYSCTL_CONF)
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    with pytest.raises(UsageError):
        applymod.apply(*plan, root, force=True)
    _unchanged(root, sentinel, before, sbefore, host)
    _count(f"apply: target is a {kind}")


@pytest.mark.parametrize("content,mode,owner", [(UTF8, 0o644, (0, 0)), (LATIN1, 0o600, (65534, 65534)),
                                                (BINARY, 0o640, (0, 65534)), (b"", 0o400, (1, 1))],
                         ids=["utf8", "latin1-0600-other-owner", "binary-0640", "empty-0400"])
def test_pre_existing_files_are_restored_exactly(plan, world, content, mode, owner):
    root, sentinel = world
    t = root / SYSCTL_CONF
    t.write_bytes(content)
    os.chown(t, *owner)
    t.chmod(mode)
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    applymod.apply(*plan, root, force=True)
    st = t.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (*owner, mode)      # replaced keeping owner and mode
    assert applymod.rollback(root).ok
    _unchanged(root, sentinel, before, sbefore, host)
    _count("pre-existing file restored")


# -- tampered records --------------------------------------------------------------------------------
def _mutate(rec: dict, path: list, value) -> object:
    if not path:
        return value
    rec = copy.deepcopy(rec)
    *head, last = path
    node = rec
    for k in head:
        node = node[k]
    if last == "DUP":
        node.append(copy.deepcopy(node[0]))
    elif last in ("ADD", "ADD+NULLNS"):
        node.append(value)
        if last == "ADD+NULLNS":
            rec["netns_inode"] = None
    elif value == "DEL":
        del node[last]
    elif isinstance(node, list) and last >= len(node):
        node.append(value)
    else:
        node[last] = value
    return rec


@pytest.fixture
def applied(plan, world):
    root, sentinel = world
    applymod.apply(*plan, root, force=True)
    rec = json.loads((root / applymod.STATE).read_text())
    assert rec["dirs"], "the genuine record lists the directories it created"
    return root, sentinel, rec


def _write_record(root: Path, data: bytes) -> None:
    p = root / applymod.STATE
    p.write_bytes(data)
    os.chown(p, 0, 0)
    p.chmod(0o600)


@pytest.mark.parametrize("name,path,value", H.RECORD_MUTATIONS, ids=[m[0] for m in H.RECORD_MUTATIONS])
def test_tampered_record_is_refused(applied, name, path, value):
    root, sentinel, rec = applied
    _write_record(root, json.dumps(_mutate(rec, path, value)).encode())
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    with pytest.raises(UsageError) as e:
        applymod.rollback(root)
    assert "\n" not in str(e.value) and str(root / applymod.STATE) in str(e.value)
    _unchanged(root, sentinel, before, sbefore, host)      # record kept, nothing written
    _count("tampered record field")


def _tamper_file(root: Path, sentinel: Path, rec: dict, how: str) -> None:
    p = root / applymod.STATE
    good = json.dumps(rec).encode()
    if how == "owned by another user":
        os.chown(p, 65534, 65534)
    elif how == "group-writable":
        p.chmod(0o620)
    elif how == "world-writable":
        p.chmod(0o606)
    elif how == "a symlink to a good record elsewhere":
        elsewhere = sentinel / "good-record.json"
        elsewhere.write_bytes(good)
        elsewhere.chmod(0o600)
        p.unlink()
        p.symlink_to(elsewhere)
    elif how == "a FIFO":
        p.unlink()
        os.mkfifo(p, 0o600)
    elif how == "a directory":
        p.unlink()
        p.mkdir(0o700)
    else:
        data = {"not JSON": b"{schema: tuneup",
                "JSON nested 100000 deep": b"[" * 100000 + b"]" * 100000,
                "an integer of 5000 digits": b'{"schema": ' + b"9" * 5000 + b"}",
                "NaN": good.replace(b'"complete": true', b'"complete": NaN'),
                "invalid UTF-8": b'{"schema": "\xff\xfe"}',
                "empty": b""}[how]
        _write_record(root, data)


@pytest.mark.parametrize("how", H.RECORD_FILE_TAMPERING)
def test_tampered_record_file_is_refused(applied, how):
    root, sentinel, rec = applied
    _tamper_file(root, sentinel, rec, how)
    before, sbefore, host = capture(root), capture(sentinel), initial_values()
    with pytest.raises(TuneupError) as e:
        applymod.rollback(root)
    assert "\n" not in str(e.value)
    _unchanged(root, sentinel, before, sbefore, host)
    _count("tampered record file")


def test_cli_exit_codes_on_hostile_input(plan, world):
    """A sample through the CLI: exit 2 and one line, never a traceback or exit 3."""
    root, sentinel = world
    run = lambda *a: subprocess.run([*tuneup_cmd(), *a], capture_output=True, text=True, timeout=120)  # noqa: E731
    _symlink_at(root, sentinel, "etc/systemd")
    sbefore = capture(sentinel)
    p = run("fix", "--apply", "--force", "--root", str(root), "--service", SERVICE)
    assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "symbolic link" in p.stderr, p.stderr
    (root / "etc/systemd").unlink()
    p = run("fix", "--apply", "--force", "--root", str(root), "--service", SERVICE)
    assert p.returncode == 0, p.stderr
    rec = json.loads((root / applymod.STATE).read_text())
    for path, value in (([*H.F0, "path"], "../../x"), ([*H.F0, "mode"], 0o4755), (["netns_inode"], "x")):
        _write_record(root, json.dumps(_mutate(rec, path, value)).encode())
        p = run("rollback", "--root", str(root))
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "invalid apply record" in p.stderr, p.stderr
    _write_record(root, json.dumps(rec).encode())
    assert run("rollback", "--root", str(root)).returncode == 0
    assert capture(sentinel) == sbefore


# -- a live record (root /) in a throwaway netns and private mount namespace ------------------------
FORGE = r"""
import json, sys
p = "/var/lib/tuneup/state.json"
rec = json.load(open(p))
entry = json.loads(sys.argv[1])
for k in ("before", "value"):
    if entry.get(k) == "@current":
        entry[k] = " ".join(open("/proc/sys/" + entry["key"].replace(".", "/")).read().split()) if "/" not in entry["key"] else "0"
rec["sysctls"].append(entry)
if len(sys.argv) > 2:
    rec.update(json.loads(sys.argv[2]))
json.dump(rec, open(p, "w"))
"""


def _live(name: str, middle: list[dict], expect_refused: bool = True) -> dict:
    apply_ = {"argv": ["fix", "--apply", "--force", "--service", SERVICE]}
    return {"name": name, "mounts": [*LIVE_MOUNTS, "/mnt"], "preset": BAD, "keys": sorted(BAD),
            "watch": [*LIVE_MOUNTS, "/mnt"],
            "tree": [entry("/etc/sysctl.d/60-tuneup.conf", "file", LATIN1, 0o600, 65534, 65534),
                     entry("/mnt/tA-sentinel/etc/sysctl.d/60-tuneup.conf", "file", b"sentinel\n")],
            "commands": [apply_, *middle]}


def test_live_records_forged_or_from_another_netns_are_refused():
    need_root_ns()
    py = sys.executable
    cases = []
    for name, forged in H.LIVE_RECORD_MUTATIONS:
        cases.append(_live(name, [{"argv": f"{py} -c '{FORGE}' '{json.dumps({**forged, 'done': True})}'", "shell": True},
                                  {"argv": ["rollback"]}]))
    ok_entry = {"key": "net.core.somaxconn", "before": "@current", "value": "@current", "done": True}
    cases.append(_live("null netns inode", [
        {"argv": f"{py} -c '{FORGE}' '{json.dumps(ok_entry)}' '{json.dumps({'netns_inode': None})}'", "shell": True},
        {"argv": ["rollback"]}]))
    cases.append(_live("record owned by another user", [{"argv": "chown 65534 /var/lib/tuneup/state.json", "shell": True},
                                                        {"argv": ["rollback"]}]))
    cases.append(_live("setuid mode in the record", [
        {"argv": f"{py} -c 'import json; p=\"/var/lib/tuneup/state.json\"; r=json.load(open(p)); "
                 f"r[\"files\"][0][\"mode\"]=0o4755; json.dump(r, open(p, \"w\"))'", "shell": True},
        {"argv": ["rollback"]}]))
    with TANetns() as ns, TANetns() as other:
        host = initial_values()
        cases.append(_live("rollback from another netns", [
            {"argv": f"ip netns exec {other.name} {' '.join(tuneup_cmd())} rollback", "shell": True},
            {"argv": ["rollback"]}]))
        results = ns.drive(cases)
        assert initial_values() == host
    refused = 0
    for res in results:
        ap = res["runs"][0]
        assert ap["rc"] == 0, (res["name"], ap["stderr"])
        if res["name"] == "rollback from another netns":
            other_run, own = res["runs"][1], res["runs"][2]
            assert other_run["rc"] == 2 and "another network namespace" in other_run["stderr"], other_run
            assert other_run["state"] == ap["state"]            # record kept, nothing restored
            assert own["rc"] == 0 and own["state"] == res["before"]    # and in its own netns it restores exactly
            refused += 1
            continue
        tampered, rb = res["runs"][1], res["runs"][2]
        assert tampered["rc"] == 0, tampered["stderr"]
        assert rb["rc"] == 2, (res["name"], rb["stdout"], rb["stderr"])
        assert len(rb["stderr"].splitlines()) == 1 and "Traceback" not in rb["stderr"]
        assert rb["state"] == tampered["state"], res["name"]     # nothing written, record kept
        assert rb["state"]["files"]["/mnt/tA-sentinel/etc/sysctl.d/60-tuneup.conf"] == \
            res["before"]["files"]["/mnt/tA-sentinel/etc/sysctl.d/60-tuneup.conf"]
        refused += 1
    TALLY["live: forged record / other netns"] = refused


def test_zz_tally():
    """Prints the corpus size (the numbers issue 10 asks for); every group that ran counted cases."""
    assert all(v > 0 for v in TALLY.values()), TALLY
    if TALLY:
        print("\nhostile cases refused or restored exactly: " + ", ".join(f"{k}: {v}" for k, v in sorted(TALLY.items()))
              + f"; total {sum(TALLY.values())}")
