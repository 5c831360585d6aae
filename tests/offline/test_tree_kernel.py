"""The kernel a tree boots, the kernel-conditioned rules on it, and systemd's defaults by version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuneup.facts.host import tree_kernel, tree_systemd
from tuneup.kdefaults import systemd_nofile_default

from .test_sysctl_oracle import build


def test_newest_of_lib_modules_and_boot(tmp_path):
    build(tmp_path, {"lib/modules/5.10.0-28-amd64/modules.dep": "", "usr/lib/modules/6.1.0-9-amd64/modules.dep": "",
                     "boot/config-6.1.0-27-amd64": "", "boot/vmlinuz-4.19.0-1-amd64": ""})
    release, version, why = tree_kernel(tmp_path)
    assert release == "6.1.0-27-amd64" and version == (6, 1, 0) and "newest of 4" in why


def test_grub_default_entry_wins_over_the_newest(tmp_path):
    build(tmp_path, {"boot/vmlinuz-6.1.0-27-amd64": "", "boot/vmlinuz-5.10.0-28-amd64": "",
                     "boot/grub/grub.cfg": 'set default="1"\nmenuentry "a" {\n linux /boot/vmlinuz-6.1.0-27-amd64 root=x\n}\n'
                                           'menuentry "b" {\n linux /boot/vmlinuz-5.10.0-28-amd64 root=x\n}\n'})
    assert tree_kernel(tmp_path)[:2] == ("5.10.0-28-amd64", (5, 10, 0))


def test_given_kernel_and_none(tmp_path):
    assert tree_kernel(tmp_path, "5.4")[1] == (5, 4, 0)
    assert tree_kernel(tmp_path)[:2] == (None, None)


def _audit(root, *args):
    r = subprocess.run([sys.executable, "-m", "tuneup", "audit", "--root", str(root), "-f", "json", *args],
                       capture_output=True, text=True, timeout=120)
    return r


def test_bad_kernel_option_is_a_usage_error(tmp_path):
    r = _audit(tmp_path, "--kernel", "six")
    assert r.returncode == 2 and "--kernel" in r.stderr and "Traceback" not in r.stderr


def test_syn_backlog_on_a_6x_tree_and_on_an_unknown_kernel(tmp_path):
    build(tmp_path, {"etc/sysctl.d/10.conf": "net.ipv4.tcp_max_syn_backlog = 4096\nnet.core.somaxconn = 65535\n"})
    f = {x["rule"]: x for x in json.loads(_audit(tmp_path, "-p", "web").stdout)["findings"]}
    assert f["NET-SYN-BACKLOG"]["status"] == "skip" and "kernel" in f["NET-SYN-BACKLOG"]["message"]
    assert "unknown for this tree" in f["NET-SYN-BACKLOG"]["message"]
    build(tmp_path, {"lib/modules/6.1.0-27-amd64/modules.dep": ""})
    data = json.loads(_audit(tmp_path, "-p", "web").stdout)
    f = {x["rule"]: x for x in data["findings"]}
    assert data["host"]["kernel"].startswith("6.1.0-27-amd64")
    assert f["NET-SYN-BACKLOG"]["status"] == "skip" and "condition" in f["NET-SYN-BACKLOG"]["message"]


@pytest.mark.parametrize("version,want", [(None, (1024, 524288)), (252, (1024, 524288)), (239, (1024, 4096))])
def test_systemd_service_default_by_version(version, want):
    assert systemd_nofile_default(version)[0] == want


def test_systemd_version_from_the_tree(tmp_path):
    build(tmp_path, {"usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so": ""})
    assert tree_systemd(tmp_path)[0] == 252


def test_control_characters_from_the_tree_are_escaped(tmp_path):
    build(tmp_path, {"lib/modules/6.1.0-\x1b[2J/modules.dep": "",
                     "etc/sysctl.d/20-esc.conf": "net.core.somaxconn = 1\x1b[31m\n"})
    r = _audit(tmp_path, "-p", "web")
    assert "\x1b" not in r.stdout and "\\x1b" in r.stdout
    f = {x["rule"]: x for x in json.loads(r.stdout)["findings"]}
    assert "this line never applies" in f["BOOT-LINE-REJECTED"]["message"]
