"""The census inside a throwaway network namespace holding a known scene, checked against `ss`.

The scene (conftest.SCENE, built by sockets_scene.py) is still while the tests look at it: the
accept queue holds its clients, the accepted pairs stay ESTABLISHED, TIME_WAIT lasts 60 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from .sockets_scene import PORT_RANGE, SCENE

SS_STATES = {
    "ESTAB": "ESTABLISHED", "SYN-SENT": "SYN_SENT", "SYN-RECV": "SYN_RECV", "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2", "TIME-WAIT": "TIME_WAIT", "UNCONN": "CLOSE", "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK", "LISTEN": "LISTEN", "CLOSING": "CLOSING",
}


def split_hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    return host, int(port)


def ss_rows(ns, *opts: str) -> list[list[str]]:
    out = ns.run("ss", "-H", *opts).stdout
    return [line.split() for line in out.splitlines() if line.strip()]


def ss_census(ns) -> dict:
    """What ss says about the same scene, in the census's terms."""
    rows = ss_rows(ns, "-tan")
    states = Counter(SS_STATES[r[0]] for r in rows)
    listeners = sorted(
        ((r[3], int(r[1]), int(r[2])) for r in ss_rows(ns, "-ltn")),
        key=lambda t: split_hostport(t[0])[1])
    listen_ports = {(":" in split_hostport(r[3])[0].strip("[]"), split_hostport(r[3])[1])
                    for r in rows if r[0] == "LISTEN"}
    dests: Counter = Counter()
    lo, hi = PORT_RANGE
    for r in rows:
        if r[0] == "LISTEN":
            continue
        host, lport = split_hostport(r[3])
        v6 = ":" in host.strip("[]")
        if lo <= lport <= hi and (v6, lport) not in listen_ports:
            dests[r[4]] += 1
    return {"states": states, "listeners": listeners, "destinations": dests}


@pytest.fixture(scope="module")
def views(scene):
    return {
        "netlink": scene.census_json("netlink"),
        "proc": scene.census_json("proc"),
        "ephemeral": scene.census_json("netlink", scope="ephemeral"),
        "ss": ss_census(scene),
    }


def test_the_scene_is_what_was_built(views, scene):
    nl = views["netlink"]
    assert nl["source"] == "netlink" and "note" not in nl
    pairs = SCENE["queued"] + SCENE["estab"] + SCENE["v6"] + SCENE["range"]
    assert nl["states"]["ESTABLISHED"] == 2 * pairs
    assert nl["states"]["LISTEN"] == 5
    assert nl["states"]["TIME_WAIT"] == SCENE["tw"]
    assert sum(nl["states"].values()) == 2 * pairs + 5 + SCENE["tw"]
    somaxconn = int(scene.run("cat", "/proc/sys/net/core/somaxconn").stdout)
    assert somaxconn == 4096  # a fresh namespace's own value
    got = [(x["local"], x["backlog"], x["queue"]) for x in nl["listeners"]]
    assert got == [
        ("127.0.0.1:5001", 7, SCENE["queued"]),
        ("127.0.0.1:5002", 100, 0),
        ("[::1]:5003", 50, 0),
        ("127.0.0.1:5004", min(100000, somaxconn), 0),
        ("127.0.0.1:25000", 16, 0),
    ]


def test_netlink_agrees_with_ss(views):
    nl, ss = views["netlink"], views["ss"]
    assert nl["states"]["ESTABLISHED"] == ss["states"]["ESTABLISHED"]
    for name, n in nl["states"].items():
        assert n == ss["states"].get(name, 0), name
    # ss -ltn: Recv-Q = accept queue, Send-Q = effective backlog
    assert [(x["local"], x["queue"], x["backlog"]) for x in nl["listeners"]] == ss["listeners"]


def test_proc_fallback_agrees_with_netlink(views):
    nl, pr = views["netlink"], views["proc"]
    assert pr["source"] == "proc"
    assert "backlog" in pr["note"] and "/proc" in pr["note"]
    assert pr["states"] == nl["states"]
    assert [(x["local"], x["queue"]) for x in pr["listeners"]] == [(x["local"], x["queue"]) for x in nl["listeners"]]
    assert all(x["backlog"] is None for x in pr["listeners"])
    assert pr["ephemeral"] == nl["ephemeral"]
    assert [(x["pid"], x["process"]) for x in pr["listeners"]] == [(x["pid"], x["process"]) for x in nl["listeners"]]


@pytest.mark.parametrize("method", ["netlink", "proc"])
def test_ephemeral_usage_agrees_with_ss(views, method):
    eph = views[method]["ephemeral"]
    ss = views["ss"]["destinations"]
    size = PORT_RANGE[1] - PORT_RANGE[0] + 1
    assert eph["range"] == list(PORT_RANGE)
    assert eph["in_use"] == sum(ss.values()) == SCENE["queued"] + SCENE["estab"] + SCENE["v6"] + SCENE["range"] + SCENE["tw"]
    assert {d["remote"]: d["in_use"] for d in eph["destinations"]} == dict(ss)
    assert [d["in_use"] for d in eph["destinations"]] == sorted((d["in_use"] for d in eph["destinations"]), reverse=True)
    top = eph["destinations"][0]
    assert top == {"remote": "127.0.0.1:5004", "in_use": SCENE["tw"], "share": SCENE["tw"] / size}
    assert "[::1]:5003" in {d["remote"] for d in eph["destinations"]}
    # the accepted sockets of the listener inside the range are server-side: not counted
    assert "127.0.0.1:25000" in {d["remote"] for d in eph["destinations"]}
    listen_ports = {SCENE[k] for k in ("queue_port", "estab_port", "v6_port", "tw_port", "range_port")}
    assert {split_hostport(d["remote"])[1] for d in eph["destinations"]} == listen_ports


def test_ephemeral_scope_gives_the_same_listeners_and_ports(views):
    """An audit's census (listeners, then the other states filtered in the kernel to the ephemeral
    range) reports the same listeners, owners and ephemeral usage as the full dump, including the
    in-range listener whose accepted sockets are server-side; it has no state counts, not wrong ones."""
    nl, eph = views["netlink"], views["ephemeral"]
    assert eph["source"] == "netlink" and "note" not in eph
    assert eph["listeners"] == nl["listeners"] and eph["_inodes"] == nl["_inodes"]
    assert eph["ephemeral"] == nl["ephemeral"] and eph["_distinct"] == nl["_distinct"]
    assert eph["states"] == {}
    full = {k: v for k, v in nl["_facts"].items() if k != "sockets.total" and not k.startswith("sockets.state.")}
    assert set(eph["_facts"]) == set(full)
    for k in ("sockets.listeners", "sockets.listeners.count", "sockets.listeners.max_fill", "ephemeral.range",
              "ephemeral.size", "ephemeral.in_use", "ephemeral.destinations", "ephemeral.max_share",
              "ephemeral.top_remote", "ephemeral.top_in_use", "sockets.source"):
        assert eph["_facts"][k] == full[k], k


def test_live_audit_findings_do_not_depend_on_the_census_scope(scene):
    """The audit's narrower census changes no finding: the same live audit with the full census
    (the findings on census facts; host-global ones such as fs.file-nr move between two reads)."""
    out = scene.py(
        "import json\n"
        "from tuneup import run\n"
        "from tuneup.facts.collect import collect\n"
        "p = run.plan(None, {}, [], [])\n"
        "keys = p.book.fact_keys()\n"
        "rows = []\n"
        "for only in (True, False):\n"
        "    r = p.audit(collect(keys, only_wanted=only))\n"
        "    rows.append([(f.rule, f.target, f.status.value, repr(f.actual), f.expected, f.message) for f in r.findings\n"
        "                 if f.key.split('.')[0] in ('listener', 'ephemeral', 'sockets', 'sockstat')])\n"
        "print(json.dumps(rows))\n")
    narrow, full = json.loads(out)
    assert narrow == full and len(narrow) >= 8
    by_rule = {(rule, target): status for rule, target, status, *_ in narrow}
    # the listener inside the ephemeral range is seen (and judged), the busiest destination too
    in_range = [status for (rule, target), status in by_rule.items()
                if rule == "LISTEN-IN-EPHEMERAL-RANGE" and target.startswith("listener 127.0.0.1:25000 ")]
    assert in_range == ["fail"], by_rule
    assert ("SOCK-EPHEMERAL-DEST-SHARE", None) in by_rule


def test_listener_owners_are_the_helper(views, scene):
    comm = scene.run("cat", f"/proc/{scene.pid}/comm").stdout.strip()
    for x in views["netlink"]["listeners"]:
        assert (x["pid"], x["process"]) == (scene.pid, comm), x


def test_facts_for_the_rule_engine(views):
    f = views["netlink"]["_facts"]
    assert f["sockets.source"] == "netlink"
    assert f["sockets.state.ESTABLISHED"] == views["ss"]["states"]["ESTABLISHED"]
    assert f["sockets.state.TIME_WAIT"] == SCENE["tw"]
    assert f["sockets.listeners.count"] == 5
    assert f["sockets.listeners.max_fill"] == round(SCENE["queued"] / 7, 4)
    assert f["ephemeral.top_remote"] == "127.0.0.1:5004"
    assert f["ephemeral.max_share"] == SCENE["tw"] / 10000
    assert f["ephemeral.range"] == list(PORT_RANGE)
    assert f["ephemeral.destinations"] == 5
    assert f["sockstat.tcp.tw"] == SCENE["tw"]
    assert isinstance(f["sockstat.tcp.orphan"], int) and isinstance(f["sockstat.tcp.mem"], int)
    assert f["netstat.TcpExt.ListenOverflows"] == 0
    assert f["snmp.Tcp.CurrEstab"] == views["netlink"]["states"]["ESTABLISHED"]
    json.dumps(f)


def test_sockstat_counts_the_same_sockets(views):
    nl = views["netlink"]
    st = nl["sockstat"]
    # sockstat is per namespace for these: full sockets in the hash tables, TIME_WAIT buckets
    assert st["tcp"]["inuse"] + st["tcp6"]["inuse"] == nl["states"]["ESTABLISHED"] + nl["states"]["LISTEN"]
    assert st["tcp6"]["inuse"] == 1 + 2 * SCENE["v6"]
    assert st["tcp"]["tw"] == nl["states"]["TIME_WAIT"]
    assert set(nl) >= {"states", "listeners", "ephemeral", "counters", "sockstat", "conntrack", "source"}
    assert set(nl["listeners"][0]) == {"local", "backlog", "queue", "pid", "process"}


def test_accept_queue_overflow_shows_in_a_sample(empty_netns):
    """A listen(0) socket that is never accepted: extra SYNs overflow it; the sample's delta says so."""
    out = empty_netns.py(
        "import json, socket, time\n"
        "from tuneup.facts import counters as C\n"
        "from tuneup.facts.sockets import census\n"
        "before = C.read_counters()\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 6000)); l.listen(0)\n"
        "cs = []\n"
        "for _ in range(4):\n"
        "    c = socket.socket(); c.setblocking(False); c.connect_ex(('127.0.0.1', 6000)); cs.append(c)\n"
        "time.sleep(0.5)\n"
        "s = C.sample(0.0, first=before)\n"
        "c = census('netlink')\n"
        "print(json.dumps({'delta': s.delta['TcpExt'], 'rate': s.rate['TcpExt'], 'seconds': s.seconds,\n"
        "                  'listeners': [x.as_dict() for x in c.listeners]}))\n")
    d = json.loads(out)
    assert d["delta"]["ListenOverflows"] >= 1
    assert d["delta"]["ListenDrops"] >= d["delta"]["ListenOverflows"]
    (lst,) = d["listeners"]
    assert lst["local"] == "127.0.0.1:6000" and lst["backlog"] == 0 and lst["queue"] == 1


def test_no_sockets_at_all(empty_netns):
    d = empty_netns.census_json("netlink")
    assert sum(d["states"].values()) == 0 and d["listeners"] == []
    assert d["ephemeral"]["in_use"] == 0 and d["ephemeral"]["destinations"] == []
    assert d["_facts"]["ephemeral.top_remote"] is None and d["_facts"]["sockets.listeners.max_fill"] is None
    assert empty_netns.census_json("proc")["states"] == d["states"]


def test_ipv4_mapped_and_wildcard_listeners_match_ss(empty_netns):
    """Dual-stack [::] listener with an IPv4 client (a v4-mapped peer) and a 0.0.0.0 listener."""
    code = (
        "import json, socket, sys\n"
        "a = socket.socket(socket.AF_INET6); a.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n"
        "a.bind(('::', 7000)); a.listen(3)\n"
        "b = socket.socket(); b.bind(('0.0.0.0', 7001)); b.listen(9)\n"
        "c = socket.create_connection(('127.0.0.1', 7000))\n"
        "print('ready', flush=True); sys.stdin.read()\n")
    p = subprocess.Popen(["ip", "netns", "exec", empty_netns.name, sys.executable, "-c", code],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        d = empty_netns.census_json("netlink")
        ss = ss_census(empty_netns)
        # ss writes a dual-stack (not IPV6_V6ONLY) [::] listener as "*"; the census keeps "[::]"
        # (the /proc fallback could not tell the two apart)
        ss_listeners = [(("[::]" + x[0][1:]) if x[0].startswith("*:") else x[0], *x[1:]) for x in ss["listeners"]]
        assert [(x["local"], x["queue"], x["backlog"]) for x in d["listeners"]] == ss_listeners
        assert d["listeners"][0]["local"] == "[::]:7000"
        assert d["states"]["ESTABLISHED"] == ss["states"]["ESTABLISHED"] == 2
        assert empty_netns.census_json("proc")["states"] == d["states"]
    finally:
        p.kill()
        p.wait(timeout=30)
        p.stdin.close()
        p.stdout.close()


def test_script_entry_points(scene, views):
    """python -m tuneup.facts.sockets[_render]: the JSON the `tuneup sockets` command will print."""
    from .conftest import REPO
    p = scene.run(sys.executable, "-m", "tuneup.facts.sockets", "--format", "json", "--sample", "0.1",
                  cwd=str(REPO))
    d = json.loads(p.stdout)
    assert d["states"] == views["netlink"]["states"] and d["source"] == "netlink"
    assert [x["local"] for x in d["listeners"]] == [x["local"] for x in views["netlink"]["listeners"]]
    assert d["counters"]["sample"]["seconds"] >= 0.1
    assert set(d["counters"]["sample"]["delta"]) == {"TcpExt", "Tcp"}
    assert d["conntrack"]["loaded"] in (True, False)
    t = scene.run(sys.executable, "-m", "tuneup.facts.sockets_render", "--format", "table", "--proc",
                  cwd=str(REPO)).stdout
    assert "source: proc" in t and "backlog is not in /proc" in t and "127.0.0.1:5001" in t
    assert "127.0.0.1:5004" in t     # the busiest destination
