"""Live sockets and kernel counters as facts: the census (netlink, else /proc) turned into flat
facts for the engine, plus one record and facts per listener (``listener.<local>.<field>``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from tuneup.model import Fact

_SOURCES = {
    "sockets.": "netlink sock_diag",
    "ephemeral.": "netlink sock_diag",
    "sockstat.": "/proc/net/sockstat",
    "netstat.": "/proc/net/netstat",
    "snmp.": "/proc/net/snmp",
    "sample.": "/proc/net/netstat, /proc/net/snmp sampled twice",
    "conntrack.": "/proc/sys/net/netfilter/nf_conntrack_count, nf_conntrack_max",
}


def parse_port_set(text: str | None) -> set[int]:
    """ip_local_reserved_ports ("8080,9000-9010") -> {8080, 9000, ..., 9010}; bad parts ignored."""
    ports: set[int] = set()
    for part in (text or "").replace(" ", "").split(","):
        lo, _, hi = part.partition("-")
        if lo.isdigit() and (not hi or hi.isdigit()):
            a, b = int(lo), int(hi or lo)
            if 0 <= a <= b <= 65535:
                ports.update(range(a, b + 1))
    return ports


def _source(key: str, method: str) -> str:
    for prefix, src in _SOURCES.items():
        if key.startswith(prefix):
            return "/proc/net/tcp, tcp6" if src == "netlink sock_diag" and method == "proc" else src
    return "census"


def census_scope(wanted: Iterable[str]) -> str:
    """The census an audit needs: "all" when a wanted key counts sockets by state (or in all),
    else "ephemeral" (listeners and ephemeral ports: every other census fact)."""
    for key in wanted:
        if key == "sockets.total" or key.startswith("sockets.state."):
            return "all"
    return "ephemeral"


def socket_facts(sample_s: float | None = None, wanted: Iterable[str] = (), reserved: str | None = None,
                 proc: str = "/proc", targets: Iterable[int] = (),
                 only_wanted: bool = False) -> tuple[dict[str, Fact], list[dict]]:
    """(facts, listeners). Sample keys the rules want but no window was sampled stay absent.

    only_wanted: the census is only as wide as the wanted keys need (census_scope): without a
    wanted state count, sockets.total and sockets.state.* are left out rather than counted.

    listener.L.server_backlog is the backlog of a listener owned by a --pid/--process target and
    absent for every other listener: the listen() backlog is judged for the server under audit,
    not for sshd or a local resolver.
    """
    targets = set(targets)
    wanted = list(wanted)
    from tuneup.facts import counters
    from tuneup.facts.sockets import census
    from tuneup.facts.sockets_render import census_facts

    first = counters.read_counters(proc) if sample_s else None
    c = census("auto", proc=proc, scope=census_scope(wanted) if only_wanted else "all")
    smp = counters.sample(sample_s, proc, first=first) if sample_s else None
    cnt = smp.after if smp else counters.read_counters(proc)
    facts: dict[str, Fact] = {}
    for key, value in census_facts(c, cnt, smp).items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, (list, dict)):
            continue
        facts[key] = Fact(key, value, _source(key, c.source))
    if smp is None:
        for key in wanted:
            if key.startswith("sample.") and key not in facts:
                facts[key] = Fact(key, None, "no sampling window (audit --sample SECONDS)")
    lo, hi = c.ephemeral.range
    reserved_ports = parse_port_set(reserved)
    listeners = []
    src = "netlink sock_diag" if c.source == "netlink" else "/proc/net/tcp, tcp6"
    for lst in c.listeners:
        rec = {"local": lst.local, "port": lst.port, "backlog": lst.backlog, "queue": lst.queue,
               "pid": lst.pid, "process": lst.process}
        listeners.append(rec)
        prefix = f"listener.{lst.local}."
        for field in ("port", "queue", "pid", "process"):
            facts[prefix + field] = Fact(prefix + field, rec[field], src)
        if lst.backlog is None:
            facts[prefix + "backlog"] = Fact(prefix + "backlog", None, src,
                                             error="the listen backlog is only reported over netlink")
        else:
            facts[prefix + "backlog"] = Fact(prefix + "backlog", lst.backlog, src)
        if lst.pid is not None and lst.pid in targets:
            facts[prefix + "server_backlog"] = dataclasses.replace(facts[prefix + "backlog"], key=prefix + "server_backlog")
        else:
            facts[prefix + "server_backlog"] = Fact(prefix + "server_backlog", None, src)
        unreserved = int(lo <= lst.port <= hi and lst.port not in reserved_ports)
        facts[prefix + "ephemeral_unreserved"] = Fact(prefix + "ephemeral_unreserved", unreserved,
                                                      f"{src}; ip_local_port_range {lo}-{hi}")
    return facts, listeners


def process_socket_facts(pid: int, listeners: list[dict], proc: str = "/proc") -> dict[str, Fact]:
    """How many sockets a target process holds, and which of the listeners are its own."""
    import os

    prefix = f"proc.{pid}."
    own = [x["local"] for x in listeners if x.get("pid") == pid]
    facts = {prefix + "listeners": Fact(prefix + "listeners", " ".join(own) if own else "", "socket census")}
    base = f"{proc}/{pid}/fd"
    try:
        names = os.listdir(base)
    except OSError as exc:
        facts[prefix + "sockets"] = Fact(prefix + "sockets", None, base, error=exc.strerror or str(exc))
        return facts
    n = 0
    for name in names:
        try:
            if os.readlink(f"{base}/{name}").startswith("socket:"):
                n += 1
        except OSError:
            continue
    facts[prefix + "sockets"] = Fact(prefix + "sockets", n, base)
    return facts
