"""Kernel counter parsers on fixed text, the readers on a fake /proc, sampling deltas."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneup.facts import counters as C
from tuneup.facts.sockets_render import census_facts, to_json_dict, to_table
from tuneup.facts.sockets import Census, Ephemeral

SOCKSTAT = """\
sockets: used 1043
TCP: inuse 812 orphan 3 tw 20411 alloc 830 mem 1931
UDP: inuse 4 mem 2
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
"""
SOCKSTAT6 = """\
TCP6: inuse 17
UDP6: inuse 2
UDPLITE6: inuse 0
RAW6: inuse 1
FRAG6: inuse 0 memory 0
"""
NETSTAT = """\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed EmbryonicRsts TW ListenOverflows ListenDrops TCPTimeWaitOverflow TCPAbortOnMemory TCPReqQFullDoCookies TCPReqQFullDrop TCPMemoryPressures TCPBacklogDrop
TcpExt: 12 10 1 0 9001 345 350 7 2 12 0 1 4
IpExt: InNoRoutes InTruncatedPkts InMcastPkts
IpExt: 0 0 18
MPTcpExt: MPCapableSYNRX
MPTcpExt: 0
"""
SNMP = """\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 123456
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors
Tcp: 1 200 120000 -1 4500 120000 3 40 812 9999999 8888888 1234 0 77 0
Udp: InDatagrams NoPorts
Udp: 10 2
"""


def test_parse_sockstat():
    s = C.parse_sockstat(SOCKSTAT)
    assert s["tcp"] == {"inuse": 812, "orphan": 3, "tw": 20411, "alloc": 830, "mem": 1931}
    assert s["sockets"] == {"used": 1043}
    assert s["frag"] == {"inuse": 0, "memory": 0}
    assert C.parse_sockstat(SOCKSTAT6)["tcp6"] == {"inuse": 17}
    assert C.parse_sockstat("") == {}
    assert C.parse_sockstat("garbage\nTCP: inuse x orphan 2\n") == {"tcp": {"orphan": 2}}


def test_parse_netstat_and_snmp():
    n = C.parse_pairs(NETSTAT)
    assert n["TcpExt"]["ListenOverflows"] == 345 and n["TcpExt"]["ListenDrops"] == 350
    assert n["TcpExt"]["TCPTimeWaitOverflow"] == 7 and n["TcpExt"]["TCPBacklogDrop"] == 4
    assert len(n["TcpExt"]) == 13
    assert n["IpExt"] == {"InNoRoutes": 0, "InTruncatedPkts": 0, "InMcastPkts": 18}
    assert n["MPTcpExt"] == {"MPCapableSYNRX": 0}
    s = C.parse_pairs(SNMP)
    assert s["Tcp"]["MaxConn"] == -1 and s["Tcp"]["CurrEstab"] == 812 and len(s["Tcp"]) == 15
    assert s["Udp"] == {"InDatagrams": 10, "NoPorts": 2}
    # a stray line does not shift the pairs
    assert C.parse_pairs("junk\n" + NETSTAT)["TcpExt"]["ListenOverflows"] == 345


def test_parse_conntrack():
    assert C.parse_conntrack("42\n", "262144\n") == {"loaded": True, "count": 42, "max": 262144}
    assert C.parse_conntrack(None, None) == {"loaded": False, "count": None, "max": None}
    assert C.parse_conntrack("1", None)["loaded"] is False


def fake_proc(root: Path, netstat: str = NETSTAT, snmp: str = SNMP, conntrack: bool = True) -> str:
    (root / "net").mkdir(exist_ok=True)
    (root / "net" / "sockstat").write_text(SOCKSTAT)
    (root / "net" / "sockstat6").write_text(SOCKSTAT6)
    (root / "net" / "netstat").write_text(netstat)
    (root / "net" / "snmp").write_text(snmp)
    nf = root / "sys" / "net" / "netfilter"
    if conntrack:
        nf.mkdir(parents=True, exist_ok=True)
        (nf / "nf_conntrack_count").write_text("1500\n")
        (nf / "nf_conntrack_max").write_text("262144\n")
    return str(root)


def test_read_counters_from_a_fake_proc(tmp_path):
    k = C.read_counters(fake_proc(tmp_path))
    assert k.sockstat["tcp"]["tw"] == 20411 and k.sockstat["tcp6"]["inuse"] == 17
    assert k.sockstat["udp6"] == {"inuse": 2}
    assert k.netstat["TcpExt"]["ListenOverflows"] == 345
    assert k.snmp["Tcp"]["ActiveOpens"] == 4500
    assert k.conntrack == {"loaded": True, "count": 1500, "max": 262144}
    assert k.errors == {}


def test_read_counters_without_conntrack_or_files(tmp_path):
    k = C.read_counters(fake_proc(tmp_path, conntrack=False))
    assert k.conntrack == {"loaded": False, "count": None, "max": None}
    empty = tmp_path / "empty"
    empty.mkdir()
    k = C.read_counters(str(empty))
    assert (k.sockstat, k.netstat, k.snmp) == ({}, {}, {})


def test_read_counters_on_this_host():
    k = C.read_counters()
    assert "inuse" in k.sockstat["tcp"] and "ListenOverflows" in k.netstat["TcpExt"]
    assert "CurrEstab" in k.snmp["Tcp"]
    assert isinstance(k.conntrack["loaded"], bool)


def test_delta_and_sample(tmp_path):
    root = Path(fake_proc(tmp_path))
    before = C.read_counters(str(root))
    (root / "net" / "netstat").write_text(NETSTAT.replace("9001 345 350", "9101 355 362"))
    (root / "net" / "snmp").write_text(SNMP.replace("4500 120000", "4600 120400"))
    s = C.sample(2.0, str(root), first=before)
    assert s.seconds == 2.0
    assert s.delta["TcpExt"]["ListenOverflows"] == 10 and s.delta["TcpExt"]["ListenDrops"] == 12
    assert s.delta["TcpExt"]["TW"] == 100 and s.delta["TcpExt"]["SyncookiesSent"] == 0
    assert s.rate["TcpExt"]["ListenOverflows"] == 5.0
    assert s.delta["Tcp"]["ActiveOpens"] == 100 and s.rate["Tcp"]["PassiveOpens"] == 200.0
    assert s.after.netstat["TcpExt"]["ListenOverflows"] == 355

    census = Census(states={"ESTABLISHED": 1}, listeners=(), source="netlink", total=1,
                    ephemeral=Ephemeral((32768, 60999), 0, ()))
    d = to_json_dict(census, s.after, s)
    assert d["counters"]["sample"]["seconds"] == 2.0
    assert d["counters"]["sample"]["delta"]["TcpExt"]["ListenOverflows"] == 10
    assert d["counters"]["sample"]["rate"]["Tcp"]["ActiveOpens"] == 50.0
    assert "Other" not in d["counters"]["TcpExt"]
    assert d["conntrack"] == {"loaded": True, "count": 1500, "max": 262144}
    assert d["sockstat"]["tcp"]["orphan"] == 3
    f = census_facts(census, s.after, s)
    assert f["sample.TcpExt.ListenOverflows.delta"] == 10
    assert f["sample.TcpExt.ListenOverflows.rate"] == 5.0
    assert f["sample.Tcp.ActiveOpens.delta"] == 100 and f["sample.seconds"] == 2.0
    assert f["netstat.TcpExt.ListenOverflows"] == 355 and f["conntrack.count"] == 1500
    assert f["sockstat.tcp.mem"] == 1931 and f["ephemeral.max_share"] == 0.0
    t = to_table(census, s.after, s)
    assert "delta (2.0s)" in t and "conntrack: 1500 / 262144" in t


def test_sample_really_waits(tmp_path):
    s = C.sample(0.05, fake_proc(tmp_path))
    assert s.seconds >= 0.05
    assert all(v == 0 for v in s.delta["TcpExt"].values())


@pytest.mark.parametrize("argv", [["--format", "yaml"], ["--top"], ["--bogus"]])
def test_script_entry_rejects_bad_arguments(argv, capsys):
    from tuneup.facts.sockets_render import main
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err
