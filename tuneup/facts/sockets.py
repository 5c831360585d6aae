"""TCP socket census of the current network namespace: states, listeners, ephemeral-port usage.

Two ways to look, same answer:

``netlink``  NETLINK_SOCK_DIAG / inet_diag (what ``ss`` uses): one SOCK_DIAG_BY_FAMILY dump per
             family (AF_INET, AF_INET6), all connection states (ALL_STATES), no extensions
             (idiag_ext = 0). For a listener
             idiag_rqueue is the current accept queue and idiag_wqueue the effective backlog
             (min(listen() backlog, net.core.somaxconn)), as ``ss -ltn`` shows in Recv-Q / Send-Q.
``proc``     /proc/net/tcp and /proc/net/tcp6, the fallback when a netlink socket cannot be opened,
             bound or asked (EPERM in a locked-down container, no sock_diag module...). The accept
             queue is there (rx_queue of a LISTEN row) but the backlog is not: it is None.

Nothing is built per socket: the dump is walked in place and aggregated as it goes (a count per
state, the listeners, and a count per remote address:port of sockets whose local port lies in the
ephemeral range). Addresses are formatted only for listeners and for the reported destinations.

``scope="ephemeral"`` (what an audit asks for when no rule reads the state counts): one dump of
both families through inet_diag's older request, TCPDIAG_GETSOCK (struct inet_diag_req, which the
kernel still serves and dumps for AF_UNSPEC: one walk of the socket hash tables where
SOCK_DIAG_BY_FAMILY takes one per family, 2 ms each on an idle host with 262,144 hash buckets),
filtered in the kernel by an inet_diag bytecode ``dport <= 0 || (sport >= lo && sport <= hi)``:
listeners (the only sockets without a remote port), then the sockets on an ephemeral port, as
``ss 'dport = :0 or (sport >= :lo and sport <= :hi)'`` would ask for them. The kernel walks the
listening hash before the established one, so each listener is known before the sockets on its
port. Listeners and ephemeral usage are exactly those of a full census; the state counts and the
total are not gathered (``counted`` False). A kernel that refuses the request or the filter gets
the full dump.

Ephemeral usage counts non-listening sockets whose local port is inside
net.ipv4.ip_local_port_range, keyed by remote address:port (a 4-tuple is unique, so each
destination can use the whole range once). Sockets whose local port is a listening port of the same
family are server-side (accepted) sockets and are not counted even when that port lies in the range.
TIME_WAIT sockets count: they hold the port.

Request sockets (TCP_NEW_SYN_RECV in the kernel) are reported as SYN_RECV by both the kernel's
inet_diag and /proc/net/tcp, as ``ss`` shows them (SYN-RECV); NEW_SYN_RECV is kept as a key for a
stable shape and is normally 0.

Owners (pid, process name) are resolved for listeners only, by walking /proc/PID/fd: same network
namespace first, each process's lowest descriptors first (listening sockets are usually opened
early), the rest within a budget of readlinks, stopping as soon as every listener inode has an
owner. A listener whose owner cannot be found keeps pid None, and Census.owner_note says why.

``python -m tuneup.facts.sockets`` prints the census and counters as JSON (see sockets_render).
"""

from __future__ import annotations

import errno
import heapq
import os
import _socket as socket  # the C module: socket.py would add ~10 ms of imports (enum, selectors)
import struct
import sys
from dataclasses import dataclass, field

from tuneup.record import Frozen

_set = object.__setattr__   # the written-out __init__s of the Frozen classes

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IPPROTO_TCP = 6
TCP_LISTEN = 10
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6

# bits 1..12: ESTABLISHED .. NEW_SYN_RECV, what `ss -a` asks for. Not bit 13 (TCP_BOUND_INACTIVE,
# kernel 6.6+): bound-but-idle sockets are no connections, and asking for them makes the kernel
# walk every bind bucket (about +30% kernel time at 200K sockets).
ALL_STATES = 0x1FFE
LISTEN_ONLY = 1 << TCP_LISTEN
INET_DIAG_REQ_BYTECODE = 1
INET_DIAG_BC_JMP = 1
INET_DIAG_BC_S_GE = 2
INET_DIAG_BC_S_LE = 3
INET_DIAG_BC_D_LE = 5
TCPDIAG_GETSOCK = 18     # the request of struct inet_diag_req: both families in one dump (AF_UNSPEC)
# index = kernel TCP state number (include/net/tcp_states.h)
STATE_NAMES = (
    None, "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE",
    "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV",
)

DEFAULT_PORT_RANGE = (32768, 60999)
DEFAULT_TOP = 20
RECV_BUFSIZE = 1 << 20          # one dump datagram is at most 32 KiB today; be generous
SO_RCVBUF_WANTED = 4 << 20
OWNER_FIRST_PASS_FDS = 64       # fds looked at per process before a full pass
OWNER_FD_BUDGET = 20_000        # readlinks allowed in the second pass: about 0.1-0.2 s here

# nlmsghdr(16) + inet_diag_msg(72); see include/uapi/linux/inet_diag.h
_REQ = struct.Struct("=IHHIIBBBxI48x")            # header + inet_diag_req_v2 (sockid all zero)
# header + inet_diag_req: family, src_len, dst_len, ext, sockid (all zero), states, dbs
_REQ_COMPAT = struct.Struct("=IHHIIBBBB48xII")
# nlattr INET_DIAG_REQ_BYTECODE + 7 inet_diag_bc_op {code, yes, no} (a port test is two: the second
# holds the port in `no`): "D_LE 0; JMP; S_GE lo; S_LE hi" = dport <= 0 || (lo <= sport <= hi).
# inet_diag_bc_run() follows `yes` when a test holds (JMP never does), `no` when it fails; landing
# exactly at the end accepts, 4 bytes past it rejects. inet_diag_bc_audit() walks the `yes` chain
# and wants every `no` target on it, hence the JMP (as ss builds an "or").
_BC_COMPAT = struct.Struct("=HH" + "BBH" * 7)
# walk: nlmsg_len, nlmsg_type (host order), idiag_state, idiag_sport read in host order too (it is
# big endian: _port_table is indexed by that reading)
_WALK = struct.Struct("=IH11xBxxH").unpack_from
# a full message for listeners: family, state, sport, dport, src, dst, if, rqueue, wqueue, uid, inode
_WALK_FAM = struct.Struct("=IH10xBBxxH").unpack_from   # the same with idiag_family before the state
_FULL = struct.Struct("=16xBBxx2s2s16s16sI8x4xIIII").unpack_from
_ERRNO = struct.Struct("=i").unpack_from
MSG_MIN = 16 + 72


class NetlinkUnavailable(OSError):
    """inet_diag could not be used; the message says which step failed and why."""


@dataclass(init=False, eq=False, repr=False)
class Listener(Frozen):
    """A listening socket: address, backlog, accept queue and owner."""

    local: str                      # "127.0.0.1:80", "[::1]:80"
    backlog: int | None             # effective backlog (Send-Q); None from /proc
    queue: int                      # current accept queue (Recv-Q)
    inode: int
    family: int                     # socket.AF_INET / AF_INET6
    port: int
    uid: int | None = None
    pid: int | None = None
    process: str | None = None

    def __init__(self, local, backlog, queue, inode, family, port, uid=None, pid=None, process=None) -> None:
        _set(self, "local", local)
        _set(self, "backlog", backlog)
        _set(self, "queue", queue)
        _set(self, "inode", inode)
        _set(self, "family", family)
        _set(self, "port", port)
        _set(self, "uid", uid)
        _set(self, "pid", pid)
        _set(self, "process", process)

    def as_dict(self) -> dict:
        return {"local": self.local, "backlog": self.backlog, "queue": self.queue, "pid": self.pid,
                "process": self.process}


@dataclass(init=False, eq=False, repr=False)
class Destination(Frozen):
    """A remote address:port and how much of the ephemeral range reaches it."""

    remote: str                     # "10.0.0.5:443", "[2001:db8::1]:443"
    in_use: int
    share: float                    # in_use / size of the ephemeral range

    def __init__(self, remote, in_use, share) -> None:
        _set(self, "remote", remote)
        _set(self, "in_use", in_use)
        _set(self, "share", share)

    def as_dict(self) -> dict:
        return {"remote": self.remote, "in_use": self.in_use, "share": self.share}


@dataclass(init=False, eq=False, repr=False)
class Ephemeral(Frozen):
    """The ephemeral port range, the sockets in it, the busiest destinations."""

    range: tuple[int, int]
    in_use: int
    destinations: tuple[Destination, ...]
    distinct_destinations: int = 0

    def __init__(self, range, in_use, destinations, distinct_destinations=0) -> None:
        _set(self, "range", range)
        _set(self, "in_use", in_use)
        _set(self, "destinations", destinations)
        _set(self, "distinct_destinations", distinct_destinations)

    @property
    def size(self) -> int:
        return self.range[1] - self.range[0] + 1

    def as_dict(self) -> dict:
        return {"range": list(self.range), "in_use": self.in_use,
                "destinations": [d.as_dict() for d in self.destinations]}


@dataclass(init=False, eq=False, repr=False)
class Census(Frozen):
    """The TCP sockets of a network namespace: counts, listeners, ephemeral use."""

    states: dict[str, int]
    listeners: tuple[Listener, ...]
    ephemeral: Ephemeral
    source: str                     # "netlink" or "proc"
    note: str | None = None         # why the fallback was used, what is missing
    total: int = 0
    owner_note: str | None = field(default=None, compare=False)
    counted: bool = True            # False: states and total were not gathered (scope="ephemeral")

    def __init__(self, states, listeners, ephemeral, source, note=None, total=0, owner_note=None,
                 counted=True) -> None:
        _set(self, "states", states)
        _set(self, "listeners", listeners)
        _set(self, "ephemeral", ephemeral)
        _set(self, "source", source)
        _set(self, "note", note)
        _set(self, "total", total)
        _set(self, "owner_note", owner_note)
        _set(self, "counted", counted)


# ---------------------------------------------------------------------------- helpers

def read_port_range(proc: str = "/proc") -> tuple[int, int]:
    try:
        with open(f"{proc}/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()[:2]
        return int(lo), int(hi)
    except (OSError, ValueError):
        return DEFAULT_PORT_RANGE


def _swap16(x: int) -> int:
    return ((x & 0xFF) << 8) | (x >> 8)


def _port_table(lo: int, hi: int) -> bytearray:
    """65536 flags indexed by a big-endian port read in host order: 1 = in [lo, hi].

    On a little-endian host row L (the port's low byte) holds ports H*256+L for H = 0..255, and the
    in-range H are contiguous.
    """
    lo, hi = max(lo, 0), min(hi, 65535)
    if sys.byteorder == "big":
        t = bytearray(65536)
        if lo <= hi:
            t[lo:hi + 1] = b"\1" * (hi - lo + 1)
        return t
    t = bytearray(65536)
    for low in range(256):
        first = max(0, -((low - lo) // 256))          # ceil((lo - low) / 256)
        last = min(255, (hi - low) // 256)
        if first <= last:
            t[low * 256 + first: low * 256 + last + 1] = b"\1" * (last - first + 1)
    return t


def format_addr(family: int, raw: bytes, port: int) -> str:
    if family == AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, raw[:4])}:{port}"
    return f"[{socket.inet_ntop(socket.AF_INET6, raw[:16])}]:{port}"


def _empty_counts() -> list[int]:
    return [0] * 256


def _states_dict(counts: list[int]) -> dict[str, int]:
    return {name: counts[i] for i, name in enumerate(STATE_NAMES) if name}


def _ephemeral(keys: dict[int, dict[bytes, int]], rng: tuple[int, int], in_use: int, top: int) -> Ephemeral:
    """keys: {family: {dport(2, big endian) + src(16) + dst(16): count}} -> per remote addr:port."""
    size = max(rng[1] - rng[0] + 1, 1)
    by_remote: dict[tuple[int, bytes, bytes], int] = {}
    for family, counted in keys.items():
        for k, n in counted.items():
            r = (family, k[18:34], k[0:2])
            by_remote[r] = by_remote.get(r, 0) + n
    # busiest first; ties: IPv4 before IPv6, then by address, then port (all in network order)
    best = heapq.nsmallest(top, by_remote.items(), key=lambda kv: (-kv[1], kv[0]))
    dests = tuple(Destination(format_addr(family, raw, int.from_bytes(port, "big")), n, n / size)
                  for (family, raw, port), n in best)
    return Ephemeral(rng, in_use, dests, len(by_remote))


# ---------------------------------------------------------------------------- netlink

def _open_netlink() -> socket.socket:
    """The sock_diag socket (tests swap this for a fake that replays recorded datagrams)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)


def _request(family: int, seq: int) -> bytes:
    """The dump request for one family: all states."""
    return _REQ.pack(_REQ.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0, family, IPPROTO_TCP, 0,
                     ALL_STATES)


def _ephemeral_request(seq: int, port_range: tuple[int, int]) -> bytes:
    """One TCPDIAG_GETSOCK dump of both families: listeners, and the other sockets whose local
    port is inside port_range (see the module's docstring)."""
    lo, hi = max(port_range[0], 0), min(port_range[1], 65535)
    bc = _BC_COMPAT.pack(_BC_COMPAT.size, INET_DIAG_REQ_BYTECODE,
                         INET_DIAG_BC_D_LE, 8, 12, 0, 0, 0,      # dport <= 0: on to the JMP, else to S_GE
                         INET_DIAG_BC_JMP, 4, 20,                # taken: to the end, accept
                         INET_DIAG_BC_S_GE, 8, 20, 0, 0, lo,      # sport >= lo: on, else reject
                         INET_DIAG_BC_S_LE, 8, 12, 0, 0, hi)      # sport <= hi: the end (accept), else reject
    return _REQ_COMPAT.pack(_REQ_COMPAT.size + len(bc), TCPDIAG_GETSOCK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0,
                            0, 0, 0, 0, ALL_STATES | LISTEN_ONLY, 0) + bc


class _Diag:
    """An open, bound sock_diag socket and a receive buffer; NetlinkUnavailable when it cannot be."""

    def __init__(self) -> None:
        try:
            self.sock = _open_netlink()
        except OSError as e:
            raise NetlinkUnavailable(e.errno, f"netlink socket: {e.strerror or e}") from None
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SO_RCVBUF_WANTED)
            except OSError:
                pass
            try:
                self.sock.bind((0, 0))
            except OSError as e:
                raise NetlinkUnavailable(e.errno, f"netlink bind: {e.strerror or e}") from None
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray(RECV_BUFSIZE + MSG_MIN)     # a short last message never reads past the end
        self.view = memoryview(self.buf)

    def send(self, req: bytes) -> None:
        try:
            self.sock.send(req)
        except OSError as e:
            raise NetlinkUnavailable(e.errno, f"netlink send: {e.strerror or e}") from None

    def recv(self) -> tuple[bytes, int]:
        """The next datagram (bytes: slices of it are hashable keys) and its length."""
        while True:
            try:
                n = self.sock.recv_into(self.buf, RECV_BUFSIZE)
            except InterruptedError:
                continue
            except OSError as e:
                raise NetlinkUnavailable(e.errno, f"netlink recv: {e.strerror or e}") from None
            if n == 0:
                raise NetlinkUnavailable(errno.EIO, "netlink recv: empty read before NLMSG_DONE")
            return bytes(self.view[:n + MSG_MIN]), n

    def close(self) -> None:
        self.sock.close()


def _netlink_dump(port_range: tuple[int, int], counts: list[int], keys: dict[int, dict[bytes, int]],
                  listeners: list[Listener]) -> tuple[int, int]:
    """Walk both families' dumps; fill counts/keys/listeners. Returns (total, ephemeral in use)."""
    diag = _Diag()
    try:
        walk = _WALK
        eph = _port_table(*port_range)
        in_use = 0
        for seq, family in enumerate((AF_INET, AF_INET6), 1):
            listen_sw: list[int] = []
            fam_keys: dict[bytes, int] = keys.setdefault(family, {})
            get = fam_keys.get
            diag.send(_request(family, seq))
            done = False
            while not done:
                data, n = diag.recv()
                off = 0
                # The hot loop, per socket: one unpack, a list increment, a table lookup; for a
                # socket on an ephemeral port also a 34-byte slice (dport, src, dst) and a dict bump.
                while off + 16 <= n:
                    ln, typ, st, sp = walk(data, off)
                    if typ == 20:                   # SOCK_DIAG_BY_FAMILY
                        counts[st] += 1
                        if eph[sp]:
                            if st != 10:
                                k = data[off + 22:off + 56]
                                fam_keys[k] = get(k, 0) + 1
                                in_use += 1
                            else:                   # sockets on a listening port are server-side
                                eph[sp] = 0
                                listen_sw.append(sp)
                                listeners.append(_listener_from(data, off))
                        elif st == 10:
                            listeners.append(_listener_from(data, off))
                        if ln < MSG_MIN:
                            raise NetlinkUnavailable(errno.EIO, "netlink: short inet_diag message")
                        off += (ln + 3) & ~3
                        continue
                    if _control(data, off, ln, typ):
                        done = True
                        break
                    off += (ln + 3) & ~3
            for sp in listen_sw:                    # listening ports count per family only
                eph[sp] = 1
        return sum(counts), in_use
    finally:
        diag.close()


def _netlink_dump_ephemeral(port_range: tuple[int, int], keys: dict[int, dict[bytes, int]],
                            listeners: list[Listener]) -> int:
    """The listeners and the sockets on an ephemeral port, of both families, in one filtered dump
    (TCPDIAG_GETSOCK); fill keys/listeners. Returns the ephemeral ports in use."""
    diag = _Diag()
    try:
        walk = _WALK_FAM
        eph4 = _port_table(*port_range)
        eph6 = bytearray(eph4)          # listening ports count per family only
        keys4 = keys.setdefault(AF_INET, {})
        keys6 = keys.setdefault(AF_INET6, {})
        in_use = 0
        diag.send(_ephemeral_request(1, port_range))
        done = False
        while not done:
            data, n = diag.recv()
            off = 0
            # Per socket (the kernel sent only listeners and sockets on an ephemeral port): one
            # unpack, a table lookup (not a listening port of its family), the 34-byte key (dport,
            # src, dst) and a dict bump.
            while off + 16 <= n:
                ln, typ, fam, st, sp = walk(data, off)
                if typ == TCPDIAG_GETSOCK:
                    if ln < MSG_MIN:
                        raise NetlinkUnavailable(errno.EIO, "netlink: short inet_diag message")
                    if st == 10:        # the kernel sends every listener before the other sockets
                        (eph4 if fam == AF_INET else eph6)[sp] = 0
                        listeners.append(_listener_from(data, off))
                    elif fam == AF_INET:
                        if eph4[sp]:
                            k = data[off + 22:off + 56]
                            keys4[k] = keys4.get(k, 0) + 1
                            in_use += 1
                    elif eph6[sp]:
                        k = data[off + 22:off + 56]
                        keys6[k] = keys6.get(k, 0) + 1
                        in_use += 1
                    off += (ln + 3) & ~3
                    continue
                if _control(data, off, ln, typ):
                    done = True
                    break
                off += (ln + 3) & ~3
        return in_use
    finally:
        diag.close()


def _control(data: bytes, off: int, ln: int, typ: int) -> bool:
    """A message other than a socket: True at NLMSG_DONE; an error (in DONE or NLMSG_ERROR) or a
    malformed length raises NetlinkUnavailable; anything else (an acknowledgement) is skipped."""
    if typ == NLMSG_DONE:
        if ln >= 20:
            err = _ERRNO(data, off + 16)[0]
            if err < 0:
                raise NetlinkUnavailable(-err, f"netlink dump: {os.strerror(-err)}")
        return True
    if typ == NLMSG_ERROR:
        err = _ERRNO(data, off + 16)[0] if ln >= 20 else -errno.EIO
        if err < 0:
            raise NetlinkUnavailable(-err, f"netlink request: {os.strerror(-err)}")
    if ln < 16:
        raise NetlinkUnavailable(errno.EIO, "netlink: malformed message")
    return False


def _listener_from(buf, off: int) -> Listener:
    family, _st, sport, _dport, src, _dst, _if, rq, wq, uid, inode = _FULL(buf, off)
    port = int.from_bytes(sport, "big")
    return Listener(format_addr(family, src, port), wq, rq, inode, family, port, uid)


# ---------------------------------------------------------------------------- /proc

def _proc_addr(hexaddr: str) -> bytes:
    """/proc/net/tcp prints each 32-bit word of the address in host byte order."""
    out = b"".join(int(hexaddr[i:i + 8], 16).to_bytes(4, sys.byteorder)
                   for i in range(0, len(hexaddr), 8))
    return out.ljust(16, b"\0")


def parse_proc_net_tcp(text: str, family: int, port_range: tuple[int, int], counts: list[int],
                       keys: dict[int, dict[bytes, int]], listeners: list[Listener]) -> tuple[int, int]:
    """Aggregate one /proc/net/tcp{,6} text into counts/keys/listeners; (total, ephemeral in use)."""
    lo, hi = port_range
    listen_ports: set[int] = set()
    total = 0
    in_use = 0
    fam_keys = keys.setdefault(family, {})
    get = fam_keys.get
    zeros = bytes(16)
    lines = text.splitlines()
    for line in lines[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        local, remote, st_hex, queues = f[1], f[2], f[3], f[4]
        st = int(st_hex, 16)
        counts[st] += 1
        total += 1
        lport = int(local[-4:], 16)
        if st == TCP_LISTEN:
            tx, rx = queues.split(":")
            listen_ports.add(lport)
            port = lport
            listeners.append(Listener(format_addr(family, _proc_addr(local[:-5]), port), None,
                                      int(rx, 16), int(f[9]), family, port, int(f[7])))
        elif lo <= lport <= hi and lport not in listen_ports:
            # the netlink key: dport (big endian) + src (unused, zeros here) + dst
            k = bytes.fromhex(remote[-4:]) + zeros + _proc_addr(remote[:-5])
            fam_keys[k] = get(k, 0) + 1
            in_use += 1
    return total, in_use


def _proc_dump(proc: str, port_range, counts, keys, listeners) -> tuple[int, int, list[str]]:
    total = in_use = 0
    missing = []
    for name, family in (("tcp", AF_INET), ("tcp6", AF_INET6)):
        try:
            with open(f"{proc}/net/{name}") as fh:
                text = fh.read()
        except FileNotFoundError:
            missing.append(f"{proc}/net/{name} absent")
            continue
        t, u = parse_proc_net_tcp(text, family, port_range, counts, keys, listeners)
        total += t
        in_use += u
    return total, in_use, missing


# ---------------------------------------------------------------------------- owners

def _netns_of(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def resolve_owners(inodes: set[int], proc: str = "/proc", *,
                   budget: int | None = OWNER_FD_BUDGET) -> tuple[dict[int, tuple[int, str | None]], str | None]:
    """{inode: (pid, comm)} for the given socket inodes, found via /proc/PID/fd.

    Processes in this network namespace are looked at first, then the others. First pass: each
    process's lowest OWNER_FIRST_PASS_FDS descriptors (listening sockets are opened early, and this
    is what finds them on a busy server: a process holding 20000 connections costs 20000 readlinks
    otherwise). Second pass: the rest of every process, at most `budget` descriptors (None: no
    limit). Stops as soon as every inode is found. Unreadable processes are skipped. Returns a note
    when some inodes stay without an owner.
    """
    wanted = {f"socket:[{i}]": i for i in inodes}
    found: dict[int, tuple[int, str | None]] = {}
    if not wanted:
        return found, None
    try:
        pids = [int(e) for e in os.listdir(proc) if e.isdigit()]
    except OSError as e:
        return found, f"cannot list {proc}: {e.strerror}"
    me = _netns_of(f"{proc}/self/ns/net")
    same, other = [], []
    for pid in pids:
        (same if _netns_of(f"{proc}/{pid}/ns/net") == me else other).append(pid)
    order = sorted(same) + sorted(other)        # older (lower) pids first: servers start early
    readlink = os.readlink
    denied = 0
    more: list[tuple[int, set[str]]] = []      # pids with descriptors beyond the first pass

    # pass 1: the lowest descriptors of every process
    for pid in order:
        base = f"{proc}/{pid}/fd/"
        seen: set[str] = set()
        try:
            with os.scandir(base) as it:       # /proc lists descriptors in ascending order
                for entry in it:
                    if len(seen) == OWNER_FIRST_PASS_FDS:
                        more.append((pid, seen))
                        break
                    seen.add(entry.name)
                    try:
                        ino = wanted.pop(readlink(base + entry.name), None)
                    except PermissionError:
                        # the kernel lets no descriptor of this process be read (ptrace access
                        # mode, an LSM): its listing can be, its links cannot; the rest is skipped
                        raise
                    except OSError:
                        continue
                    if ino is not None:
                        found[ino] = (pid, None)
                        if not wanted:
                            break
        except PermissionError:
            denied += 1
        except OSError:
            pass
        if not wanted:
            break

    # pass 2: everything else, within the budget
    left = budget
    stopped = False
    for pid, seen in more if wanted else ():
        try:
            dfd = os.open(f"{proc}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            continue
        try:
            names = sorted((n for n in os.listdir(dfd) if n not in seen), key=int)
            if left is not None and len(names) > left:
                names = names[:left]
                stopped = True
            for name in names:
                try:
                    ino = wanted.pop(readlink(name, dir_fd=dfd), None)
                except PermissionError:     # none of this process's links can be read (pass 1)
                    break
                except OSError:
                    continue
                if ino is not None:
                    found[ino] = (pid, None)
                    if not wanted:
                        break
            if left is not None:
                left -= len(names)
        except OSError:
            pass
        finally:
            os.close(dfd)
        if not wanted or stopped:
            break

    names_of: dict[int, str | None] = {}
    for ino, (pid, _) in list(found.items()):
        if pid not in names_of:
            try:
                with open(f"{proc}/{pid}/comm", encoding="utf-8", errors="replace") as f:
                    names_of[pid] = f.read().rstrip("\n")
            except OSError:
                names_of[pid] = None
        found[ino] = (pid, names_of[pid])
    note = None
    if wanted:
        note = f"{len(wanted)} listener(s) without a visible owner"
        if denied:
            note += f" ({denied} process(es) unreadable)"
        if stopped:
            note += f" (search stopped after {budget} more descriptors)"
    return found, note


# ---------------------------------------------------------------------------- census

def census(method: str = "auto", *, port_range: tuple[int, int] | None = None, top: int = DEFAULT_TOP,
           owners: bool = True, owner_budget: int | None = OWNER_FD_BUDGET, proc: str = "/proc",
           scope: str = "all") -> Census:
    """Count this network namespace's TCP sockets.

    method: "auto" (netlink, else /proc with a note saying why), "netlink" (raise
    NetlinkUnavailable when it cannot be used), "proc" (force the fallback).
    port_range: the ephemeral range; default net.ipv4.ip_local_port_range of this namespace.
    top: how many destinations to report. owners: resolve listener pid/process, reading at most
    owner_budget descriptors beyond each process's first OWNER_FIRST_PASS_FDS (None: no limit).
    scope: "all"; or "ephemeral": over netlink only listeners and sockets on an ephemeral port are
    dumped (the same listeners and ephemeral usage), states and total are not counted (counted False).
    """
    if method not in ("auto", "netlink", "proc"):
        raise ValueError(f"unknown census method {method!r}")
    if scope not in ("all", "ephemeral"):
        raise ValueError(f"unknown census scope {scope!r}")
    rng = tuple(port_range) if port_range else read_port_range(proc)
    counts = _empty_counts()
    keys: dict = {}
    listeners: list[Listener] = []
    note = None
    source = "netlink"
    total = in_use = 0
    counted = True
    if method != "proc" and scope == "ephemeral":
        try:
            in_use = _netlink_dump_ephemeral(rng, keys, listeners)
            counted = False
        except NetlinkUnavailable:      # a kernel that refuses the request or the filter: the full dump
            keys, listeners = {}, []
    if method != "proc" and counted:
        try:
            total, in_use = _netlink_dump(rng, counts, keys, listeners)
        except NetlinkUnavailable as e:
            if method == "netlink":
                raise
            note = f"netlink inet_diag unavailable ({e.strerror}); read /proc/net/tcp{{,6}}"
            source = "proc"
            counts, keys, listeners = _empty_counts(), {}, []
    elif method == "proc":
        source = "proc"
        note = "/proc/net/tcp{,6} requested"
    if source == "proc":
        total, in_use, missing = _proc_dump(proc, rng, counts, keys, listeners)
        note += "; listener backlog is not in /proc, reported as null"
        if missing:
            note += "; " + ", ".join(missing)
    owner_note = None
    if owners and listeners:
        found, owner_note = resolve_owners({x.inode for x in listeners if x.inode}, proc,
                                           budget=owner_budget)
        listeners = [
            Listener(x.local, x.backlog, x.queue, x.inode, x.family, x.port, x.uid, *found[x.inode])
            if x.inode in found else x
            for x in listeners
        ]
    listeners.sort(key=lambda x: (x.port, x.family, x.local))
    return Census(_states_dict(counts) if counted else {}, tuple(listeners), _ephemeral(keys, rng, in_use, top),
                  source, note, total if counted else 0, owner_note, counted)


if __name__ == "__main__":
    from tuneup.facts.sockets_render import main

    sys.exit(main())
