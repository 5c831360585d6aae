"""The census parsers on fixed input: recorded-style netlink datagrams and /proc/net/tcp text."""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest

from tuneup.facts import sockets as S
from tuneup.facts.counters import Counters
from tuneup.facts.sockets_render import census_facts, to_json_dict, to_table

HDR = struct.Struct("=IHHII")
MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")


def diag(family, state, sport, dport, src, dst, rq=0, wq=0, uid=0, inode=0, attrs=0):
    """One SOCK_DIAG_BY_FAMILY message; `attrs` bytes of (fake) attributes after inet_diag_msg."""
    pack = socket.AF_INET if family == 2 else socket.AF_INET6
    s = socket.inet_pton(pack, src).ljust(16, b"\0")
    d = socket.inet_pton(pack, dst).ljust(16, b"\0")
    body = MSG.pack(family, state, 0, 0, sport.to_bytes(2, "big"), dport.to_bytes(2, "big"), s, d, 0,
                    b"\0" * 8, 0, rq, wq, uid, inode) + b"\xee" * attrs
    return HDR.pack(16 + len(body), S.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body + b"\0" * (-len(body) % 4)


def done(err=0):
    return HDR.pack(20, S.NLMSG_DONE, 2, 1, 0) + struct.pack("=i", err)


def error(err):
    return HDR.pack(36, S.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", err) + b"\0" * 16


class FakeNetlink:
    """Replays a list of datagrams per request (one list per family)."""

    def __init__(self, per_request):
        self.per_request = list(per_request)
        self.queue = []
        self.sent = []
        self.closed = False

    def setsockopt(self, *a):
        pass

    def bind(self, addr):
        pass

    def send(self, data):
        self.sent.append(bytes(data))
        self.queue = list(self.per_request.pop(0))
        return len(data)

    def recv_into(self, buf, n):
        d = self.queue.pop(0)
        buf[:len(d)] = d
        return len(d)

    def close(self):
        self.closed = True


V4 = [
    diag(2, 10, 80, 0, "0.0.0.0", "0.0.0.0", rq=3, wq=511, inode=111, attrs=36),
    diag(2, 10, 25000, 0, "127.0.0.1", "0.0.0.0", rq=0, wq=16, inode=112, attrs=36),
    diag(2, 1, 40001, 443, "10.0.0.1", "10.0.0.9", attrs=40),
    diag(2, 1, 40002, 443, "10.0.0.2", "10.0.0.9", attrs=36),
    diag(2, 6, 40003, 443, "10.0.0.1", "10.0.0.9"),           # TIME_WAIT minisock: no attributes
    diag(2, 1, 40004, 8080, "10.0.0.1", "10.0.0.8", attrs=36),
    diag(2, 1, 80, 50000, "10.0.0.1", "10.0.0.7", attrs=36),    # server side, port 80 outside range
    diag(2, 1, 25000, 1234, "127.0.0.1", "127.0.0.1", attrs=36),  # server side of the in-range listener
    diag(2, 3, 80, 50001, "10.0.0.1", "10.0.0.7"),             # request sock, reported as SYN_RECV
    diag(2, 1, 1234, 25000, "127.0.0.1", "127.0.0.1", attrs=36),  # its client: port 1234 below range
]
V6 = [
    diag(10, 10, 443, 0, "::", "::", rq=0, wq=4096, inode=113, attrs=44),
    diag(10, 1, 40005, 443, "2001:db8::1", "2001:db8::9", attrs=44),
    diag(10, 8, 40006, 443, "::ffff:10.0.0.1", "::ffff:10.0.0.9", attrs=44),
    diag(10, 1, 25000, 999, "::1", "::1", attrs=44),  # v6: port 25000 is not listened on in v6
]


def fake_census(monkeypatch, per_request, **kw):
    fake = FakeNetlink(per_request)
    monkeypatch.setattr(S, "_open_netlink", lambda: fake)
    c = S.census("netlink", port_range=(25000, 60999), owners=False, **kw)
    return c, fake


def test_netlink_walk_multipart_datagrams(monkeypatch):
    # v4 arrives in three datagrams, the last with NLMSG_DONE after data; v6 with DONE on its own
    v4 = [b"".join(V4[:3]), b"".join(V4[3:7]), b"".join(V4[7:]) + done()]
    v6 = [b"".join(V6), done()]
    c, fake = fake_census(monkeypatch, [v4, v6])
    assert fake.closed
    assert [struct.unpack_from("=B", r, 16)[0] for r in fake.sent] == [socket.AF_INET, socket.AF_INET6]
    for r in fake.sent:       # all states, no extensions, a dump request
        ln, typ, flags, _, _ = HDR.unpack_from(r)
        fam, proto, ext, states = struct.unpack_from("=BBBxI", r, 16)
        assert (ln, typ, flags, proto, ext, states) == (len(r), 20, 0x301, 6, 0, 0x1FFE) and ln == 72
    assert c.source == "netlink" and c.note is None
    assert c.total == len(V4) + len(V6)
    assert c.states["ESTABLISHED"] == 8 and c.states["LISTEN"] == 3 and c.states["TIME_WAIT"] == 1
    assert c.states["SYN_RECV"] == 1 and c.states["CLOSE_WAIT"] == 1 and c.states["NEW_SYN_RECV"] == 0
    assert [(x.local, x.backlog, x.queue, x.inode) for x in c.listeners] == [
        ("0.0.0.0:80", 511, 3, 111), ("[::]:443", 4096, 0, 113), ("127.0.0.1:25000", 16, 0, 112)]
    eph = c.ephemeral
    # v4: 40001, 40002, 40003 (TW) -> 10.0.0.9:443; 40004 -> .8:8080; the 25000 server side is not
    # counted (listened on in v4); v6: 40005, 40006 (mapped), and ::1 port 25000 (no v6 listener there)
    assert eph.in_use == 7
    assert [(d.remote, d.in_use) for d in eph.destinations] == [
        ("10.0.0.9:443", 3), ("10.0.0.8:8080", 1), ("[::1]:999", 1), ("[::ffff:10.0.0.9]:443", 1),
        ("[2001:db8::9]:443", 1)]
    assert eph.destinations[0].share == 3 / 36000
    assert eph.distinct_destinations == 5


def test_top_limits_the_destinations(monkeypatch):
    c, _ = fake_census(monkeypatch, [[b"".join(V4) + done()], [done()]], top=1)
    assert [d.remote for d in c.ephemeral.destinations] == ["10.0.0.9:443"]
    assert c.ephemeral.distinct_destinations == 2


@pytest.mark.parametrize("reply, code", [
    ([error(-errno.EPERM)], errno.EPERM),
    ([V4[0] + done(-errno.EINTR)], errno.EINTR),
    ([V4[0], error(-errno.ENOENT)], errno.ENOENT),
])
def test_netlink_errors_raise_or_fall_back(monkeypatch, reply, code, fake_proc):
    fake = FakeNetlink([reply, [done()]])
    monkeypatch.setattr(S, "_open_netlink", lambda: fake)
    with pytest.raises(S.NetlinkUnavailable) as e:
        S.census("netlink", owners=False)
    assert e.value.errno == code
    assert fake.closed
    fake = FakeNetlink([reply, [done()]])
    monkeypatch.setattr(S, "_open_netlink", lambda: fake)
    c = S.census("auto", owners=False, proc=fake_proc)
    assert c.source == "proc" and os.strerror(code) in c.note and "backlog" in c.note
    assert c.states["LISTEN"] == 3 and fake.closed


def test_netlink_ack_error_zero_is_not_an_error(monkeypatch):
    # NLMSG_ERROR with error 0 is an acknowledgement
    c, _ = fake_census(monkeypatch, [[error(0) + V4[2], done()], [done()]])
    assert c.states["ESTABLISHED"] == 1


def test_auto_falls_back_when_the_socket_is_refused(monkeypatch, fake_proc):
    def refuse():
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(S, "_open_netlink", refuse)
    c = S.census(owners=False, proc=fake_proc)
    assert c.source == "proc"
    assert "netlink inet_diag unavailable (netlink socket: Operation not permitted)" in c.note
    assert all(x.backlog is None for x in c.listeners)
    with pytest.raises(S.NetlinkUnavailable):
        S.census("netlink", owners=False)
    with pytest.raises(ValueError):
        S.census("ss")


# a /proc/net/tcp and tcp6 as the kernel prints them (little-endian host)
PROC_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0050 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:61A8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 112 1 0000000000000000 100 0 0 10 0
   2: 0100000A:9C41 0900000A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 201 1 0000000000000000 20 4 30 10 -1
   3: 0200000A:9C42 0900000A:01BB 01 00000000:00000000 00:00000000 00000000     0        0 202 1 0000000000000000 20 4 30 10 -1
   4: 0100000A:9C43 0900000A:01BB 06 00000000:00000000 03:00001770 00000000     0        0 0 3 0000000000000000
   5: 0100000A:9C44 0800000A:1F90 01 00000000:00000000 00:00000000 00000000     0        0 204 1 0000000000000000 20 4 30 10 -1
   6: 0100000A:0050 0700000A:C350 01 00000000:00000000 00:00000000 00000000     0        0 205 1 0000000000000000 20 4 30 10 -1
   7: 0100007F:61A8 0100007F:04D2 01 00000000:00000000 00:00000000 00000000     0        0 206 1 0000000000000000 20 4 30 10 -1
   8: 0100000A:0050 0700000A:C351 03 00000000:00000000 01:00000064 00000000     0        0 0 1 0000000000000000
   9: 0100007F:04D2 0100007F:61A8 01 00000000:00000000 00:00000000 00000000     0        0 207 1 0000000000000000 20 4 30 10 -1
"""
PROC_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113 1 0000000000000000 100 0 0 10 0
   1: B80D0120000000000000000001000000:9C45 B80D0120000000000000000009000000:01BB 01 00000000:00000000 00:00000000 00000000     0        0 301 1 0000000000000000 20 4 30 10 -1
   2: 0000000000000000FFFF00000100000A:9C46 0000000000000000FFFF00000900000A:01BB 08 00000000:00000000 00:00000000 00000000     0        0 302 1 0000000000000000 20 4 30 10 -1
   3: 00000000000000000000000001000000:61A8 00000000000000000000000001000000:03E7 01 00000000:00000000 00:00000000 00000000     0        0 303 1 0000000000000000 20 4 30 10 -1
"""


@pytest.fixture
def fake_proc(tmp_path):
    """A /proc with net/tcp, net/tcp6 (the texts above) and the port range 25000-60999."""
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_TCP)
    (tmp_path / "net" / "tcp6").write_text(PROC_TCP6)
    (tmp_path / "sys" / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "sys" / "net" / "ipv4" / "ip_local_port_range").write_text("25000\t60999\n")
    return str(tmp_path)


@pytest.mark.skipif(S.sys.byteorder != "little", reason="the fixed text is a little-endian host's")
def test_proc_text_gives_the_same_census_as_netlink(fake_proc, monkeypatch):
    p = S.census("proc", owners=False, proc=fake_proc)
    n, _ = fake_census(monkeypatch, [[b"".join(V4) + done()], [b"".join(V6) + done()]])
    assert p.source == "proc" and "backlog" in p.note
    assert p.states == n.states
    assert [(x.local, x.queue, x.inode, x.family) for x in p.listeners] == \
        [(x.local, x.queue, x.inode, x.family) for x in n.listeners]
    assert all(x.backlog is None for x in p.listeners)
    assert p.ephemeral == n.ephemeral
    assert p.total == n.total
    assert p.ephemeral.range == (25000, 60999)


def test_proc_missing_tcp6(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(PROC_TCP.splitlines()[0] + "\n")
    c = S.census("proc", owners=False, proc=str(tmp_path))
    assert "tcp6 absent" in c.note and c.total == 0
    assert c.ephemeral.range == S.DEFAULT_PORT_RANGE        # no sys/ under this fake proc


@pytest.mark.skipif(S.sys.byteorder != "little", reason="the swapped table is a little-endian host's")
def test_port_table_matches_a_plain_loop():
    for lo, hi in [(32768, 60999), (0, 65535), (1, 1), (255, 257), (1024, 65535), (40000, 40100), (5, 4)]:
        ref = bytearray(65536)
        for p in range(lo, hi + 1):
            ref[S._swap16(p)] = 1
        assert S._port_table(lo, hi) == ref, (lo, hi)


def test_format_addr():
    assert S.format_addr(2, socket.inet_aton("10.1.2.3") + bytes(12), 80) == "10.1.2.3:80"
    assert S.format_addr(10, socket.inet_pton(socket.AF_INET6, "::1"), 443) == "[::1]:443"
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:127.0.0.1")
    assert S.format_addr(10, mapped, 1) == "[::ffff:127.0.0.1]:1"


def test_owner_resolution_finds_our_own_listener():
    import os
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        ino = os.fstat(s.fileno()).st_ino
        found, note = S.resolve_owners({ino})
        assert found == {ino: (os.getpid(), open("/proc/self/comm").read().strip())}
        assert note is None
        found, note = S.resolve_owners({ino, 999999999})
        assert ino in found and "1 listener(s) without a visible owner" in note
        assert S.resolve_owners(set()) == ({}, None)
    finally:
        s.close()


def test_renderers_on_a_fixed_census(monkeypatch):
    c, _ = fake_census(monkeypatch, [[b"".join(V4) + done()], [b"".join(V6) + done()]])
    k = Counters(sockstat={"tcp": {"inuse": 10, "orphan": 1, "tw": 2, "alloc": 12, "mem": 5},
                           "tcp6": {"inuse": 3}},
                 netstat={"TcpExt": {"ListenOverflows": 7, "ListenDrops": 7, "Other": 1}},
                 snmp={"Tcp": {"CurrEstab": 8, "ActiveOpens": 100}},
                 conntrack={"loaded": False, "count": None, "max": None})
    d = to_json_dict(c, k)
    assert list(d) == ["states", "listeners", "ephemeral", "counters", "sockstat", "conntrack", "source"]
    assert d["listeners"][0] == {"local": "0.0.0.0:80", "backlog": 511, "queue": 3, "pid": None, "process": None}
    assert d["ephemeral"]["range"] == [25000, 60999]
    assert d["ephemeral"]["destinations"][0] == {"remote": "10.0.0.9:443", "in_use": 3, "share": 3 / 36000}
    assert d["counters"] == {"TcpExt": {"ListenOverflows": 7, "ListenDrops": 7},
                             "Tcp": {"CurrEstab": 8, "ActiveOpens": 100}}
    assert d["conntrack"] == {"loaded": False, "count": None, "max": None}
    f = census_facts(c, k)
    assert f["sockets.state.ESTABLISHED"] == 8 and f["sockets.total"] == 14
    assert f["sockets.listeners.max_fill"] == round(3 / 511, 4)
    assert f["ephemeral.top_remote"] == "10.0.0.9:443" and f["ephemeral.top_in_use"] == 3
    assert f["ephemeral.in_use"] == 7 and f["ephemeral.size"] == 36000
    assert f["sockstat.tcp.tw"] == 2 and f["sockstat.tcp6.inuse"] == 3
    assert f["netstat.TcpExt.Other"] == 1 and f["snmp.Tcp.CurrEstab"] == 8
    assert f["conntrack.loaded"] is False and f["conntrack.count"] is None
    assert not any(k.startswith("sample.") for k in f)
    t = to_table(c, k)
    for s in ("0.0.0.0:80", "511", "10.0.0.9:443", "ListenOverflows", "conntrack: not loaded", "source: netlink"):
        assert s in t


def fake_fd_proc(root, procs: dict[int, dict[int, str]], netns: dict[int, str]) -> str:
    """/proc with PID/fd/N -> target symlinks, PID/ns/net and PID/comm."""
    (root / "self" / "ns").mkdir(parents=True)
    os.symlink("net:[1]", root / "self" / "ns" / "net")
    for pid, fds in procs.items():
        (root / str(pid) / "fd").mkdir(parents=True)
        (root / str(pid) / "ns").mkdir()
        os.symlink(netns.get(pid, "net:[1]"), root / str(pid) / "ns" / "net")
        (root / str(pid) / "comm").write_text(f"proc{pid}\n")
        for fd, target in fds.items():
            os.symlink(target, root / str(pid) / "fd" / str(fd))
    return str(root)


def test_owner_search_passes_and_budget(tmp_path, monkeypatch):
    proc = fake_fd_proc(tmp_path, {
        100: {fd: f"socket:[{1000 + fd}]" for fd in range(3, 300)},
        101: {0: "/dev/null", 3: "socket:[77]", 4: "pipe:[5]"},
        102: {3: "socket:[88]"},                                   # in another namespace
        200: {fd: f"socket:[{5000 + fd}]" for fd in range(3, 100)},
    }, {102: "net:[2]"})
    # the first pass (a process's lowest descriptors) is enough for small processes
    assert S.resolve_owners({77, 88}, proc, budget=0) == ({77: (101, "proc101"), 88: (102, "proc102")}, None)
    assert S.resolve_owners({5090, 1150}, proc)[0] == {5090: (200, "proc200"), 1150: (100, "proc100")}
    # with no first pass, the second goes pid by pid, descriptor by descriptor, within the budget
    monkeypatch.setattr(S, "OWNER_FIRST_PASS_FDS", 0)
    found, note = S.resolve_owners({5090, 77}, proc, budget=20)
    assert found == {} and note == "2 listener(s) without a visible owner (search stopped after 20 more descriptors)"
    found, note = S.resolve_owners({5090, 1010}, proc, budget=20)
    assert found == {1010: (100, "proc100")} and "1 listener(s)" in note
    found, note = S.resolve_owners({5090, 99999}, proc, budget=None)
    assert found == {5090: (200, "proc200")} and note == "1 listener(s) without a visible owner"


def test_owner_search_skips_a_process_whose_links_cannot_be_read(tmp_path, monkeypatch):
    """A process whose descriptors can be listed but not read (readlink EACCES: the kernel's ptrace
    access check, an LSM; pid 1 of a sandbox seen from inside it) costs one readlink, not one per
    descriptor, and is named unreadable. Mocked: as root no process of a test's own can refuse."""
    proc = fake_fd_proc(tmp_path, {
        50: {fd: f"socket:[{9000 + fd}]" for fd in range(0, 400)},
        101: {3: "socket:[77]"},
    }, {})
    real = os.readlink
    calls: list[str] = []

    def readlink(path, *, dir_fd=None):
        calls.append(str(path))
        if "/50/fd/" in str(path):
            raise PermissionError(13, "Permission denied")
        return real(path, dir_fd=dir_fd)

    monkeypatch.setattr(S.os, "readlink", readlink)
    found, note = S.resolve_owners({77, 31337}, proc)
    assert found == {77: (101, "proc101")}
    assert note == "1 listener(s) without a visible owner (1 process(es) unreadable)"
    assert sum("/50/fd/" in c for c in calls) == 1


_PORT_TESTS = {S.INET_DIAG_BC_S_GE: lambda sp, dp, p: sp >= p, S.INET_DIAG_BC_S_LE: lambda sp, dp, p: sp <= p,
               4: lambda sp, dp, p: dp >= p, S.INET_DIAG_BC_D_LE: lambda sp, dp, p: dp <= p}


def _bc_accepts(bc: bytes, sport: int, dport: int = 1) -> bool:
    """inet_diag_bc_run() of the kernel (net/ipv4/inet_diag.c) for the operations the census
    sends: NOP, JMP (always its `no`), and the port tests (the port in the next op's `no`)."""
    pc, left = 0, len(bc)
    while left > 0:
        code, yes, no = struct.unpack_from("=BBH", bc, pc)
        if code == 0:
            ok = True
        elif code == S.INET_DIAG_BC_JMP:
            ok = False
        else:
            ok = _PORT_TESTS[code](sport, dport, struct.unpack_from("=BBH", bc, pc + 4)[2])
        step = yes if ok else no
        pc, left = pc + step, left - step
    return left == 0


def _bc_audit_ok(bc: bytes) -> bool:
    """inet_diag_bc_audit() and valid_cc() of the kernel, for the same operations: a kernel that
    says no answers the dump with EINVAL."""
    def valid_cc(length: int, cc: int) -> bool:
        pc = 0
        while length >= 0:
            if cc > length:
                return False
            if cc == length:
                return True
            yes = struct.unpack_from("=BBH", bc, pc)[1]
            if yes < 4 or yes & 3:
                return False
            length, pc = length - yes, pc + yes
        return False

    pc, length = 0, len(bc)
    while length > 0:
        code, yes, no = struct.unpack_from("=BBH", bc, pc)
        min_len = 4
        if code in _PORT_TESTS:
            min_len += 4
            if length < min_len:
                return False
        elif code not in (0, S.INET_DIAG_BC_JMP):
            return False
        if code != 0:
            if no < min_len or no > length + 4 or no & 3:
                return False
            if no < length and not valid_cc(len(bc), length - no):
                return False
        if yes < min_len or yes > length + 4 or yes & 3:
            return False
        pc, length = pc + yes, length - yes
    return length == 0


def compat(msg: bytes) -> bytes:
    """A SOCK_DIAG_BY_FAMILY message as the TCPDIAG_GETSOCK dump sends it (its type is the request's)."""
    return msg[:4] + struct.pack("=H", S.TCPDIAG_GETSOCK) + msg[6:]


def test_ephemeral_scope_asks_for_listeners_and_the_range_in_one_dump(monkeypatch):
    """One TCPDIAG_GETSOCK dump of both families (AF_UNSPEC), filtered to dport <= 0 (listeners) or
    a local port in the range; what the kernel returns for it (listeners first) gives the full
    census's listeners and ephemeral usage, and no state counts."""
    full, _ = fake_census(monkeypatch, [[b"".join(V4) + done()], [b"".join(V6) + done()]])
    probe = FakeNetlink([[done()]])
    monkeypatch.setattr(S, "_open_netlink", lambda: probe)
    S.census("netlink", port_range=(25000, 60999), owners=False, scope="ephemeral")
    [req] = probe.sent
    ln, typ, flags, _, _ = HDR.unpack_from(req)
    assert (ln, typ, flags) == (len(req), S.TCPDIAG_GETSOCK, 0x301) and ln == 16 + 60 + 4 + 28
    fam, src_len, dst_len, ext = struct.unpack_from("=BBBB", req, 16)
    states, dbs = struct.unpack_from("=II", req, 16 + 4 + 48)
    assert (fam, src_len, dst_len, ext, states, dbs) == (0, 0, 0, 0, 0x1FFE, 0)
    assert req[20:68] == bytes(48)                                # inet_diag_sockid: any
    assert struct.unpack_from("=HH", req, 76) == (32, 1)          # nlattr INET_DIAG_REQ_BYTECODE
    bc = req[80:]
    assert _bc_audit_ok(bc)
    assert all(_bc_accepts(bc, p, 0) for p in range(0, 65536, 7))  # no remote port: a listener
    assert [p for p in range(0, 65536) if _bc_accepts(bc, p, 443)] == list(range(25000, 61000))
    assert not _bc_audit_ok(bc[:-8]) and not _bc_audit_ok(bytes([5, 24, 8, 0, 0, 0, 0, 0]) + bc[8:])

    def sent(msgs):
        return [compat(m) for m in msgs if _bc_accepts(bc, int.from_bytes(m[20:22], "big"),
                                                       int.from_bytes(m[22:24], "big"))]

    listening = [m for m in V4 + V6 if m[17] == 10]
    others = [m for m in V4 + V6 if m[17] != 10]
    fake = FakeNetlink([[b"".join(sent(listening)), b"".join(sent(others[:4])), b"".join(sent(others[4:])) + done()]])
    monkeypatch.setattr(S, "_open_netlink", lambda: fake)
    c = S.census("netlink", port_range=(25000, 60999), owners=False, scope="ephemeral")
    assert c.listeners == full.listeners and c.ephemeral == full.ephemeral and fake.closed
    assert c.states == {} and c.total == 0 and not c.counted and full.counted
    facts = census_facts(c, Counters({}, {}, {}, {}))
    assert "sockets.total" not in facts and not any(k.startswith("sockets.state.") for k in facts)
    assert facts["ephemeral.in_use"] == 7 and facts["sockets.listeners.count"] == 3


def test_ephemeral_scope_falls_back_to_the_full_dump(monkeypatch):
    """A kernel that refuses the request or the filter (EINVAL) gets the unfiltered dump per family:
    a full census; so does an answer with a message too short for an inet_diag_msg."""
    short = HDR.pack(40, S.TCPDIAG_GETSOCK, 2, 1, 0) + bytes(24)
    for refusal in ([error(-errno.EINVAL)], [done(-errno.EOPNOTSUPP)], [short + done()]):
        fake = FakeNetlink([refusal, [b"".join(V4) + done()], [b"".join(V6) + done()]])
        monkeypatch.setattr(S, "_open_netlink", lambda: fake)
        c = S.census("netlink", port_range=(25000, 60999), owners=False, scope="ephemeral")
        assert c.counted and c.total == len(V4) + len(V6) and c.states["LISTEN"] == 3 and c.source == "netlink"
        assert [HDR.unpack_from(r)[1] for r in fake.sent] == [S.TCPDIAG_GETSOCK, 20, 20]
        assert [x.inode for x in c.listeners] == [111, 113, 112]
    with pytest.raises(ValueError):
        S.census("netlink", scope="some")
