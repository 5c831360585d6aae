"""examples/ansible/site.yml, the whole play with ansible-core against localhost (two inventory hosts,
connection local): push the wheelhouse, install tuneup-limits from it with no index, collect, fetch,
audit the fleet on the controller with the tuneup that the play installed. Relative paths are given
from the directory ansible-playbook runs in, as a user would."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from .conftest import REPO, offline_env

PLAYBOOK = REPO / "examples" / "ansible" / "site.yml"


def _ansible_playbook() -> str | None:
    beside = Path(sys.executable).parent / "ansible-playbook"
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


def test_fleet_play_installs_from_the_pushed_wheelhouse_collects_and_audits(tmp_path, tuneup_wheelhouse):
    playbook = _ansible_playbook()
    if playbook is None:
        pytest.skip("ansible-playbook is not installed (ansible-core is in the test extra)")
    work = tmp_path / "work"                     # where the user stands: relative paths start here
    work.mkdir()
    shutil.copytree(tuneup_wheelhouse, work / "wheelhouse")
    hostname = socket.gethostname()
    (work / "waivers.toml").write_text(
        '[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "OPS-1"\nexpires = 2099-01-01\n'
        f'hosts = ["{hostname}"]\n\n'
        '[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "OPS-2"\nexpires = 2099-01-01\n'
        'hosts = ["web-1"]                      # the inventory name: matches no hostname\n')
    py = sys.executable
    hosts = tmp_path / "hosts"
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[servers]\n" + "".join(
            f"{h} ansible_connection=local tuneup_venv={hosts / h / 'venv'} tuneup_remote_dir={hosts / h / 'tmp'}\n"
            for h in ("web-1", "web-2"))
        + f"\n[all:vars]\nansible_python_interpreter={py}\n")
    home = tmp_path / "ansible-home"
    env = {
        **offline_env(),
        "ANSIBLE_HOME": str(home), "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_REMOTE_TEMP": str(home / "remote-tmp"), "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_HOST_KEY_CHECKING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": py, "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0", "ANSIBLE_COLLECTIONS_PATH": str(home / "collections"),
        "ANSIBLE_CONFIG": str(tmp_path / "none.cfg"),      # ignore any ansible.cfg around
        "PWD": "/nonexistent",                              # the play must not trust $PWD
    }
    controller = hosts / "web-1" / "venv" / "bin"          # the tuneup the play installed
    extra = {
        "tuneup_controller_bin": str(controller / "tuneup"), "tuneup_controller_python": str(controller / "python"),
        "tuneup_output_dir": "out", "tuneup_waivers": ["waivers.toml"], "tuneup_fail_on": "never",
        "ansible_python_interpreter": py,
    }
    argv = [playbook, "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(extra)]
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "-n", "--", *argv]               # the hosts install with no network at all
    t0 = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=work, timeout=400)
    took = time.monotonic() - t0
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-3000:]
    print(f"fleet play over localhost (2 hosts, install included): {took:.1f} s")
    for h in ("web-1", "web-2"):                             # installed from the wheelhouse, each its own venv
        assert (hosts / h / "venv" / "bin" / "tuneup").exists()
        pushed = sorted(f.name for f in (hosts / h / "tmp" / "wheelhouse").iterdir())
        assert pushed == sorted(f.name for f in (work / "wheelhouse").iterdir())   # the whole wheelhouse, unpacked
    assert tarfile.is_tarfile(work / "out" / "wheelhouse.tar")             # pushed as one archive
    snaps = sorted(p.name for p in (work / "out" / "snapshots").iterdir())
    assert snaps == ["web-1.json", "web-2.json"]
    for name in snaps:
        assert json.loads((work / "out" / "snapshots" / name).read_text())["schema"] == "tuneup.snapshot/1"
    fleet = json.loads((work / "out" / "reports" / "fleet.json").read_text())
    assert fleet["schema"] == "tuneup.fleet/1" and fleet["summary"]["hosts"] == 2
    somax = [f for h in fleet["hosts"] for f in h["findings"] if f["rule"] == "NET-SOMAXCONN"]
    assert len(somax) == 2 and all(f["status"] in ("pass", "waived") for f in somax)   # the waiver was read
    assert (work / "out" / "reports" / "fleet.md").read_text().startswith("## tuneup fleet audit")
    assert "<!DOCTYPE html>" in (work / "out" / "reports" / "fleet.html").read_text()
    assert "waivers.toml:7: waiver for NET-SOMAXCONN matches no audited host" in out.stdout
    assert "waivers.toml:1: waiver" not in out.stdout                    # the one naming the hostname matched
    assert "tuneup fleet audit of 2 hosts" in out.stdout
    assert "failed=0" in out.stdout
    assert sorted(p.name for p in work.iterdir()) == ["out", "waivers.toml", "wheelhouse"]   # nothing else written
