"""`fix --apply` is a journal: a fault at every numbered step, then `rollback`, restores exactly.

Step numbers (tuneup.fixes.apply): 1 = the record written before the first change, then for each file
its write and a record update, for each sysctl its write and a record update, last the record marked
complete. TUNEUP_FAULT_STEP=N fails step N: by raising (an I/O error, or ENOSPC) or by SIGKILL.

- under a --root tree, in-process: every step x {raise, enospc}; files only (--root loads nothing);
- live (root `/`) inside a throwaway netns and a private mount namespace with tmpfs over
  /etc/sysctl.d, /etc/systemd and /var/lib: every step x SIGKILL, through the CLI, sysctls included;
- a real ENOSPC: the tree on a tiny tmpfs, filled so that the apply runs out of space at each step where it needs more.

Pre-existing files replaced with --force are Latin-1, binary, 0600, owned by another user: bytes,
owner, group and mode must come back exactly; the initial netns's values must not move.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import tuneup_cmd
from tuneup.errors import UsageError
from tuneup.fixes import apply as applymod

from .journal_util import (BAD, BINARY, DROPIN, LATIN1, LIVE_MOUNTS, ROOT_TREE, SERVICE, SYSCTL_CONF, UTF8, TANetns,
                           capture, entry, initial_values, need_root_ns, plan_for as _plan, plant)

def _steps(nfiles: int, nsysctls: int) -> int:
    return 1 + 2 * nfiles + 2 * nsysctls + 1


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("apply and rollback run as root")


def test_fault_at_every_step_under_a_root(as_root, tmp_path, monkeypatch):
    pristine = tmp_path / "pristine"
    plant(pristine, ROOT_TREE)
    want = capture(pristine)
    plan, files = _plan(pristine)
    overlay = sorted(p for p in files if p.startswith("etc/"))
    assert SYSCTL_CONF in overlay and DROPIN in overlay
    host = initial_values()
    steps = _steps(len(overlay), 0)
    covered = []
    for mode in ("raise", "enospc"):
        for n in range(1, steps + 1):
            root = tmp_path / f"{mode}-{n}"
            subprocess.run(["cp", "-a", str(pristine), str(root)], check=True)
            monkeypatch.setenv("TUNEUP_FAULT_STEP", str(n))
            monkeypatch.setenv("TUNEUP_FAULT_MODE", mode)
            with pytest.raises(UsageError) as e:
                applymod.apply(plan, files, root, force=True)
            assert f"step {n}" in str(e.value) or n == 1, str(e.value)
            monkeypatch.delenv("TUNEUP_FAULT_STEP")
            mid = capture(root)
            if n > 1:      # the record exists from step 1 on, whatever happened after
                assert "var/lib/tuneup/state.json" in mid
                applymod.rollback(root)
            else:
                assert mid == want                              # nothing changed before the record
                with pytest.raises(UsageError, match="nothing to roll back"):
                    applymod.rollback(root)
            assert capture(root) == want, (mode, n)
            covered.append((mode, n))
    # and without a fault the run gets through every step
    monkeypatch.delenv("TUNEUP_FAULT_MODE")
    root = tmp_path / "clean"
    subprocess.run(["cp", "-a", str(pristine), str(root)], check=True)
    res = applymod.apply(plan, files, root, force=True)
    assert res.ok and capture(root) != want
    applymod.rollback(root)
    assert capture(root) == want
    assert initial_values() == host
    assert len(covered) == 2 * steps
    print(f"\nfault points under --root: {len(covered)} ({steps} steps x raise/enospc), all restored exactly")


def test_rollback_can_be_rerun_and_keeps_its_record_until_done(as_root, tmp_path, monkeypatch):
    root = tmp_path / "r"
    plant(root, ROOT_TREE)
    want = capture(root)
    plan, files = _plan(root)
    applymod.apply(plan, files, root, force=True)
    # a component that is no longer a directory: refused before anything is written, record kept
    d = root / DROPIN
    d.unlink()
    d.parent.rmdir()
    d.parent.write_text("in the way")
    with pytest.raises(UsageError, match="not a directory"):
        applymod.rollback(root)
    assert (root / applymod.STATE).exists() and "tuneup" in (root / SYSCTL_CONF).read_text()
    # one restore that fails midway: the others are done, the record kept. The failure is an I/O
    # error injected into that one write (root ignores permissions and a read-only mount would need
    # a mount namespace; the real faults are covered by the live and ENOSPC tests)
    d.parent.unlink()
    d.parent.mkdir()
    from tuneup import safefs

    real = safefs.write_under

    def failing(root_, rel, *a, **kw):
        if rel == DROPIN:
            raise UsageError("cannot write: Input/output error", rel)
        return real(root_, rel, *a, **kw)

    monkeypatch.setattr(safefs, "write_under", failing)
    res = applymod.rollback(root)
    assert not res.ok and (root / applymod.STATE).exists() and "kept" in res.state
    assert (root / SYSCTL_CONF).read_bytes() == LATIN1
    monkeypatch.setattr(safefs, "write_under", real)
    res = applymod.rollback(root)           # re-run: now everything succeeds and the record goes
    assert res.ok and capture(root) == want


LIVE_TREE = [
    entry("/etc/sysctl.d/60-tuneup.conf", "file", LATIN1, 0o600, 65534, 65534),
    entry("/etc/sysctl.d/10-utf8.conf", "file", UTF8),
    entry(f"/etc/systemd/system/{SERVICE}.d/60-tuneup-limits.conf", "file", BINARY, 0o640, 0, 65534),
]


def _live_case(name: str, env: dict) -> dict:
    return {"name": name, "mounts": LIVE_MOUNTS, "preset": BAD, "tree": LIVE_TREE, "keys": sorted(BAD),
            "commands": [{"argv": ["fix", "--apply", "--force", "--service", SERVICE], "env": env},
                         {"argv": ["rollback"], "until_ok": True}, {"argv": ["rollback"], "until_ok": True}]}


def _record(run: dict) -> dict | None:
    raw = run["state"]["files"].get("/var/lib/tuneup/state.json")
    return json.loads(base64.b64decode(raw[4])) if raw else None


def test_sigkill_at_every_step_of_a_live_apply():
    """Root `/` for real, inside tA-<netns> and a private mount namespace (tmpfs over the three
    directories tuneup writes): per-namespace sysctls are loaded and restored."""
    need_root_ns()
    host = initial_values()
    with TANetns() as ns:
        (base,) = ns.drive([_live_case("clean", {})])
        assert base["runs"][0]["rc"] == 0, base["runs"][0]["stderr"]
        rec = _record(base["runs"][0])
        assert rec and rec["complete"] and rec["live"]
        assert {s["key"] for s in rec["sysctls"]} >= {"net.core.somaxconn", "net.ipv4.tcp_syncookies"}
        assert all(s["key"].startswith("net.") for s in rec["sysctls"])     # child netns: per-namespace only
        assert base["runs"][0]["state"]["sysctls"]["net.core.somaxconn"] == "65535"
        assert base["after"] == base["before"]
        steps = _steps(len(rec["files"]), len(rec["sysctls"]))
        results = ns.drive([_live_case(f"kill-{n}", {"TUNEUP_FAULT_STEP": str(n), "TUNEUP_FAULT_MODE": "kill"})
                            for n in range(1, steps + 1)])
    restored = 0
    for n, res in enumerate(results, 1):
        ap = res["runs"][0]
        assert ap["rc"] == -9, (n, ap["stderr"])                    # killed at that step
        changed = ap["state"] != res["before"]
        if changed:       # anything changed -> a record says what
            assert _record(ap) is not None, n
        assert res["after"] == res["before"], f"step {n} not restored"
        restored += 1
    assert initial_values() == host
    print(f"\nlive fault points (SIGKILL): {restored} of {steps}, all restored exactly")


def test_real_enospc_on_a_tiny_tmpfs_root(as_root):
    """The --root tree on a 64 KiB tmpfs; a filler leaves k pages free for k = 0..8, so the apply
    runs out of space at a different step each time (the steps where the space used grows:
the record, each new file; ENOSPC at every other step is injected by the first test). Rollback (re-run once the filler is gone if it
    too ran out) restores the tree exactly."""
    need_root_ns()
    fresh = [e for e in ROOT_TREE if e[0] not in (SYSCTL_CONF, DROPIN)]   # every file created: space grows
    cases = []
    for k, rel_tree in [*((k, ROOT_TREE) for k in range(0, 2)), *((k, fresh) for k in range(0, 4))]:
        fill = f"dd if=/dev/zero of=/mnt/tA-root/filler bs=4096 count=1000 2>/dev/null; " \
               f"rm -f /mnt/tA-root/filler; dd if=/dev/zero of=/mnt/tA-root/filler bs=4096 count=$(( $(stat -f -c %a /mnt/tA-root) - {k} )) 2>/dev/null; true"
        cases.append({"name": f"free-{k}-{len(rel_tree)}", "mounts": ["/mnt"], "size": "96k",
                      "tree": [[f"/mnt/tA-root/{e[0]}", *e[1:]] for e in rel_tree], "watch": ["/mnt/tA-root"],
                      "commands": [{"argv": "mkdir -p /mnt/tA-root", "shell": True},
                                   {"argv": fill, "shell": True},
                                   {"argv": ["fix", "--apply", "--force", "--root", "/mnt/tA-root", "--service", SERVICE]},
                                   {"argv": ["rollback", "--root", "/mnt/tA-root"]},
                                   {"argv": "rm -f /mnt/tA-root/filler", "shell": True},
                                   {"argv": ["rollback", "--root", "/mnt/tA-root"]}]})
    with TANetns() as ns:
        results = ns.drive(cases)
    outcomes = set()
    for res in results:
        ap = res["runs"][2]
        assert ap["rc"] in (0, 2), ap["stderr"]
        assert "Traceback" not in ap["stderr"] and len(ap["stderr"].splitlines()) <= 1, ap["stderr"]
        m = re.search(r"stopped at step (\d+)", ap["stderr"])
        outcomes.add("ok" if ap["rc"] == 0 else int(m.group(1)) if m else 1 if "nothing was changed" in ap["stderr"]
                     else ap["stderr"])
        if ap["rc"]:
            assert "No space left on device" in ap["stderr"], ap["stderr"]
        before = {p: v for p, v in res["before"]["files"].items() if not p.endswith("/filler")}
        after = {p: v for p, v in res["after"]["files"].items()}
        for p, v in after.items():
            assert "tuneup-" not in p or not p.endswith(".tmp"), f"temp left: {p}"
        assert after == before, res["name"]
    print(f"\nENOSPC on a tiny tmpfs: stopped at steps {sorted(o for o in outcomes if o != 'ok')}, all restored")
    assert len(outcomes) >= 3, outcomes      # the space ran out at several different steps
