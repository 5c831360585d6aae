"""TCP socket census of the current network namespace: states, listeners, ephemeral-port usage.

Two ways to look, same answer:

``netlink``  NETLINK_SOCK_DIAG / inet_diag (what ``ss`` uses): one SOCK_DIAG_BY_FAMILY dump per
             family (AF_INET, AF_INET6), all states, no extensions (idiag_ext = 0). For a listener
             idiag_rqueue is the current accept queue and idiag_wqueue the effective backlog
             (min(listen() backlog, net.core.somaxconn)), as ``ss -ltn`` shows in Recv-Q / Send-Q.
``proc``     /proc/net/tcp and /proc/net/tcp6, the fallback when a netlink socket cannot be opened,
             bound or asked (EPERM in a locked-down container, no sock_diag module...). The accept
             queue is there (rx_queue of a LISTEN row) but the backlog is not: it is None.

Nothing is built per socket: the dump is walked in place and aggregated as it goes (a count per
state, the listeners, and a count per remote address:port of sockets whose local port lies in the
ephemeral range). Addresses are formatted only for listeners and for the reported destinations.

Ephemeral usage counts non-listening sockets whose local port is inside
net.ipv4.ip_local_port_range, keyed by remote address:port (a 4-tuple is unique, so each
destination can use the whole range once). Sockets whose local port is a listening port of the same
family are server-side (accepted) sockets and are not counted even when that port lies in the range.
TIME_WAIT sockets count: they hold the port.

Request sockets (TCP_NEW_SYN_RECV in the kernel) are reported as SYN_RECV by both the kernel's
inet_diag and /proc/net/tcp, as ``ss`` shows them (SYN-RECV); NEW_SYN_RECV is kept as a key for a
stable shape and is normally 0.

Owners (pid, process name) are resolved for listeners only, by walking /proc/PID/fd: same network
namespace first, low file descriptors first (listening sockets are usually opened early), stopping as
soon as every listener inode has an owner. A listener whose owner cannot be read keeps pid None.

``python -m tuneup.facts.sockets`` prints the census and counters as JSON (see sockets_render).
"""

from __future__ import annotations

import errno
import heapq
import os
import socket
import struct
import sys
from dataclasses import dataclass, field

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
IPPROTO_TCP = 6
AF_INET = int(socket.AF_INET)
AF_INET6 = int(socket.AF_INET6)

TCP_LISTEN = 10
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

# nlmsghdr(16) + inet_diag_msg(72); see include/uapi/linux/inet_diag.h
_REQ = struct.Struct("=IHHIIBBBxI48x")            # header + inet_diag_req_v2 (sockid all zero)
# walk: nlmsg_len, nlmsg_type, idiag_state, idiag_sport read little-endian (swapped via lookup)
_WALK = struct.Struct("<IH11xBxxH").unpack_from
# ephemeral key: family, dport (as read, swapped), dst[16]
_EKEY = struct.Struct("<16xB5xH16x16s").unpack_from
# a full message for listeners: family, state, sport, dport, src, dst, if, rqueue, wqueue, uid, inode
_FULL = struct.Struct("=16xBBxx2s2s16s16sI8x4xIIII").unpack_from
_ERRNO = struct.Struct("=i").unpack_from
MSG_MIN = 16 + 72


class NetlinkUnavailable(OSError):
    """inet_diag could not be used; the message says which step failed and why."""


@dataclass(frozen=True)
class Listener:
    local: str                      # "127.0.0.1:80", "[::1]:80"
    backlog: int | None             # effective backlog (Send-Q); None from /proc
    queue: int                      # current accept queue (Recv-Q)
    inode: int
    family: int                     # socket.AF_INET / AF_INET6
    port: int
    uid: int | None = None
    pid: int | None = None
    process: str | None = None

    def as_dict(self) -> dict:
        return {"local": self.local, "backlog": self.backlog, "queue": self.queue, "pid": self.pid,
                "process": self.process}


@dataclass(frozen=True)
class Destination:
    remote: str                     # "10.0.0.5:443", "[2001:db8::1]:443"
    in_use: int
    share: float                    # in_use / size of the ephemeral range

    def as_dict(self) -> dict:
        return {"remote": self.remote, "in_use": self.in_use, "share": self.share}


@dataclass(frozen=True)
class Ephemeral:
    range: tuple[int, int]
    in_use: int
    destinations: tuple[Destination, ...]
    distinct_destinations: int = 0

    @property
    def size(self) -> int:
        return self.range[1] - self.range[0] + 1

    def as_dict(self) -> dict:
        return {"range": list(self.range), "in_use": self.in_use,
                "destinations": [d.as_dict() for d in self.destinations]}


@dataclass(frozen=True)
class Census:
    states: dict[str, int]
    listeners: tuple[Listener, ...]
    ephemeral: Ephemeral
    source: str                     # "netlink" or "proc"
    note: str | None = None         # why the fallback was used, what is missing
    total: int = 0
    owner_note: str | None = field(default=None, compare=False)


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
    """65536 flags indexed by a port read in the *other* byte order: 1 = in [lo, hi].

    Row L (the port's low byte) holds ports H*256+L for H = 0..255; the in-range H are contiguous.
    """
    t = bytearray(65536)
    lo, hi = max(lo, 0), min(hi, 65535)
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


def _ephemeral(keys: dict, rng: tuple[int, int], in_use: int, top: int) -> Ephemeral:
    size = max(rng[1] - rng[0] + 1, 1)
    # busiest first; ties: IPv4 before IPv6, then by address (network order), then port
    best = heapq.nsmallest(top, keys.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][2], kv[0][1]))
    dests = []
    for (family, port_sw, raw), n in best:
        dests.append(Destination(format_addr(family, raw, _swap16(port_sw)), n, n / size))
    return Ephemeral(rng, in_use, tuple(dests), len(keys))


# ---------------------------------------------------------------------------- netlink

def _open_netlink() -> socket.socket:
    """The sock_diag socket (tests swap this for a fake that replays recorded datagrams)."""
    return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG)


def _netlink_dump(port_range: tuple[int, int], counts: list[int], keys: dict,
                  listeners: list[Listener]) -> tuple[int, int]:
    """Walk both families' dumps; fill counts/keys/listeners. Returns (total, ephemeral in use)."""
    try:
        s = _open_netlink()
    except OSError as e:
        raise NetlinkUnavailable(e.errno, f"netlink socket: {e.strerror or e}") from None
    try:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SO_RCVBUF_WANTED)
        except OSError:
            pass
        try:
            s.bind((0, 0))
        except OSError as e:
            raise NetlinkUnavailable(e.errno, f"netlink bind: {e.strerror or e}") from None
        buf = bytearray(RECV_BUFSIZE + MSG_MIN)     # a short last message never reads past the end
        recv_into = s.recv_into
        walk = _WALK
        ekey = _EKEY
        eph = _port_table(*port_range)
        listen_sw: list[int] = []
        total = 0
        in_use = 0
        get = keys.get
        seq = 0
        for family in (AF_INET, AF_INET6):
            for sp in listen_sw:           # listening ports exclude server-side sockets per family
                eph[sp] = 1
            listen_sw = []
            seq += 1
            req = _REQ.pack(_REQ.size, SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0,
                            family, IPPROTO_TCP, 0, 0xFFFFFFFF)
            try:
                s.send(req)
            except OSError as e:
                raise NetlinkUnavailable(e.errno, f"netlink send: {e.strerror or e}") from None
            done = False
            while not done:
                try:
                    n = recv_into(buf, RECV_BUFSIZE)
                except InterruptedError:
                    continue
                except OSError as e:
                    raise NetlinkUnavailable(e.errno, f"netlink recv: {e.strerror or e}") from None
                if n == 0:
                    raise NetlinkUnavailable(errno.EIO, "netlink recv: empty read before NLMSG_DONE")
                off = 0
                # the hot loop: one unpack per socket, a list increment, a table lookup
                while off + 16 <= n:
                    ln, typ, st, sp = walk(buf, off)
                    if typ == SOCK_DIAG_BY_FAMILY:
                        counts[st] += 1
                        if eph[sp]:
                            if st == TCP_LISTEN:
                                eph[sp] = 0        # server-side sockets on this port are not ephemeral
                                listen_sw.append(sp)
                                listeners.append(_listener_from(buf, off))
                            else:
                                k = ekey(buf, off)
                                keys[k] = get(k, 0) + 1
                                in_use += 1
                        elif st == TCP_LISTEN:
                            listeners.append(_listener_from(buf, off))
                        total += 1
                    elif typ == NLMSG_DONE:
                        if ln >= 20:
                            err = _ERRNO(buf, off + 16)[0]
                            if err < 0:
                                raise NetlinkUnavailable(-err, f"netlink dump: {os.strerror(-err)}")
                        done = True
                        break
                    elif typ == NLMSG_ERROR:
                        err = _ERRNO(buf, off + 16)[0] if ln >= 20 else -errno.EIO
                        if err < 0:
                            raise NetlinkUnavailable(-err, f"netlink request: {os.strerror(-err)}")
                    if ln < 16:
                        raise NetlinkUnavailable(errno.EIO, "netlink: malformed message")
                    off += (ln + 3) & ~3
        return total, in_use
    finally:
        s.close()


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
                       keys: dict, listeners: list[Listener]) -> tuple[int, int]:
    """Aggregate one /proc/net/tcp{,6} text into counts/keys/listeners; (total, ephemeral in use)."""
    lo, hi = port_range
    listen_ports: set[int] = set()
    total = 0
    in_use = 0
    get = keys.get
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
            rport = int(remote[-4:], 16)
            k = (family, _swap16(rport), _proc_addr(remote[:-5]))
            keys[k] = get(k, 0) + 1
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


def resolve_owners(inodes: set[int], proc: str = "/proc") -> tuple[dict[int, tuple[int, str | None]], str | None]:
    """{inode: (pid, comm)} for the given socket inodes, found via /proc/PID/fd.

    Processes in this network namespace are looked at first, then the others; in a first pass
    only each process's lowest OWNER_FIRST_PASS_FDS descriptors, then everything. Stops as soon as
    every inode is found. Unreadable processes are skipped; returns a note when some stay unknown.
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
    order = same + other
    denied = 0
    readlink = os.readlink
    done_fully: set[int] = set()

    def scan(pid: int, limit: int | None) -> bool:
        """Look at pid's fds; True when everything is found."""
        nonlocal denied
        base = f"{proc}/{pid}/fd/"
        seen = 0
        try:
            with os.scandir(base) as it:
                for entry in it:
                    if limit is not None and seen >= limit:
                        return False
                    seen += 1
                    try:
                        target = readlink(base + entry.name)
                    except OSError:
                        continue
                    ino = wanted.pop(target, None)
                    if ino is not None:
                        found[ino] = (pid, None)
                        if not wanted:
                            return True
        except PermissionError:
            denied += 1
            done_fully.add(pid)
            return False
        except OSError:
            done_fully.add(pid)
            return False
        if limit is None or seen < limit:
            done_fully.add(pid)
        return False

    finished = False
    for pid in order:
        if scan(pid, OWNER_FIRST_PASS_FDS):
            finished = True
            break
    if not finished:
        for pid in order:
            if pid not in done_fully and scan(pid, None):
                break
    names: dict[int, str | None] = {}
    for ino, (pid, _) in list(found.items()):
        if pid not in names:
            try:
                with open(f"{proc}/{pid}/comm") as f:
                    names[pid] = f.read().rstrip("\n")
            except OSError:
                names[pid] = None
        found[ino] = (pid, names[pid])
    note = None
    if wanted:
        note = f"{len(wanted)} listener(s) without a visible owner"
        if denied:
            note += f" ({denied} process(es) unreadable)"
    return found, note


# ---------------------------------------------------------------------------- census

def census(method: str = "auto", *, port_range: tuple[int, int] | None = None, top: int = DEFAULT_TOP,
           owners: bool = True, proc: str = "/proc") -> Census:
    """Count this network namespace's TCP sockets.

    method: "auto" (netlink, else /proc with a note saying why), "netlink" (raise
    NetlinkUnavailable when it cannot be used), "proc" (force the fallback).
    port_range: the ephemeral range; default net.ipv4.ip_local_port_range of this namespace.
    top: how many destinations to report. owners: resolve listener pid/process.
    """
    if method not in ("auto", "netlink", "proc"):
        raise ValueError(f"unknown census method {method!r}")
    rng = tuple(port_range) if port_range else read_port_range(proc)
    counts = _empty_counts()
    keys: dict = {}
    listeners: list[Listener] = []
    note = None
    source = "netlink"
    total = in_use = 0
    if method != "proc":
        try:
            total, in_use = _netlink_dump(rng, counts, keys, listeners)
        except NetlinkUnavailable as e:
            if method == "netlink":
                raise
            note = f"netlink inet_diag unavailable ({e.strerror}); read /proc/net/tcp{{,6}}"
            source = "proc"
            counts, keys, listeners = _empty_counts(), {}, []
    else:
        source = "proc"
        note = "/proc/net/tcp{,6} requested"
    if source == "proc":
        total, in_use, missing = _proc_dump(proc, rng, counts, keys, listeners)
        note += "; listener backlog is not in /proc, reported as null"
        if missing:
            note += "; " + ", ".join(missing)
    owner_note = None
    if owners and listeners:
        found, owner_note = resolve_owners({x.inode for x in listeners if x.inode}, proc)
        listeners = [
            Listener(x.local, x.backlog, x.queue, x.inode, x.family, x.port, x.uid, *found[x.inode])
            if x.inode in found else x
            for x in listeners
        ]
    listeners.sort(key=lambda x: (x.port, x.family, x.local))
    return Census(_states_dict(counts), tuple(listeners), _ephemeral(keys, rng, in_use, top), source,
                  note, total, owner_note)


if __name__ == "__main__":
    from tuneup.facts.sockets_render import main

    sys.exit(main())
