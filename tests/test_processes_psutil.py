"""Process facts through psutil, against real processes: limits set with prlimit(1), open fds,
a comm that is not UTF-8, a procfs path other than /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tuneup.facts import limits, processes


def _wait(pred, what: str) -> None:
    for _ in range(200):
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def child():
    """A sleeping python with nofile 1234:2345, 7 extra open fds, and a comm that is not UTF-8."""
    code = ("import os, time; fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(7)]; "
            "open('/proc/self/comm', 'wb').write(b'tF-\\xff\\xfeproc'); time.sleep(60)")
    p = subprocess.Popen(["prlimit", "--nofile=1234:2345", sys.executable, "-c", code])
    try:
        _wait(lambda: open(f"/proc/{p.pid}/comm", "rb").read().startswith(b"tF-\xff"), "the child's comm")
        yield p
    finally:
        p.kill()
        p.wait()


def test_process_facts_read_through_psutil_match_the_kernel(child):
    facts, info = limits.process_facts(child.pid)
    pre = f"proc.{child.pid}."
    assert facts[pre + "rlimit.nofile.soft"].value == 1234 and facts[pre + "rlimit.nofile.hard"].value == 2345
    with open(f"/proc/{child.pid}/limits") as fh:
        kernel = limits.parse_proc_limits(fh.read())
    assert (facts[pre + "rlimit.nproc.soft"].value, facts[pre + "rlimit.nproc.hard"].value) == kernel["nproc"]
    assert facts[pre + "fds"].value == len(os.listdir(f"/proc/{child.pid}/fd")) >= 10
    assert info["cmdline"][0] == sys.executable and info["name"] == "tF-\ufffd\ufffdproc"


def test_a_comm_that_is_not_utf8_does_not_stop_discovery(child):
    assert child.pid in processes.find_by_name("tF-\ufffd\ufffdproc")
    assert child.pid in processes.psutil_find_by_name("tF-\ufffd\ufffdproc")
    assert processes.find_by_name("tuneup-no-such-process") == []


def test_gone_process_is_a_lookup_error():
    p = subprocess.Popen(["true"])
    p.wait()
    with pytest.raises(ProcessLookupError):
        limits.process_facts(p.pid)


def test_another_procfs_path_reads_the_file_not_prlimit(child, tmp_path):
    # a procfs mounted elsewhere (here: the same one, bind-free, through a symlink) is read as files
    alt = tmp_path / "proc"
    alt.symlink_to("/proc")
    facts, _ = limits.process_facts(child.pid, str(alt))
    soft = facts[f"proc.{child.pid}.rlimit.nofile.soft"]
    assert soft.value == 1234 and soft.source == f"{alt}/{child.pid}/limits"
    assert child.pid in processes.find_by_name("tF-\ufffd\ufffdproc", str(alt))


def test_a_zombie_still_has_facts():
    """Exited but not reaped (its parent has not waited): still a process with limits."""
    p = subprocess.Popen(["prlimit", "--nofile=1111:2222", "true"])
    _wait(lambda: open(f"/proc/{p.pid}/stat").read().split(") ")[1].startswith("Z"), "the zombie")
    try:
        facts, info = limits.process_facts(p.pid)
        assert facts[f"proc.{p.pid}.rlimit.nofile.soft"].value == 1111
    finally:
        p.wait()
