"""`-o` goes through the one write primitive (tuneup.safefs): each case from issue 10 reproduced.

Before: `-o /dev/null --force` as root replaced the device node with a regular file; the temp file
`.NAME.tuneup-tmp` was opened without O_EXCL/O_NOFOLLOW so a planted symlink made root write through
it; a replaced file lost its owner and mode; a 250-character name exited 3.

Devices are only ever created inside a private mount namespace with its own tmpfs /dev (never the
machine's /dev)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import tuneup_cmd
from tuneup import safefs
from tuneup.errors import UsageError
from tuneup.output import write_output


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*tuneup_cmd(), *args], capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "NO_COLOR": "1"})


def one_line_error(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 2, p.stdout + p.stderr
    assert len(p.stderr.splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr


def no_temp(d: Path) -> None:
    assert not [n for n in os.listdir(d) if "tuneup" in n and n.endswith("tmp")], os.listdir(d)


def test_regular_file_replaced_keeps_owner_and_mode(tmp_path):
    out = tmp_path / "report.txt"
    out.write_text("old\n")
    out.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(out, 65534, 65534)
    before = out.stat()
    p = run("rules", "list", "-o", str(out))
    one_line_error(p)
    assert "--force" in p.stderr and out.read_text() == "old\n"
    p = run("rules", "list", "-o", str(out), "--force")
    assert p.returncode == 0, p.stderr
    st = out.stat()
    assert "NET-SOMAXCONN" in out.read_text()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (before.st_uid, before.st_gid, 0o600)
    assert st.st_ino != before.st_ino          # replaced by rename, not rewritten in place
    no_temp(tmp_path)


def test_new_file_is_0644(tmp_path):
    os.umask(0o022)
    out = tmp_path / "new.txt"
    assert run("rules", "list", "-o", str(out)).returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_planted_temp_symlink_is_never_followed(tmp_path):
    """The old predictable temp name, planted as a symlink to a file outside: untouched."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    shared = tmp_path / "textfile"
    shared.mkdir()
    (shared / ".tuneup.prom.tuneup-tmp").symlink_to(victim)
    p = run("rules", "list", "-o", str(shared / "tuneup.prom"))
    assert p.returncode == 0, p.stderr
    assert victim.read_text() == "precious\n"
    assert (shared / ".tuneup.prom.tuneup-tmp").is_symlink() and (shared / "tuneup.prom").is_file()


def test_symlink_target_is_refused_and_kept(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep\n")
    link = tmp_path / "link"
    link.symlink_to(target)
    for extra in ((), ("--force",)):
        p = run("rules", "list", "-o", str(link), *extra)
        one_line_error(p)
        assert "symbolic link" in p.stderr
        assert link.is_symlink() and target.read_text() == "keep\n"
    no_temp(tmp_path)


def test_directory_and_missing_or_file_parent(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "f").write_text("x")
    for target, why in ((tmp_path / "d", "is a directory"), (tmp_path / "f" / "x", "not a directory"),
                        (tmp_path / "nope" / "x", "does not exist")):
        p = run("rules", "list", "-o", str(target), "--force")
        one_line_error(p)
        assert why in p.stderr
    assert (tmp_path / "f").read_text() == "x"
    no_temp(tmp_path)


def test_read_only_file(tmp_path):
    out = tmp_path / "ro.txt"
    out.write_text("ro\n")
    out.chmod(0o444)
    one_line_error(run("rules", "list", "-o", str(out)))
    assert out.read_text() == "ro\n"
    p = run("rules", "list", "-o", str(out), "--force")     # --force replaces it, mode kept
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o444 and "NET-SOMAXCONN" in out.read_text()
    no_temp(tmp_path)


def test_long_names(tmp_path):
    """250 characters is a legal name: written (the temp name no longer grows with it, so no exit 3);
    beyond NAME_MAX: one line, exit 2, nothing left behind."""
    ok = tmp_path / ("a" * 250)
    p = run("rules", "list", "-o", str(ok))
    assert p.returncode == 0, p.stderr
    assert ok.is_file()
    p = run("rules", "list", "-o", str(tmp_path / ("b" * 256)))
    one_line_error(p)
    assert "longer than 255" in p.stderr
    assert sorted(os.listdir(tmp_path)) == ["a" * 250]


def test_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    p = run("rules", "list", "-o", str(fifo))
    reader.join(timeout=30)
    assert p.returncode == 0, p.stderr
    assert "NET-SOMAXCONN" in got[0] and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    no_temp(tmp_path)


def test_unencodable_text_leaves_no_temp(tmp_path):
    out = tmp_path / "x.txt"
    with pytest.raises(UsageError):
        write_output("host \ud800\n", out, False)
    assert os.listdir(tmp_path) == []


def test_primitive_removes_its_temp_on_any_error(tmp_path, monkeypatch):
    """A write that fails midway (here fsync) leaves neither a temp file nor a changed target."""
    out = tmp_path / "t.txt"
    out.write_text("before")

    def boom(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(safefs.os, "fsync", boom)
    with pytest.raises(UsageError) as e:
        safefs.write_file(out, b"after", force=True)
    assert "Input/output error" in str(e.value)
    assert os.listdir(tmp_path) == ["t.txt"] and out.read_text() == "before"


PRIVATE_DEV = r"""
set -e
mount -t tmpfs tA-dev /dev
mknod -m 666 /dev/null c 1 3
mknod -m 666 /dev/full c 1 7
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
set +e
"$@" rules list -o /dev/null --force; echo "null rc=$?"
"$@" rules list -o /dev/full --force; echo "full rc=$?"
"$@" rules list -o /dev/stdout --force | grep -c NET-SOMAXCONN | sed 's/^/stdout lines=/'
"$@" rules list -o /dev/stderr 2>&1 >/dev/null | grep -c NET-SOMAXCONN | sed 's/^/stderr lines=/'
stat -c '%n %F %t:%T' /dev/null /dev/full
stat -c '%n %F %N' /dev/stdout /dev/stderr
ls -A /dev | tr '\n' ' '; echo
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare for a private /dev")
def test_char_devices_and_dev_stdout_in_a_private_dev():
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", PRIVATE_DEV, "sh", *tuneup_cmd()],
                       capture_output=True, text=True, timeout=120)
    out = p.stdout
    assert "null rc=0" in out, out + p.stderr
    assert "full rc=2" in out and "No space left on device" in p.stderr   # /dev/full written in place: ENOSPC
    assert "stdout lines=1" in out and "stderr lines=1" in out
    assert "/dev/null character special file 1:3" in out and "/dev/full character special file 1:7" in out
    assert "/dev/stdout symbolic link" in out and "/dev/stderr symbolic link" in out
    assert out.strip().splitlines()[-1].split() == ["full", "null", "stderr", "stdout"]   # no temp left in /dev


def test_socket_is_a_one_line_error(tmp_path):
    import socket

    path = tmp_path / "sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(path))
        p = run("rules", "list", "-o", str(path), "--force")
        one_line_error(p)
        assert "socket" in p.stderr and stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        s.close()
    no_temp(tmp_path)


# -- a streamed fleet (audit --snapshot DIR -o FILE) writes through the same primitive --------------
@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fleet")
    for name in ("a", "b"):
        p = run("collect", "-o", str(d / f"{name}.json"))
        assert p.returncode == 0, p.stderr
    return d


def test_fleet_output_refuses_a_symlink_and_an_existing_file(fleet_dir, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "fleet.md").symlink_to(victim)
    p = run("audit", "--snapshot", str(fleet_dir), "-f", "markdown", "-o", str(tmp_path / "fleet.md"), "--force")
    one_line_error(p)
    assert "symbolic link" in p.stderr and victim.read_text() == "precious\n"
    out = tmp_path / "old.md"
    out.write_text("old\n")
    p = run("audit", "--snapshot", str(fleet_dir), "-f", "markdown", "-o", str(out))
    one_line_error(p)
    assert "--force" in p.stderr and out.read_text() == "old\n"
    no_temp(tmp_path)


def test_fleet_output_replaces_with_force_keeping_the_mode(fleet_dir, tmp_path):
    out = tmp_path / "fleet.html"
    out.write_text("old\n")
    out.chmod(0o600)
    p = run("audit", "--snapshot", str(fleet_dir), "-f", "html", "-o", str(out), "--force", "--fail-on", "never")
    assert p.returncode == 0 and p.stdout == "", p.stderr
    assert "<html" in out.read_text() and stat.S_IMODE(out.stat().st_mode) == 0o600
    no_temp(tmp_path)


def test_fleet_output_to_a_fifo_is_written_in_place(fleet_dir, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    p = run("audit", "--snapshot", str(fleet_dir), "-f", "json", "-o", str(fifo), "--fail-on", "never")
    reader.join(30)
    assert p.returncode == 0, p.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and b'"hosts"' in got[0]
