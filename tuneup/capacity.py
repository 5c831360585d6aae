"""How many concurrent connections each limit allows: pure arithmetic over a Snapshot and params.

Every limit becomes a ceiling in connections (what is left of the limit after what is already in
use, divided by what one connection costs), with the fact it came from and what to change to raise
it. Inbound ceilings (a server holding accepted connections) and outbound ceilings per destination
(local ports toward one remote address and port, per source address) are kept apart: the second
does not cap the first, except through a proxy's upstream connections (`ports.upstream`).

The probe (tuneup/probe.py) uses the same builders for its own situation (`probe_model`).
No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from tuneup.model import RLIM_INFINITY, Snapshot

INBOUND = "inbound"
OUTBOUND = "outbound"
PAGE = 4096


@dataclass(frozen=True)
class Limit:
    name: str            # "nofile", "file-max", "ports", ...
    ceiling: int         # concurrent connections this limit allows from now on
    source: str          # where the numbers came from
    hint: str            # what to change to raise it
    detail: str = ""     # the arithmetic
    direction: str = INBOUND


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str
    source: str = ""


@dataclass(frozen=True)
class Capacity:
    target: str                              # "pid 123 (nginx)", "tuneup (pid 9)", "probe ..."
    limits: tuple[Limit, ...]                # inbound, lowest ceiling first
    outbound: tuple[Limit, ...] = ()         # per destination and source address, lowest first
    skipped: tuple[Skipped, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    host: Mapping[str, Any] = field(default_factory=dict)

    @property
    def binding(self) -> Limit | None:
        return self.limits[0] if self.limits else None

    @property
    def outbound_binding(self) -> Limit | None:
        return self.outbound[0] if self.outbound else None


def _sorted(limits: list[Limit]) -> tuple[Limit, ...]:
    return tuple(sorted(limits, key=lambda lim: (lim.ceiling, lim.name)))


def _int(snap: Snapshot, key: str) -> int | None:
    f = snap.get(key)
    return f.value if f is not None and isinstance(f.value, int) and not isinstance(f.value, bool) else None


def _why_missing(snap: Snapshot, key: str) -> str:
    f = snap.get(key)
    if f is None:
        return f"{key} was not collected"
    if f.error:
        return f"{key}: {f.error}"
    if f.value is None:
        return f"{key} does not exist here"
    return f"{key} has an unexpected value {f.value!r}"


def _src(snap: Snapshot, key: str) -> str:
    f = snap.get(key)
    return f.source if f is not None else key


def _per(value: Any) -> int:
    """A per-connection cost as a positive int (fractions round up: 1.5 fds -> 2)."""
    n = int(-(-float(value) // 1))
    return max(n, 1)


def _fmt(n: int) -> str:
    return "unlimited" if n >= RLIM_INFINITY else str(n)


# -- ceilings, one builder per limit (shared by the capacity command and the probe) ---------------
def nofile_limit(soft: int, open_fds: int, per_conn: int, source: str, who: str, connections: int,
                 hard: int | None = None, name: str = "nofile", extra: int = 0) -> Limit:
    free = max(0, soft - open_fds)
    # what PROC-NOFILE-* asks for (the need plus 10% headroom, extra_fds for everything else), so
    # the number advised here passes the audit; the fds open now when they are more
    need = connections * per_conn * 11 // 10 + max(open_fds, extra)
    detail = f"RLIMIT_NOFILE soft {_fmt(soft)} - {open_fds} open fds = {free} free, / {per_conn} fd(s) per connection"
    if hard is not None and hard > soft:
        detail += f"; the process may raise its soft limit itself up to the hard limit {_fmt(hard)}"
    return Limit(name, free // per_conn, source,
                 f"raise RLIMIT_NOFILE of {who} to >= {need} (soft = hard): LimitNOFILE= in its systemd "
                 "unit, `ulimit -n` or limits.d for login sessions; it cannot exceed fs.nr_open", detail)


def nr_open_limit(nr_open: int, open_fds: int, per_conn: int, source: str, connections: int,
                  extra: int = 0) -> Limit:
    free = max(0, nr_open - open_fds)
    return Limit("nr_open", free // per_conn, source,
                 f"sysctl fs.nr_open >= {connections * per_conn * 11 // 10 + max(open_fds, extra)} (host-global) "
                 "before raising "
                 "RLIMIT_NOFILE above it",
                 f"fs.nr_open {_fmt(nr_open)} caps any one process's RLIMIT_NOFILE; - {open_fds} open fds, "
                 f"/ {per_conn} fd(s) per connection")


def file_max_limit(file_max: int, allocated: int, per_conn: int, source: str, connections: int,
                   extra: int = 0) -> Limit:
    free = max(0, file_max - allocated)
    return Limit("file-max", free // per_conn, source,
                 f"sysctl fs.file-max >= {max(allocated, extra) + connections * per_conn * 6 // 5} (host-global; in "
                 "/etc/sysctl.d to persist)",
                 f"fs.file-max {_fmt(file_max)} - {allocated} file handles allocated host-wide (fs.file-nr) "
                 f"= {free}, / {per_conn} fd(s) per connection; processes with CAP_SYS_ADMIN are exempt")


def conntrack_limit(ct_max: int, count: int, source: str, connections: int, closing: int = 0) -> Limit:
    """closing: entries the load's closes keep in TIME_WAIT (close_rate_per_s x 120 s), as CT-MAX counts them."""
    return Limit("conntrack", max(0, ct_max - count - closing), source,
                 f"sysctl net.netfilter.nf_conntrack_max >= {(connections + closing) * 6 // 5} (raise "
                 "/sys/module/nf_conntrack/parameters/hashsize with it), or exempt the port from tracking "
                 "(a NOTRACK / notrack rule)",
                 f"nf_conntrack_max {ct_max} - {count} entries in use - {closing} kept 120 s after close "
                 "(TIME_WAIT, close_rate_per_s x 120); one entry per connection; counts only where rules use "
                 "connection tracking")


def tcp_mem_limit(tcp_mem_max: int, used_pages: int, page: int, per_conn_bytes: int, source: str,
                  connections: int) -> Limit:
    free = max(0, tcp_mem_max - used_pages)
    need_pages = -(-connections * per_conn_bytes // page) + used_pages
    return Limit("tcp_mem", free * page // per_conn_bytes, source,
                 f"sysctl net.ipv4.tcp_mem max >= {need_pages} pages (host-global), or less buffered data "
                 "per connection (smaller tcp_rmem/tcp_wmem defaults)",
                 f"tcp_mem max {tcp_mem_max} pages - {used_pages} in use = {free} pages of {page} bytes, "
                 f"/ {per_conn_bytes} buffered bytes per connection (tcp_buffer_bytes_per_connection)")


def memory_limit(avail: int, per_conn_bytes: int, source: str, what: str, connections: int) -> Limit:
    return Limit("memory", avail // per_conn_bytes, source,
                 f"more memory (>= {connections * per_conn_bytes // 2**20} MiB for the target), or less per "
                 "connection (bytes_per_connection: buffers and application state)",
                 f"{what} {avail // 2**20} MiB / {per_conn_bytes} bytes per connection (bytes_per_connection)")


def erlang_limit(max_ports: int, per_conn: int, source: str, connections: int) -> Limit:
    return Limit("erlang.max_ports", max_ports // per_conn, source,
                 f"+Q {max(connections * per_conn * 11 // 10, 1024)} in vm.args (one port per socket)",
                 f"Erlang max ports {max_ports}, / {per_conn} socket(s) per connection")


def reserved_in_range(reserved: Any, lo: int, hi: int) -> int:
    """Distinct ports of ip_local_reserved_ports ("8080,9000-9010", an int, or "") inside [lo, hi]."""
    return len(_reserved_set(reserved, lo, hi))


def ports_limit(port_range: tuple[int, int], reserved: Any, bound: tuple[int, ...], in_use: int,
                source: str, toward: str, name: str = "ports", direction: str = OUTBOUND) -> Limit:
    """Local ports connect() can still pick toward one destination, from one source address.

    Measured (kernel 6.18, see docs/capacity.md): connect() without bind() uses every port of the
    range, both parities; it skips reserved ports and ports held by bind() (listeners and sockets
    bound to a port), and ports already connected to the same destination.
    """
    lo, hi = port_range
    size = max(0, hi - lo + 1)
    reserved_set = _reserved_set(reserved, lo, hi)
    res = len(reserved_set)
    held = len({p for p in bound if lo <= p <= hi and p not in reserved_set})
    free = max(0, size - res - held - in_use)
    detail = (f"ip_local_port_range {lo}-{hi} = {size} ports - {res} reserved - {held} held by bind() "
              f"(listeners) - {in_use} in use toward {toward}; per source address and destination")
    return Limit(name, free, source,
                 "widen net.ipv4.ip_local_port_range (per namespace; e.g. 1024 65535 with listened ports "
                 "in ip_local_reserved_ports), add source addresses (bind with IP_BIND_ADDRESS_NO_PORT), "
                 "spread over more destinations, or net.ipv4.tcp_tw_reuse=1 for TIME_WAIT",
                 detail, direction)


def _reserved_set(reserved: Any, lo: int, hi: int) -> set[int]:
    out: set[int] = set()
    if reserved is None or reserved == "":
        return out
    for part in str(reserved).replace(" ", "").split(","):
        a, _, b = part.partition("-")
        try:
            start, end = int(a), int(b or a)
        except ValueError:
            continue
        out.update(range(max(start, lo), min(end, hi) + 1))
    return out


# -- the capacity command --------------------------------------------------------------------------
def model(snap: Snapshot, params: Mapping[str, Any], pid: int | None = None, note: str = "") -> Capacity:
    """Inbound ceilings of one server process (pid, or tuneup's own limits), and outbound per destination."""
    limits: list[Limit] = []
    skipped: list[Skipped] = []
    connections = int(params.get("connections", 0))
    per_fd = _per(params.get("fds_per_connection", 1))
    extra = int(params.get("extra_fds", 0) or 0)
    prefix = f"proc.{pid}." if pid is not None else ""
    if pid is not None:
        name = next((p.get("name", "?") for p in snap.processes if p.get("pid") == pid), "?")
        who = f"pid {pid} ({name})"
        fds_key = f"{prefix}fds"
    else:
        who = "the server process"
        fds_key = "self.fds"
    target = (f"pid {pid} ({name})" if pid is not None
              else "tuneup's own limits (a server started from this shell gets the same)")
    if note:
        target += f", {note}"

    def skip(lname: str, key: str) -> None:
        skipped.append(Skipped(lname, _why_missing(snap, key), _src(snap, key)))

    soft, hard, open_fds = (_int(snap, f"{prefix}rlimit.nofile.soft"), _int(snap, f"{prefix}rlimit.nofile.hard"),
                            _int(snap, fds_key))
    if soft is None:
        skip("nofile", f"{prefix}rlimit.nofile.soft")
    elif open_fds is None:
        skip("nofile", fds_key)
    elif soft >= RLIM_INFINITY:
        skipped.append(Skipped("nofile", "RLIMIT_NOFILE is unlimited", _src(snap, f"{prefix}rlimit.nofile.soft")))
    else:
        limits.append(nofile_limit(soft, open_fds, per_fd, _src(snap, f"{prefix}rlimit.nofile.soft"), who,
                                   connections, hard, extra=extra))
    used = open_fds or 0

    nr_open = _int(snap, "fs.nr_open")
    if nr_open is None:
        skip("nr_open", "fs.nr_open")
    else:
        limits.append(nr_open_limit(nr_open, used, per_fd, _src(snap, "fs.nr_open"), connections, extra))

    file_max, file_nr = _int(snap, "fs.file-max"), snap.get("fs.file-nr")
    admin = _int(snap, f"{prefix}cap_sys_admin" if pid is not None else "self.cap_sys_admin")
    if file_max is None:
        skip("file-max", "fs.file-max")
    elif file_nr is None or not isinstance(file_nr.value, tuple):
        skip("file-max", "fs.file-nr")
    else:
        lim = file_max_limit(file_max, file_nr.value[0], per_fd, _src(snap, "fs.file-max"), connections, extra)
        if admin:
            lim = Limit(lim.name, lim.ceiling, lim.source, lim.hint,
                        lim.detail + f" ({who} has CAP_SYS_ADMIN: the kernel does not hold it to fs.file-max, "
                        "but every other process is)")
        limits.append(lim)

    ct_max, ct_count = _int(snap, "net.netfilter.nf_conntrack_max"), _int(snap, "net.netfilter.nf_conntrack_count")
    if ct_max is None:
        skipped.append(Skipped("conntrack", "nf_conntrack is not loaded (no net.netfilter.nf_conntrack_max): "
                               "no connection-tracking ceiling", _src(snap, "net.netfilter.nf_conntrack_max")))
    else:
        limits.append(conntrack_limit(ct_max, ct_count or 0, _src(snap, "net.netfilter.nf_conntrack_max"),
                                      connections, int(params.get("close_rate_per_s", 0)) * 120))

    tcp_mem = snap.get("net.ipv4.tcp_mem")
    buf = _per(params.get("tcp_buffer_bytes_per_connection", 16384))
    page = int(snap.host.get("page_size") or PAGE)
    if tcp_mem is None or not isinstance(tcp_mem.value, tuple) or len(tcp_mem.value) != 3:
        reason = _why_missing(snap, "net.ipv4.tcp_mem")
        if tcp_mem is not None and tcp_mem.absent and snap.host.get("netns") == "child":
            reason = "net.ipv4.tcp_mem is host-global and not visible from a child network namespace"
        skipped.append(Skipped("tcp_mem", reason, _src(snap, "net.ipv4.tcp_mem")))
    else:
        limits.append(tcp_mem_limit(tcp_mem.value[2], _int(snap, "sockstat.tcp.mem") or 0, page, buf,
                                    _src(snap, "net.ipv4.tcp_mem"), connections))

    per_bytes = _per(params.get("bytes_per_connection", 45000))
    avail = _int(snap, "mem.available_bytes")
    if avail is not None:
        limits.append(memory_limit(avail, per_bytes, _src(snap, "mem.available_bytes"), "available memory",
                                   connections))
    elif snap.host.get("mem_total_bytes"):
        limits.append(memory_limit(int(snap.host["mem_total_bytes"]), per_bytes, "host.mem_total_bytes",
                                   "total memory", connections))
    else:
        skipped.append(Skipped("memory", "memory size unknown"))

    if pid is not None:
        ports = _int(snap, f"{prefix}beam.max_ports")
        if ports is not None:
            limits.append(erlang_limit(ports, per_fd, _src(snap, f"{prefix}beam.max_ports"), connections))

    outbound: list[Limit] = []
    rng = snap.get("net.ipv4.ip_local_port_range")
    if rng is None or not isinstance(rng.value, tuple) or len(rng.value) != 2:
        skip("ports", "net.ipv4.ip_local_port_range")
    else:
        lo, hi = rng.value
        dest = snap.get("tcp.busiest_destination")
        in_use = _int(snap, "tcp.busiest_destination.ports") or 0
        toward = f"the busiest destination {dest.value}" if dest is not None and dest.value else "one destination"
        listen = snap.get("tcp.listen_ports")
        bound = listen.value if listen is not None and isinstance(listen.value, tuple) else ()
        res = snap.get("net.ipv4.ip_local_reserved_ports")
        out = ports_limit((lo, hi), res.value if res is not None else None, bound, in_use if dest else 0,
                          rng.source, toward)
        outbound.append(out)
        per_in = float(params.get("outbound_per_connection", 0) or 0)
        if per_in > 0:
            dests = max(1, int(params.get("upstream_destinations", 1) or 1))
            fresh = ports_limit((lo, hi), res.value if res is not None else None, bound, 0, rng.source,
                                "each destination")
            limits.append(Limit(
                "ports.upstream", int(fresh.ceiling * dests / per_in), rng.source, fresh.hint,
                f"{fresh.ceiling} ports per upstream destination x {dests} destinations "
                f"(upstream_destinations) / {per_in:g} outbound per inbound connection "
                "(outbound_per_connection)"))

    limits.extend(server_limits(snap, params))
    return Capacity(target=target, limits=_sorted(limits), outbound=_sorted(outbound), skipped=tuple(skipped),
                    params=dict(params), host=dict(snap.host))


# -- the servers' own ceilings (app.* facts: nginx, HAProxy, Redis, Ranch, BEAM) -------------------
def server_limits(snap: Snapshot, params: Mapping[str, Any]) -> list[Limit]:
    """Ceilings the server's own configuration sets, in client connections, beside the kernel's."""
    out: list[Limit] = []
    connections = int(params.get("connections", 0))

    def add(name: str, key: str, ceiling: int, hint: str, detail: str) -> None:
        out.append(Limit(name, max(0, ceiling), _src(snap, key), hint, detail))

    clients = _int(snap, "app.nginx.max_clients")
    wc, workers = _int(snap, "app.nginx.worker_connections"), _int(snap, "app.nginx.worker_processes")
    if clients is not None and wc is not None and workers:
        add("nginx.worker_connections", "app.nginx.worker_connections", clients,
            f"worker_connections >= {_nginx_wc(snap, connections, workers)} in the events block (per worker), "
            "and worker_rlimit_nofile above it",
            _src(snap, "app.nginx.max_clients") + "; past it every new connection makes nginx close up to 32 idle ones")
        nofile = _int(snap, "app.nginx.nofile")
        if nofile is not None and nofile < wc:
            per = 2 if _int(snap, "app.nginx.proxy") else 1
            add("nginx.nofile", "app.nginx.nofile", workers * max(0, nofile - 16) // per,
                f"worker_rlimit_nofile >= {wc + 16}", f"{workers} worker(s) x ({nofile} fds - ~16 for logs and "
                f"listeners) / {per} fd(s) per client")
    for key, name in (("app.haproxy.maxconn", "haproxy.maxconn"),
                      ("app.haproxy.frontend_maxconn", "haproxy.frontend_maxconn")):
        v = _int(snap, key)
        if v is not None:
            add(name, key, v, f"maxconn >= {connections} in the {'global' if 'frontend' not in name else 'frontend'}"
                " section (and ulimit-n / LimitNOFILE >= 2 x maxconn + 100)", f"{key.split('.', 2)[2]} {v}")
    mc = _int(snap, "app.redis.maxclients")
    if mc is not None:
        nofile = _int(snap, "app.redis.nofile")
        ceiling, detail = mc, f"maxclients {mc}"
        if nofile is not None and nofile - 32 < mc:
            ceiling, detail = nofile - 32, f"maxclients {mc}, but RLIMIT_NOFILE {nofile} - 32 reserved fds"
        add("redis.maxclients", "app.redis.maxclients", ceiling,
            f"maxclients >= {connections} in redis.conf and LimitNOFILE >= maxclients + 32", detail)
    cap = _int(snap, "app.ranch.capacity")
    if cap is not None:
        add("ranch.max_connections", "app.ranch.capacity", cap,
            f"max_connections >= {connections} in the listener's transport options (or infinity)",
            _src(snap, "app.ranch.capacity"))
    procs = _int(snap, "app.beam.max_processes")
    if procs is not None:
        per = max(1, int(params.get("beam_processes_per_connection", 2) or 1))
        add("beam.max_processes", "app.beam.max_processes", procs // per,
            f"+P {connections * per * 11 // 10} in vm.args",
            f"+P {procs} / {per} Erlang processes per connection (beam_processes_per_connection)")
    ports = _int(snap, "app.beam.max_ports")
    if ports is not None and not any(k.endswith(".beam.max_ports") and k.startswith("proc.") for k in snap.facts):
        out.append(erlang_limit(ports, _per(params.get("fds_per_connection", 1)), _src(snap, "app.beam.max_ports"),
                                connections))
    return out


def _nginx_wc(snap: Snapshot, connections: int, workers: int) -> int:
    from tuneup.facts.servers.nginx import worker_connections_for

    per = 2 if _int(snap, "app.nginx.proxy") else 1
    return worker_connections_for(-(-connections * per // workers), _int(snap, "app.nginx.listens") or 1)


# -- the probe's own situation ---------------------------------------------------------------------
@dataclass(frozen=True)
class Side:
    """One process of the probe: its fd limit and the fds it holds before the first connection."""

    name: str            # "client", "listener", "target"
    soft: int
    open_fds: int
    source: str
    hard: int | None = None


@dataclass(frozen=True)
class ProbeSituation:
    destination: str                 # "127.0.0.1:40729"
    sides: tuple[Side, ...]          # processes whose fds each connection costs one of
    in_use_toward: int = 0           # local ports already connected to the destination
    client_admin: bool = False       # CAP_SYS_ADMIN: exempt from fs.file-max
    all_admin: bool = False          # every side exempt (then file-max cannot stop the probe)


def probe_model(snap: Snapshot, sit: ProbeSituation) -> Capacity:
    """Ceilings for N loopback connections from one source address to one destination."""
    limits: list[Limit] = []
    skipped: list[Skipped] = []
    for side in sit.sides:
        if side.soft >= RLIM_INFINITY:
            skipped.append(Skipped(f"nofile.{side.name}", "RLIMIT_NOFILE is unlimited", side.source))
            continue
        lim = nofile_limit(side.soft, side.open_fds, 1, side.source, f"the {side.name}", 0, side.hard,
                           name=f"nofile.{side.name}")
        limits.append(lim)

    file_max, file_nr = _int(snap, "fs.file-max"), snap.get("fs.file-nr")
    if file_max is not None and file_nr is not None and isinstance(file_nr.value, tuple):
        if sit.all_admin:
            skipped.append(Skipped("file-max", "every process of the probe has CAP_SYS_ADMIN, which the "
                                   "kernel exempts from fs.file-max", _src(snap, "fs.file-max")))
        else:
            limits.append(file_max_limit(file_max, file_nr.value[0], len(sit.sides), _src(snap, "fs.file-max"), 0))

    ct_max = _int(snap, "net.netfilter.nf_conntrack_max")
    if ct_max is not None:
        limits.append(conntrack_limit(ct_max, _int(snap, "net.netfilter.nf_conntrack_count") or 0,
                                      _src(snap, "net.netfilter.nf_conntrack_max"), 0))

    rng = snap.get("net.ipv4.ip_local_port_range")
    if rng is not None and isinstance(rng.value, tuple) and len(rng.value) == 2:
        listen = snap.get("tcp.listen_ports")
        res = snap.get("net.ipv4.ip_local_reserved_ports")
        limits.append(ports_limit(rng.value, res.value if res is not None else None,
                                  listen.value if listen is not None and isinstance(listen.value, tuple) else (),
                                  sit.in_use_toward, rng.source, sit.destination, direction=INBOUND))
    else:
        skip_reason = _why_missing(snap, "net.ipv4.ip_local_port_range")
        skipped.append(Skipped("ports", skip_reason))
    return Capacity(target=f"probe toward {sit.destination}", limits=_sorted(limits), skipped=tuple(skipped),
                    host=dict(snap.host))


def limit_for_error(stopped_by: str | None) -> tuple[str, ...]:
    """Names of the limits a probe's stop reason points at."""
    return {
        "EMFILE": ("nofile.client", "nofile.listener", "nofile.target"),
        "ENFILE": ("file-max",),
        "EADDRNOTAVAIL": ("ports",),
    }.get(stopped_by or "", ())
