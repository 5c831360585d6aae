"""Kernel memory per idle established TCP connection, measured.

Holds N idle established loopback connections in a throwaway network namespace and reports what the
kernel spent on them: TCP memory pages (/proc/net/sockstat "mem"), and the slab caches a socket
costs (/proc/slabinfo: TCP, TCPv6, sock_inode_cache, dentry, filp, plus the epoll and kmalloc caches
as a whole-slab cross-check from /proc/meminfo "Slab").

Each connection has two sockets on loopback (the client's and the server's), both on this host, so
the figure per server-side connection is the total divided by 2N. Several worker processes hold the
sockets (each under an open-files limit of 20000, this machine's hard limit): one server process per
listening port and one client process per port.

Run as root:  python benchmarks/conn_memory_bench.py [N]        (default N = 50000)

The slab counters are host-wide: other work on the host adds noise, so the run measures twice
(before and after, several samples) and prints the spread. The result is compared with the
published figure (MigratoryData's 12M-connection test: about 36 GB of kernel memory for 12M
sockets, ~3 KB per socket) and with tuneup's per-connection defaults.
"""

from __future__ import annotations

import os
import resource
import secrets
import socket
import subprocess
import sys
import time

SLABS = ("TCP", "TCPv6", "sock_inode_cache", "dentry", "filp", "eventpoll_epi", "eventpoll_pwq")
PER_WORKER = 15000
PUBLISHED_BYTES_PER_SOCKET = 36e9 / 12e6   # MigratoryData C10M/12M write-up: ~36 GB kernel for 12M sockets


def slabinfo() -> dict[str, int]:
    """cache name -> bytes held by active objects (active_objs x objsize)."""
    out = {}
    with open("/proc/slabinfo") as fh:
        for line in fh.readlines()[2:]:
            parts = line.split()
            if len(parts) > 4 and parts[0] in SLABS:
                out[parts[0]] = int(parts[1]) * int(parts[3])
    return out


def sockstat() -> dict[str, int]:
    with open("/proc/net/sockstat") as fh:
        for line in fh:
            if line.startswith("TCP:"):
                f = line.split()[1:]
                return {f[i]: int(f[i + 1]) for i in range(0, len(f) - 1, 2)}
    return {}


def meminfo(key: str) -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def measure() -> dict[str, int]:
    s = slabinfo()
    s["sockstat.mem_bytes"] = sockstat().get("mem", 0) * os.sysconf("SC_PAGE_SIZE")
    s["meminfo.Slab"] = meminfo("Slab")
    return s


# -- workers (run inside the namespace) ----------------------------------------------------------

def _nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(20000, hard), hard))


def server(port: int, n: int) -> None:
    _nofile()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4096)
    held = []
    print("listening", flush=True)
    while len(held) < n:
        c, _ = ls.accept()
        held.append(c)
    print("held", len(held), flush=True)
    sys.stdin.read()          # hold until the parent closes stdin


def client(port: int, n: int) -> None:
    _nofile()
    held = []
    for _ in range(n):
        s = socket.socket()
        s.connect(("127.0.0.1", port))
        held.append(s)
    print("held", len(held), flush=True)
    sys.stdin.read()


def inner(n: int) -> None:
    """In the namespace: start the workers, measure before and after they hold n connections."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as fh:   # per-namespace key
        fh.write("1024 65535")
    workers = (n + PER_WORKER - 1) // PER_WORKER
    shares = [n // workers + (1 if i < n % workers else 0) for i in range(workers)]
    time.sleep(1)
    before = [measure() for _ in range(3)]
    procs = []
    me = os.path.abspath(__file__)
    for i, k in enumerate(shares):
        port = 20000 + i
        sp = subprocess.Popen([sys.executable, me, "--server", str(port), str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
        assert sp.stdout.readline().strip() == "listening"
        cp = subprocess.Popen([sys.executable, me, "--client", str(port), str(k)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
        procs += [sp, cp]
    for p in procs:
        line = p.stdout.readline().strip()
        assert line.startswith("held"), line
    time.sleep(2)
    after = [measure() for _ in range(3)]
    est = sockstat()
    for p in procs:
        p.stdin.close()
    for p in procs:
        p.wait(timeout=60)

    def avg(rows: list[dict[str, int]], k: str) -> float:
        return sum(r.get(k, 0) for r in rows) / len(rows)

    sockets = 2 * n
    print(f"connections held: {n} ({sockets} sockets, {workers} server + {workers} client processes); "
          f"sockstat TCP inuse {est.get('inuse')}")
    print(f"{'cache':<22}{'delta bytes':>14}{'per socket':>12}")
    total = 0.0
    for k in (*SLABS, "sockstat.mem_bytes"):
        d = avg(after, k) - avg(before, k)
        if k in SLABS:
            total += d
        print(f"{k:<22}{d:>14.0f}{d / sockets:>12.0f}")
    slab = avg(after, "meminfo.Slab") - avg(before, "meminfo.Slab")
    print(f"{'sum of the caches':<22}{total:>14.0f}{total / sockets:>12.0f}")
    print(f"{'meminfo Slab (all)':<22}{slab:>14.0f}{slab / sockets:>12.0f}")
    per = max(total, slab) / sockets
    print(f"kernel bytes per idle socket: {per:.0f} (caches {total / sockets:.0f}, whole slab {slab / sockets:.0f})")
    print(f"published 12M-socket figure: {PUBLISHED_BYTES_PER_SOCKET:.0f} bytes/socket; "
          f"measured / published = {per / PUBLISHED_BYTES_PER_SOCKET:.2f}")
    for name, default in (("websocket bytes_per_connection", 16384), ("web bytes_per_connection", 45000)):
        print(f"tuneup {name} {default} / measured kernel cost = {default / per:.1f}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--server"]:
        server(int(argv[1]), int(argv[2]))
        return 0
    if argv[:1] == ["--client"]:
        client(int(argv[1]), int(argv[2]))
        return 0
    if argv[:1] == ["--inner"]:
        inner(int(argv[1]))
        return 0
    if os.geteuid() != 0:
        print("needs root (a network namespace, /proc/slabinfo)", file=sys.stderr)
        return 2
    n = int(argv[0]) if argv else 50000
    ns = f"tC-bench-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), "--inner",
                               str(n)]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
