"""The probe against the real kernel, inside throwaway network namespaces (root; ip, prlimit).

Each test writes only per-namespace keys inside its own namespace; all traffic stays on its lo.
"""

from __future__ import annotations

import signal
import sys
import time

import pytest

from .conftest import tuneup_cmd

SERVER = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(int(sys.argv[2]))
print("ready", flush=True)
held = []
while True:
    if sys.argv[3] == "accept":
        held.append(s.accept()[0])
    else:
        time.sleep(1)
"""


def _within(achieved: int, predicted: int, share: float) -> bool:
    return abs(achieved - predicted) <= share * predicted


def test_under_prlimit_nofile_binds_and_the_probe_stops_with_emfile_near_the_prediction(capns_prlimit):
    ns = capns_prlimit
    lim = ("prlimit", "--nofile=3000:3000")
    rc, cap, err = ns.tuneup_json("capacity", prefix=lim)
    assert rc == 1, err          # 3,000 open files are short of the web profile's 100,000 connections
    assert cap["binding"]["name"] == "nofile"
    assert 2900 <= cap["binding"]["ceiling"] < 3000

    rc, res, err = ns.tuneup_json("probe", "--connections", "5000", prefix=lim)
    assert rc == 1, err                        # stopped before the 5000 requested
    assert res["requested"] == 5000 and res["mode"] == "self"
    assert res["stopped_by"] == "EMFILE"
    assert res["prediction"]["binding"]["name"].startswith("nofile")
    assert _within(res["achieved"], res["predicted"], 0.05), res
    assert _within(res["predicted"], cap["binding"]["ceiling"], 0.05)
    # every socket released: no process left in the namespace, no connection (RST, no TIME_WAIT)
    assert ns.pids() == []
    assert ns.tcp_states() == {}


def test_a_1000_port_range_stops_the_probe_with_eaddrnotavail_near_the_prediction(capns):
    ns = capns
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40999")
    rc, res, err = ns.tuneup_json("probe", "--connections", "2000")
    assert rc == 1, err
    assert res["stopped_by"] == "EADDRNOTAVAIL" and res["side"] == "client"
    assert res["prediction"]["binding"]["name"] == "ports"
    # the listener's own port comes from the range too (bind to port 0) and is held by bind()
    assert res["predicted"] == 999
    assert _within(res["achieved"], res["predicted"], 0.01), res
    assert ns.pids() == []


def test_reserved_ports_and_an_odd_sized_range_are_predicted(capns):
    ns = capns
    ns.sysctl("net.ipv4.ip_local_port_range", "40000 40200")      # 201 ports: same parity at both ends
    ns.sysctl("net.ipv4.ip_local_reserved_ports", "40000-40049")
    rc, res, err = ns.tuneup_json("probe", "--connections", "1000")
    assert res["stopped_by"] == "EADDRNOTAVAIL", err
    assert res["predicted"] == 201 - 50 - 1
    assert _within(res["achieved"], res["predicted"], 0.01), res


def test_a_non_loopback_target_is_refused_before_any_packet(capns):
    ns = capns
    before = ns.snmp()
    for target in ("10.1.2.3:80", "[2001:db8::1]:443", "example.com:80"):
        p = ns.tuneup("probe", "--target", target, "--connections", "10")
        assert p.returncode == 2, p.stderr
        assert p.stdout == "" and p.stderr.count("\n") == 1 and "--target" in p.stderr
    after = ns.snmp()
    assert after["Tcp"]["ActiveOpens"] == before["Tcp"]["ActiveOpens"]
    assert after["Ip"]["OutRequests"] == before["Ip"]["OutRequests"]
    assert after["Udp"]["OutDatagrams"] == before["Udp"]["OutDatagrams"]    # no DNS query either

    # control: the same counters do see an attempt toward a loopback port nobody listens on
    rc, res, err = ns.tuneup_json("probe", "--target", "127.0.0.1:9", "--connections", "10")
    assert rc == 1 and res["stopped_by"] == "ECONNREFUSED" and res["achieved"] == 0, err
    assert ns.snmp()["Tcp"]["ActiveOpens"] > after["Tcp"]["ActiveOpens"]


def test_a_full_accept_queue_shows_as_etimedout_and_queued_connections(capns):
    ns = capns
    srv = ns.spawn(sys.executable, "-c", SERVER, "8080", "8", "hold")
    assert srv.stdout.readline().strip() == "ready"
    rc, res, err = ns.tuneup_json("probe", "--target", "127.0.0.1:8080", "--connections", "50", "--timeout", "1")
    assert rc == 1, err
    assert res["stopped_by"] == "ETIMEDOUT" and res["mode"] == "target"
    assert res["queued"] == 9 and res["achieved"] == 0      # backlog + 1 completed by the kernel, none accepted
    assert res["listener"]["pid"] == srv.pid


def test_a_target_that_accepts_everything_reaches_n_and_its_limit_is_predicted(capns):
    ns = capns
    srv = ns.spawn("prlimit", "--nofile=2000:2000", sys.executable, "-c", SERVER, "8081", "4096", "accept")
    assert srv.stdout.readline().strip() == "ready"
    rc, res, err = ns.tuneup_json("probe", "--target", "localhost:8081", "--connections", "500")
    assert rc == 0, err
    assert res["achieved"] == 500 and res["stopped_by"] is None
    names = {x["name"]: x["ceiling"] for x in res["prediction"]["limits"]}
    assert 1990 <= names["nofile.target"] < 2000
    assert res["predicted"] == names["nofile.target"]


def test_sigterm_releases_every_socket_and_stops_the_listener(capns):
    ns = capns
    p = ns.spawn(*tuneup_cmd(), "probe", "--connections", "100000", "--rate", "500", "-f", "json")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and ns.tcp_states().get("ESTAB", 0) < 200:
        time.sleep(0.1)
    assert ns.tcp_states().get("ESTAB", 0) >= 200
    assert len(ns.pids()) == 2                      # the probe and its listener
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (ns.pids() or ns.tcp_states()):
        time.sleep(0.1)
    assert p.returncode == 130
    assert ns.pids() == []
    assert ns.tcp_states() == {}            # no ESTAB, no TIME-WAIT, no listener


@pytest.mark.parametrize("n", [1, 300])
def test_small_probes_reach_n(capns, n):
    rc, res, err = capns.tuneup_json("probe", "--connections", str(n))
    assert rc == 0 and res["achieved"] == n and res["stopped_by"] is None, err
    assert capns.pids() == []


HOLD = """
import socket, sys
l = socket.socket(); l.bind(("127.0.0.1", 7000)); l.listen(128)
cs = [socket.create_connection(("127.0.0.1", 7000)) for _ in range(int(sys.argv[1]))]
acc = [l.accept()[0] for _ in cs]
print("ready", flush=True)
sys.stdin.read()
"""


def test_capacity_reads_ports_in_use_from_the_census(capns):
    """The outbound ceiling subtracts the ports already held toward the busiest destination, as
    the live socket census (not a second walk of /proc/net/tcp) saw them."""
    ns = capns
    ns.run("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=40000 40999", check=True)
    holder = ns.spawn(sys.executable, "-c", HOLD, "30")
    assert holder.stdout.readline().strip() == "ready"
    rc, cap, err = ns.tuneup_json("capacity")
    assert rc in (0, 1), err     # 1: the binding inbound limit is short of the profile's target
    (ports,) = cap["outbound"]["limits"]
    assert "30 in use toward the busiest destination 127.0.0.1:7000" in ports["detail"]
    assert ports["ceiling"] == 1000 - 30
