"""sysctl.d(5) precedence as data: files in, the value the next boot applies (and where) out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tuneup.facts import configfiles as cf

from .conftest import write

K = "net.core.somaxconn"

# (id, {path: text} (None = symlink to /dev/null, "->target" = symlink), key, expected value, expected where)
CASES = [
    ("single file", {"etc/sysctl.d/10-a.conf": f"{K} = 1024\n"}, K, "1024", "etc/sysctl.d/10-a.conf:1"),
    ("last assignment in one file wins",
     {"etc/sysctl.d/10-a.conf": f"{K} = 1\n# comment\n; other comment\n{K}=2\n"}, K, "2", "etc/sysctl.d/10-a.conf:4"),
    ("lexical order across directories: the later name wins, wherever it lives",
     {"etc/sysctl.d/10-a.conf": f"{K} = 1\n", "usr/lib/sysctl.d/20-b.conf": f"{K} = 2\n"},
     K, "2", "usr/lib/sysctl.d/20-b.conf:1"),
    ("etc masks the same name in usr/lib",
     {"etc/sysctl.d/50-x.conf": f"{K} = 10\n", "usr/lib/sysctl.d/50-x.conf": f"{K} = 20\n"},
     K, "10", "etc/sysctl.d/50-x.conf:1"),
    ("run masks usr/local/lib, which masks usr/lib and lib",
     {"run/sysctl.d/50-x.conf": f"{K} = 3\n", "usr/local/lib/sysctl.d/50-x.conf": f"{K} = 4\n",
      "usr/lib/sysctl.d/50-x.conf": f"{K} = 5\n", "lib/sysctl.d/50-x.conf": f"{K} = 6\n"},
     K, "3", "run/sysctl.d/50-x.conf:1"),
    ("usr/local/lib masks lib",
     {"usr/local/lib/sysctl.d/50-x.conf": f"{K} = 4\n", "lib/sysctl.d/50-x.conf": f"{K} = 6\n"},
     K, "4", "usr/local/lib/sysctl.d/50-x.conf:1"),
    ("symlink to /dev/null masks a vendor file away",
     {"etc/sysctl.d/50-x.conf": None, "usr/lib/sysctl.d/50-x.conf": f"{K} = 20\n",
      "usr/lib/sysctl.d/10-y.conf": f"{K} = 7\n"}, K, "7", "usr/lib/sysctl.d/10-y.conf:1"),
    ("only *.conf files count",
     {"etc/sysctl.d/10-a.conf": f"{K} = 1\n", "etc/sysctl.d/99-b.conf.bak": f"{K} = 2\n"},
     K, "1", "etc/sysctl.d/10-a.conf:1"),
    ("slash separators: first separator a slash swaps dots and slashes",
     {"etc/sysctl.d/10-a.conf": "net/core/somaxconn = 77\n"}, K, "77", "etc/sysctl.d/10-a.conf:1"),
    ("'-' prefix still assigns", {"etc/sysctl.d/10-a.conf": f"-{K} = 5\n"}, K, "5", "etc/sysctl.d/10-a.conf:1"),
    ("glob applies when no explicit assignment",
     {"etc/sysctl.d/10-a.conf": "net.core.* = 9\n"}, K, "9", "etc/sysctl.d/10-a.conf:1"),
    ("explicit assignment beats a glob in a later file",
     {"etc/sysctl.d/10-a.conf": f"{K} = 1\n", "etc/sysctl.d/90-g.conf": "net.core.* = 9\n"},
     K, "1", "etc/sysctl.d/10-a.conf:1"),
    ("'-key' without '=' excludes the key from globs",
     {"etc/sysctl.d/10-a.conf": f"net.core.* = 9\n-{K}\n"}, K, None, None),
    ("a glob that does not match", {"etc/sysctl.d/10-a.conf": "net.ipv6.* = 9\n"}, K, None, None),
    ("multi-value keys keep their spacing normalised",
     {"etc/sysctl.d/10-a.conf": "net.ipv4.ip_local_port_range =\t1024   65535\n"},
     "net.ipv4.ip_local_port_range", "1024   65535", "etc/sysctl.d/10-a.conf:1"),
    ("systemd-sysctl never reads an /etc/sysctl.conf that no sysctl.d entry links to",
     {"etc/sysctl.d/99-z.conf": f"{K} = 1\n", "etc/sysctl.conf": f"{K} = 2\n"}, K, "1", "etc/sysctl.d/99-z.conf:1"),
    ("procps sysctl --system applies /etc/sysctl.conf after every sysctl.d file",
     {"etc/init.d/procps": "#!/bin/sh\n", "etc/sysctl.d/99-z.conf": f"{K} = 1\n", "etc/sysctl.conf": f"{K} = 2\n"},
     K, "2", "etc/sysctl.conf:1"),
    ("a glob's * does not cross a dot", {"etc/sysctl.d/10-a.conf": f"*.somaxconn = 3\nnet.* = 4\n"}, K, None, None),
    ("a later -key cancels an earlier assignment",
     {"etc/sysctl.d/10-a.conf": f"{K} = 5\n", "etc/sysctl.d/20-b.conf": f"-{K}\n"}, K, None, None),
    ("dot-files are skipped", {"etc/sysctl.d/.hidden.conf": f"{K} = 6\n"}, K, None, None),
    ("a dangling symlink masks its name",
     {"etc/sysctl.d/50-x.conf": "->/nowhere/at/all.conf", "usr/lib/sysctl.d/50-x.conf": f"{K} = 20\n"}, K, None, None),
    ("a leading slash is dropped",
     {"etc/sysctl.d/10-a.conf": "/net/core/somaxconn = 8\n"}, K, "8", "etc/sysctl.d/10-a.conf:1"),
    ("a later line with the same value keeps the first entry",
     {"etc/sysctl.d/10-a.conf": f"{K} = 8\n", "etc/sysctl.d/20-b.conf": f"{K} = 8\n"}, K, "8", "etc/sysctl.d/10-a.conf:1"),
    ("/etc/sysctl.conf linked as 99-sysctl.conf sorts by that name",
     {"etc/sysctl.conf": f"{K} = 2\n", "etc/sysctl.d/99-sysctl.conf": "->../sysctl.conf",
      "etc/sysctl.d/99-zz.conf": f"{K} = 3\n"}, K, "3", "etc/sysctl.d/99-zz.conf:1"),
    ("absolute symlink targets resolve inside the root",
     {"etc/sysctl.conf": f"{K} = 2\n", "etc/sysctl.d/99-sysctl.conf": "->/etc/sysctl.conf"},
     K, "2", "etc/sysctl.d/99-sysctl.conf:1"),
    ("malformed lines are skipped as systemd-sysctl skips them",
     {"etc/sysctl.d/10-a.conf": f"garbage line\n{K} = 8\n"}, K, "8", "etc/sysctl.d/10-a.conf:2"),
]


def _tree(root: Path, files: dict) -> None:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            os.symlink("/dev/null", p)
        elif text.startswith("->"):
            os.symlink(text[2:], p)
        else:
            p.write_text(text)


@pytest.mark.parametrize("files,key,value,where", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_boot_value(tmp_path, files, key, value, where):
    _tree(tmp_path, files)
    bv = cf.boot_sysctl(tmp_path, {key}).get(key)
    if value is None:
        assert bv is None
    else:
        assert (bv.value, bv.winner.where) == (value, where)


def test_conflict_lists_every_file_in_order(tmp_path):
    _tree(tmp_path, {"usr/lib/sysctl.d/50-vendor.conf": f"{K} = 128\n", "etc/sysctl.d/60-site.conf": f"{K} = 4096\n",
                     "etc/sysctl.d/70-same.conf": f"{K} = 4096\n"})
    facts = cf.boot_facts({K}, tmp_path, rootfs=False)
    # systemd-sysctl keeps the first entry when a later line repeats its value
    assert facts[f"boot.{K}"].value == 4096 and facts[f"boot.{K}"].source == "etc/sysctl.d/60-site.conf:1"
    c = facts[f"boot.conflict.{K}"]
    assert c.value.startswith("usr/lib/sysctl.d/50-vendor.conf:1 sets 128; etc/sysctl.d/60-site.conf:1 sets 4096")


def test_same_value_in_two_files_is_no_conflict(tmp_path):
    _tree(tmp_path, {"etc/sysctl.d/10-a.conf": f"{K} = 4096\n", "etc/sysctl.d/20-b.conf": f"{K}=4096\n"})
    assert f"boot.conflict.{K}" not in cf.boot_facts({K}, tmp_path, rootfs=False)


def test_rootfs_facts_are_the_boot_values_and_unset_keys_are_unknown(tmp_path):
    write(tmp_path, "etc/sysctl.d/10-a.conf", "net.ipv4.ip_local_port_range = 1024 65535\n")
    facts = cf.boot_facts({"net.ipv4.ip_local_port_range", K}, tmp_path, rootfs=True)
    assert facts["net.ipv4.ip_local_port_range"].value == (1024, 65535)
    assert facts[K].value is None and "no sysctl.d line" in facts[K].error


@pytest.mark.parametrize("raw,key", [("kernel.domainname", "kernel.domainname"), ("kernel/domainname", "kernel.domainname"),
                                     ("net.ipv4.conf.enp3s0/200.forwarding", "net.ipv4.conf.enp3s0/200.forwarding"),
                                     ("net/ipv4/conf/enp3s0.200/forwarding", "net.ipv4.conf.enp3s0/200.forwarding")])
def test_key_normalisation_from_the_man_page(raw, key):
    assert cf.normalize_key(raw) == key
