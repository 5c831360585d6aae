"""The fix file's name: chosen in bounded time, sorting (bytewise, as systemd-sysctl's strcmp does)
after every other file name, whatever the names (issue: `~local.conf` and `über-tuning.conf` made
the old NN- loop spin forever)."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tuneup.facts import configfiles as cf
from tuneup.fixes import FixNameError, conf_name

from .conftest import write

# file names as a filesystem allows them: any character but "/" and NUL, up to 200 characters
NAME = st.text(st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=200)


@settings(max_examples=400, deadline=None)
@given(st.lists(NAME.map(lambda n: n + ".conf"), max_size=30))
def test_name_is_bounded_and_sorts_after_every_name(names):
    t0 = time.perf_counter()
    try:
        got = conf_name(names)
    except FixNameError:
        # only when no printable prefix can beat the name that sorts last
        top = max(n for n in names if not n.startswith(".") and "tuneup" not in n)
        assert not top.isprintable() or len(top.encode()) > 240
        return
    assert time.perf_counter() - t0 < 0.5
    assert got.endswith("tuneup.conf") and not got.startswith(".") and "/" not in got
    assert len(os.fsencode(got)) <= 255
    for n in names:
        if n.startswith(".") or n.endswith(("-tuneup.conf",)):
            continue
        assert os.fsencode(got) > os.fsencode(n), (got, n)


@pytest.mark.parametrize("names,want", [
    (["~local.conf"], "~z-tuneup.conf"),
    (["über-tuning.conf"], "üz-tuneup.conf"),
    (["zz-later.conf", "99-sysctl.conf"], "~-tuneup.conf"),
    (["~~~~.conf"], "~~~~z-tuneup.conf"),
])
def test_names_after_z(names, want):
    got = conf_name(names)
    assert got == want and all(got.encode() > n.encode() for n in names)


@pytest.mark.parametrize("name", ["~local.conf", "über-tuning.conf", "zz-later.conf"])
def test_fix_wins_at_boot_over_a_name_after_z(tmp_path, name):
    """The issue's case: the key set in etc/sysctl.conf (linked) and in a late vendor file; the file
    tuneup names must be the one systemd-sysctl applies last."""
    write(tmp_path, "etc/sysctl.conf", "net.ipv4.tcp_abort_on_overflow = 1\n")
    (tmp_path / "etc/sysctl.d").mkdir()
    os.symlink("../sysctl.conf", tmp_path / "etc/sysctl.d/99-sysctl.conf")
    write(tmp_path, f"usr/lib/sysctl.d/{name}", "net.ipv4.tcp_abort_on_overflow = 1\n")
    names = cf.sysctl_names(tmp_path).split("/")
    ours = conf_name(names)
    write(tmp_path, f"etc/sysctl.d/{ours}", "net.ipv4.tcp_abort_on_overflow = 0\n")
    bv = cf.boot_sysctl(tmp_path, {"net.ipv4.tcp_abort_on_overflow"}, "systemd")["net.ipv4.tcp_abort_on_overflow"]
    assert bv.value == "0" and bv.winner.source == f"etc/sysctl.d/{ours}"


def test_fix_command_returns_with_a_name_after_z(tmp_path):
    import subprocess
    import sys

    write(tmp_path, "usr/lib/sysctl.d/~local.conf", "net.ipv4.tcp_abort_on_overflow = 1\n")
    write(tmp_path, "etc/sysctl.d/über-tuning.conf", "net.ipv4.tcp_syncookies = 0\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "tuneup", "fix", "--root", str(tmp_path), "--out-dir", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode in (0, 1), r.stderr
    written = sorted(p.name for p in (out / "etc/sysctl.d").iterdir())
    assert written == ["üz-tuneup.conf"]
