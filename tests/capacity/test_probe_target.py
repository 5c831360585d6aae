"""Target validation (no packets), option checks, and the probe's JSON and table rendering."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tuneup import capacity, probe
from tuneup.errors import UsageError
from tuneup.formats.capacity import CapacityFormat, render_probe

from .conftest import tuneup_cmd


@pytest.mark.parametrize("text,addr,port,family", [
    ("127.0.0.1:8080", "127.0.0.1", 8080, socket.AF_INET),
    ("127.45.6.7:1", "127.45.6.7", 1, socket.AF_INET),
    ("localhost:65535", "127.0.0.1", 65535, socket.AF_INET),
    ("LOCALHOST.:80", "127.0.0.1", 80, socket.AF_INET),
    ("[::1]:443", "::1", 443, socket.AF_INET6),
    ("[::ffff:127.0.0.1]:80", "127.0.0.1", 80, socket.AF_INET),
])
def test_loopback_targets_pass(text, addr, port, family):
    t = probe.parse_target(text)
    assert (t.addr, t.port, t.family) == (addr, port, family)


@pytest.mark.parametrize("text,words", [
    ("10.0.0.1:80", "not a loopback"),
    ("192.168.1.1:80", "not a loopback"),
    ("0.0.0.0:80", "not a loopback"),
    ("[::]:80", "not a loopback"),
    ("[2001:db8::1]:80", "not a loopback"),
    ("[::ffff:10.0.0.1]:80", "not a loopback"),
    ("example.com:80", "not an IP address"),
    ("127.1:80", "not an IP address"),          # inet_aton shorthand is not accepted
    ("127.0.0.1", "HOST:PORT"),
    ("127.0.0.1:0", "port"),
    ("127.0.0.1:65536", "port"),
    ("127.0.0.1:http", "port"),
    ("::1:80", "brackets"),
    ("[::1]80", "[IPV6]:PORT"),
    (":80", "HOST:PORT"),
])
def test_other_targets_are_refused(text, words):
    with pytest.raises(UsageError) as exc:
        probe.parse_target(text)
    assert exc.value.where == "--target" and words in str(exc.value)


@pytest.mark.parametrize("n,rate,timeout,where", [
    (0, 100, 1, "--connections"), (10, 0, 1, "--rate"), (10, float("nan"), 1, "--rate"),
    (10, 100, 0, "--timeout"), (10, 100, -1, "--timeout"),
])
def test_bad_numbers_are_usage_errors(n, rate, timeout, where):
    with pytest.raises(UsageError) as exc:
        probe.validate(n, rate, timeout)
    assert exc.value.where == where


def test_cli_refuses_a_remote_target_with_exit_2_and_one_line():
    p = subprocess.run([*tuneup_cmd(), "probe", "--target", "203.0.113.9:80", "-n", "5"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "--target" in p.stderr and "loopback" in p.stderr


def test_cli_refuses_pid_and_process_together():
    p = subprocess.run([*tuneup_cmd(), "capacity", "--pid", "1", "--process", "init"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1


def _result(**kw) -> probe.ProbeResult:
    cap = capacity.Capacity("probe", (capacity.Limit("nofile.client", 2991, "src", "hint", "detail"),))
    base = dict(mode="self", destination="127.0.0.1:4000", requested=5000, achieved=2991, stopped_by="EMFILE",
                side="client", message="socket(): Too many open files", seconds=0.5, predicted=2991,
                prediction=cap, rate=5000.0, timeout=5.0)
    return probe.ProbeResult(**{**base, **kw})


def test_probe_json_has_the_documented_keys():
    data = json.loads(render_probe(_result(), CapacityFormat.JSON))
    for key in ("requested", "achieved", "stopped_by", "seconds", "predicted"):
        assert key in data
    assert data["prediction"]["binding"]["name"] == "nofile.client"
    assert "\r" not in render_probe(_result(), CapacityFormat.JSON)


@pytest.mark.parametrize("fmt", list(CapacityFormat))
def test_every_probe_format_renders(fmt):
    text = render_probe(_result(stopped_by=None, achieved=5000), fmt)
    assert "5000" in text.replace(",", "")   # the table groups thousands (5,000), JSON does not
