"""What is in use right now: open fds, TCP sockets and their ports, TCP buffer pages, free memory.

The capacity model subtracts these from the limits. Readers of the live host only; every function
returns Fact objects or plain data. Fact keys:

  self.fds                      fds tuneup itself holds open
  self.cap_sys_admin            1 if tuneup runs with CAP_SYS_ADMIN (exempt from fs.file-max), else 0
  proc.PID.cap_sys_admin        the same for another process
  mem.available_bytes           MemAvailable from /proc/meminfo
  sockstat.tcp.mem              pages of TCP buffer memory in use (compare with net.ipv4.tcp_mem)
  tcp.listen_ports              local ports of listening TCP sockets (IPv4 and IPv6), sorted
  tcp.busiest_destination       "addr:port" with the most connections from local ephemeral ports
  tcp.busiest_destination.ports how many local ports are in use toward it
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections import Counter
from dataclasses import dataclass

from tuneup.model import Fact, Snapshot

CAP_SYS_ADMIN = 21
TCP_LISTEN = 0x0A
TCP_TIME_WAIT = 0x06

# Sysctls the capacity model reads besides collect.BASE_KEYS.
SYSCTL_KEYS = frozenset({
    "net.ipv4.ip_local_reserved_ports", "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
})


@dataclass(frozen=True)
class TcpRow:
    """One row of /proc/net/tcp or tcp6."""

    local: str
    lport: int
    remote: str
    rport: int
    state: int
    inode: int
    rx_queue: int = 0   # LISTEN rows: connections waiting in the accept queue


def _hex_addr(text: str) -> str:
    raw = bytes.fromhex(text)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 prints the address as four host-order 32-bit words
    words = struct.unpack("<4I", raw)
    addr = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
    mapped = addr.removeprefix("::ffff:")
    return mapped if mapped != addr and "." in mapped else addr


def parse_proc_net_tcp(text: str) -> list[TcpRow]:
    rows = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        try:
            la, lp = f[1].split(":")
            ra, rp = f[2].split(":")
            rows.append(TcpRow(_hex_addr(la), int(lp, 16), _hex_addr(ra), int(rp, 16), int(f[3], 16), int(f[9]),
                               int(f[4].split(":")[1], 16)))
        except ValueError:
            continue
    return rows


def tcp_sockets(proc: str = "/proc") -> list[TcpRow]:
    """TCP sockets of the network namespace this process lives in (IPv4 then IPv6)."""
    rows: list[TcpRow] = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/net/{name}") as fh:
                rows.extend(parse_proc_net_tcp(fh.read()))
        except OSError:
            continue
    return rows


def open_fds(pid: int | str = "self", proc: str = "/proc") -> int:
    """Open fds of a process. For "self", the directory handle listdir itself holds is not counted."""
    n = len(os.listdir(f"{proc}/{pid}/fd"))
    return n - 1 if pid in ("self", os.getpid()) else n


def cap_sys_admin(pid: int | str = "self", proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("CapEff:"):
                    return (int(line.split()[1], 16) >> CAP_SYS_ADMIN) & 1
    except (OSError, ValueError):
        return None
    return None


def sockstat_tcp_mem(proc: str = "/proc") -> int | None:
    """TCP memory in use (pages), parsed by the counters' own sockstat parser."""
    from tuneup.facts.counters import parse_sockstat

    try:
        with open(f"{proc}/net/sockstat") as fh:
            return parse_sockstat(fh.read()).get("tcp", {}).get("mem")
    except OSError:
        return None


def mem_available(proc: str = "/proc") -> int | None:
    try:
        with open(f"{proc}/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def ports_toward(rows: list[TcpRow], remote: str, rport: int, port_range: tuple[int, int] | None = None,
                 count_time_wait: bool = True) -> int:
    """Distinct local ports (in the range, if given) used by sockets connected to remote:rport."""
    lo, hi = port_range or (0, 65535)
    return len({r.lport for r in rows if r.state != TCP_LISTEN and r.remote == remote and r.rport == rport
                and lo <= r.lport <= hi and (count_time_wait or r.state != TCP_TIME_WAIT)})


def listen_ports(rows: list[TcpRow]) -> tuple[int, ...]:
    return tuple(sorted({r.lport for r in rows if r.state == TCP_LISTEN}))


def busiest_destination(rows: list[TcpRow], port_range: tuple[int, int]) -> tuple[str, int] | None:
    lo, hi = port_range
    listening = set(listen_ports(rows))
    per: Counter[str] = Counter()
    seen: set[tuple[str, int, str]] = set()
    for r in rows:
        if r.state == TCP_LISTEN or r.lport in listening or not lo <= r.lport <= hi:
            continue
        dest = f"[{r.remote}]:{r.rport}" if ":" in r.remote else f"{r.remote}:{r.rport}"
        if (dest, r.lport, r.local) not in seen:
            seen.add((dest, r.lport, r.local))
            per[dest] += 1
    return per.most_common(1)[0] if per else None


def accept_queue(port: int, addrs: tuple[str, ...], proc: str = "/proc") -> int | None:
    """Connections waiting in the accept queue of the listener(s) on port; None if none listens.

    Asked over inet_diag (sockets.census) when it can be: /proc/net/tcp lists every socket and
    takes seconds to read after a probe of tens of thousands of connections.
    """
    wild = {"0.0.0.0", "::"}
    try:
        from tuneup.facts import sockets

        c = sockets.census("auto", owners=False, top=1, proc=proc)
        found = [lst.queue for lst in c.listeners
                 if lst.port == port and lst.local.rsplit(":", 1)[0].strip("[]") in (*addrs, *wild)]
    except (ImportError, OSError):
        found = [r.rx_queue for r in tcp_sockets(proc) if r.state == TCP_LISTEN and r.lport == port
                 and (r.local in addrs or r.local in wild)]
    return sum(found) if found else None


def listener_pid(port: int, addrs: tuple[str, ...], proc: str = "/proc") -> int | None:
    """The pid of a process holding a listening socket on port (bound to one of addrs or a wildcard)."""
    wild = {"0.0.0.0", "::"}
    inodes = {r.inode for r in tcp_sockets(proc) if r.state == TCP_LISTEN and r.lport == port
              and (r.local in addrs or r.local in wild) and r.inode}
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    me = os.getpid()
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            for fd in os.scandir(f"{entry.path}/fd"):
                try:
                    if os.readlink(fd.path) in wanted:
                        return int(entry.name)
                except OSError:
                    continue
        except OSError:
            continue
    return None


def capacity_facts(snap: Snapshot, port_range: tuple[int, int] | None, pids: tuple[int, ...] = (),
                   proc: str = "/proc") -> dict[str, Fact]:
    """The in-use facts the capacity model subtracts from limits (see the module docstring).

    A live snapshot already holds the socket census and the counters (tuneup.facts.collect): use
    them rather than walking the sockets a second time; /proc/net/tcp only for one without.
    """
    facts: dict[str, Fact] = {}

    def put(key: str, value, source: str, error: str | None = None) -> None:
        facts[key] = Fact(key, value, source, error)

    try:
        put("self.fds", open_fds("self", proc), f"{proc}/self/fd")
    except OSError as exc:
        put("self.fds", None, f"{proc}/self/fd", exc.strerror or str(exc))
    put("self.cap_sys_admin", cap_sys_admin("self", proc), f"{proc}/self/status CapEff")
    for pid in pids:
        put(f"proc.{pid}.cap_sys_admin", cap_sys_admin(pid, proc), f"{proc}/{pid}/status CapEff")
    put("mem.available_bytes", mem_available(proc), f"{proc}/meminfo MemAvailable")
    if snap.get("sockstat.tcp.mem") is None:
        put("sockstat.tcp.mem", sockstat_tcp_mem(proc), f"{proc}/net/sockstat TCP mem")
    if snap.listeners is not None:
        src = snap.get("sockets.source")
        src = f"socket census ({src.value if src else 'netlink'})"
        ports: tuple[int, ...] = tuple(sorted({int(x["port"]) for x in snap.listeners if x.get("port") is not None}))
        remote, in_use = snap.get("ephemeral.top_remote"), snap.get("ephemeral.top_in_use")
        top = (remote.value, in_use.value) if remote and remote.value and in_use else None
    else:
        rows = tcp_sockets(proc)
        src = f"{proc}/net/tcp, {proc}/net/tcp6"
        ports = listen_ports(rows)
        top = busiest_destination(rows, port_range) if port_range else None
    put("tcp.listen_ports", ports, src)
    if top:
        put("tcp.busiest_destination", top[0], src)
        put("tcp.busiest_destination.ports", top[1], src)
    return facts


def errname(code: int) -> str:
    return errno.errorcode.get(code, str(code))



def find_process(name: str, proc: str = "/proc") -> tuple[int, str]:
    """The pid of the process called name (comm or argv[0]); of several, the one holding most fds.

    Returns (pid, note) where note says how it was chosen; raises UsageError if there is none.
    """
    from tuneup.errors import UsageError
    from tuneup.facts.processes import find_by_name

    pids = [p for p in find_by_name(name, proc) if p != os.getpid()]
    if not pids:
        raise UsageError(f"no running process named {name!r}", "--process")
    if len(pids) == 1:
        return pids[0], ""

    def fds(pid: int) -> int:
        try:
            return open_fds(pid, proc)
        except OSError:
            return -1

    best = max(pids, key=lambda p: (fds(p), -p))
    return best, f"the one holding most fds of {len(pids)} processes named {name}"


def capacity_snapshot(pid: int | None = None, proc: str = "/proc"):
    """A Snapshot with everything the capacity model reads (see capacity.model)."""
    from tuneup.facts.collect import collect

    pids = (pid,) if pid is not None else ()
    snap = collect(SYSCTL_KEYS, pids, proc)
    rng = snap.get("net.ipv4.ip_local_port_range")
    port_range = rng.value if rng is not None and isinstance(rng.value, tuple) and len(rng.value) == 2 else None
    snap.facts.update(capacity_facts(snap, port_range, pids, proc))
    return snap
