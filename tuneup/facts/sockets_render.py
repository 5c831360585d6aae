"""Render a socket census and kernel counters: the `tuneup sockets` JSON contract, a table, facts.

to_json_dict(census, counters, sample=None) -> dict
    {"states": {"ESTABLISHED": n, ...},                     IPv4 and IPv6 together
     "listeners": [{"local", "backlog", "queue", "pid", "process"}],
     "ephemeral": {"range": [lo, hi], "in_use": n,
                   "destinations": [{"remote", "in_use", "share"}]},
     "counters": {"TcpExt": {IMPORTANT_TCPEXT...}, "Tcp": {...},
                  "sample": {"seconds", "delta": {"TcpExt", "Tcp"}, "rate": {...}}},   when sampled
     "sockstat": {"tcp": {"inuse", "orphan", "tw", "alloc", "mem"}, "tcp6": {"inuse"}, ...},
     "conntrack": {"loaded", "count", "max"},
     "source": "netlink" | "proc",
     "note": "...",                                        only when the fallback was used
     "owner_note": "..."}                                  only when some listener has no owner

to_table(census, counters, sample=None) -> str             for people

census_facts(census, counters, sample=None) -> {key: value}   flat facts for the rule engine:
    sockets.source                      "netlink" | "proc"
    sockets.total                       all TCP sockets seen
    sockets.state.<STATE>               count per TCP state (ESTABLISHED, TIME_WAIT, ...)
    sockets.listeners                   list of {"local", "backlog", "queue", "pid", "process"}
    sockets.listeners.count
    sockets.listeners.max_fill          max(queue / backlog) over listeners (None without backlogs)
    ephemeral.range                     (lo, hi)
    ephemeral.size                      hi - lo + 1
    ephemeral.in_use                    sockets with a local port in the range (not server-side)
    ephemeral.destinations              number of distinct remote addr:port among them
    ephemeral.max_share                 in_use / size of the busiest destination (0.0 when none)
    ephemeral.top_remote                that destination "addr:port" (None when none)
    ephemeral.top_in_use                its count
    sockstat.<proto>.<field>            e.g. sockstat.tcp.tw, sockstat.tcp.orphan, sockstat.tcp.mem
                                        (pages), sockstat.tcp6.inuse, sockstat.udp.inuse
    netstat.TcpExt.<field>              every TcpExt counter, e.g. netstat.TcpExt.ListenOverflows
    snmp.Tcp.<field>                    every Tcp counter, e.g. snmp.Tcp.CurrEstab
    sample.seconds                      only when sampled, with
    sample.<Section>.<field>.delta      e.g. sample.TcpExt.ListenOverflows.delta
    sample.<Section>.<field>.rate       per second
    conntrack.loaded                    bool
    conntrack.count, conntrack.max      None when not loaded
Values are plain JSON-able data (int, float, str, bool, None, list, dict).

Run as a script: python -m tuneup.facts.sockets_render [--format json|table] [--sample SECONDS]
[--proc] [--top N] [--no-owners].
"""

from __future__ import annotations

from tuneup.facts.counters import IMPORTANT_TCPEXT, Counters, Sample
from tuneup.facts.sockets import Census
from tuneup.textsafe import block_safe


def _counters_dict(counters: Counters, sample: Sample | None) -> dict:
    tcpext = counters.netstat.get("TcpExt", {})
    out: dict = {
        "TcpExt": {k: tcpext[k] for k in IMPORTANT_TCPEXT if k in tcpext},
        "Tcp": dict(counters.snmp.get("Tcp", {})),
    }
    if sample is not None:
        out["sample"] = {
            "seconds": sample.seconds,
            "delta": {"TcpExt": {k: v for k, v in sample.delta.get("TcpExt", {}).items() if k in IMPORTANT_TCPEXT},
                      "Tcp": dict(sample.delta.get("Tcp", {}))},
            "rate": {"TcpExt": {k: round(v, 3) for k, v in sample.rate.get("TcpExt", {}).items()
                                if k in IMPORTANT_TCPEXT},
                     "Tcp": {k: round(v, 3) for k, v in sample.rate.get("Tcp", {}).items()}},
        }
    return out


def to_json_dict(census: Census, counters: Counters, sample: Sample | None = None) -> dict:
    out = {
        "states": dict(census.states),
        "listeners": [x.as_dict() for x in census.listeners],
        "ephemeral": census.ephemeral.as_dict(),
        "counters": _counters_dict(counters, sample),
        "sockstat": {k: dict(v) for k, v in counters.sockstat.items()},
        "conntrack": dict(counters.conntrack),
        "source": census.source,
    }
    if census.note:
        out["note"] = census.note
    if census.owner_note:
        out["owner_note"] = census.owner_note
    return out


def census_facts(census: Census, counters: Counters, sample: Sample | None = None) -> dict[str, object]:
    f: dict[str, object] = {"sockets.source": census.source}
    if census.counted:     # a census of listeners and ephemeral ports only has no state counts
        f["sockets.total"] = census.total
        for name, n in census.states.items():
            f[f"sockets.state.{name}"] = n
    f["sockets.listeners"] = [x.as_dict() for x in census.listeners]
    f["sockets.listeners.count"] = len(census.listeners)
    fills = [x.queue / x.backlog for x in census.listeners if x.backlog]
    f["sockets.listeners.max_fill"] = round(max(fills), 4) if fills else None
    eph = census.ephemeral
    top = eph.destinations[0] if eph.destinations else None
    f["ephemeral.range"] = tuple(eph.range)
    f["ephemeral.size"] = eph.size
    f["ephemeral.in_use"] = eph.in_use
    f["ephemeral.destinations"] = eph.distinct_destinations
    f["ephemeral.max_share"] = top.share if top else 0.0
    f["ephemeral.top_remote"] = top.remote if top else None
    f["ephemeral.top_in_use"] = top.in_use if top else 0
    for proto, fields in counters.sockstat.items():
        for k, v in fields.items():
            f[f"sockstat.{proto}.{k}"] = v
    for k, v in counters.netstat.get("TcpExt", {}).items():
        f[f"netstat.TcpExt.{k}"] = v
    for k, v in counters.snmp.get("Tcp", {}).items():
        f[f"snmp.Tcp.{k}"] = v
    if sample is not None:
        f["sample.seconds"] = sample.seconds
        for sec, fields in sample.delta.items():
            for k, v in fields.items():
                f[f"sample.{sec}.{k}.delta"] = v
                f[f"sample.{sec}.{k}.rate"] = sample.rate[sec][k]
    f["conntrack.loaded"] = bool(counters.conntrack.get("loaded"))
    f["conntrack.count"] = counters.conntrack.get("count")
    f["conntrack.max"] = counters.conntrack.get("max")
    return f


def _dash(v):
    return "-" if v is None else v


@block_safe
def to_table(census: Census, counters: Counters, sample: Sample | None = None) -> str:
    from tabulate import tabulate  # lazy: only people want tables

    parts = []
    head = f"TCP sockets: {census.total} (source: {census.source})"
    if census.note:
        head += f"\nnote: {census.note}"
    if census.owner_note:
        head += f"\nowners: {census.owner_note}"
    parts.append(head)
    states = [(k, v) for k, v in census.states.items() if v or k in ("ESTABLISHED", "TIME_WAIT", "LISTEN")]
    parts.append(tabulate(states, headers=["state", "count"], tablefmt="simple"))
    if census.listeners:
        rows = [(x.local, _dash(x.queue), _dash(x.backlog),
                 f"{x.queue / x.backlog:.0%}" if x.backlog else "-", _dash(x.pid), _dash(x.process))
                for x in census.listeners]
        parts.append(tabulate(rows, headers=["listener", "queue", "backlog", "fill", "pid", "process"],
                              tablefmt="simple"))
    else:
        parts.append("listeners: none")
    eph = census.ephemeral
    parts.append(f"ephemeral ports {eph.range[0]}-{eph.range[1]} ({eph.size}): {eph.in_use} in use, "
                 f"{eph.distinct_destinations} destination(s)")
    if eph.destinations:
        parts.append(tabulate([(d.remote, d.in_use, f"{d.share:.1%}") for d in eph.destinations],
                              headers=["destination", "in use", "share of range"], tablefmt="simple"))
    tcp = counters.sockstat.get("tcp", {})
    tcp6 = counters.sockstat.get("tcp6", {})
    parts.append("sockstat: " + ", ".join(f"{k} {v}" for k, v in tcp.items())
                 + (f"; tcp6 inuse {tcp6['inuse']}" if "inuse" in tcp6 else ""))
    tcpext = counters.netstat.get("TcpExt", {})
    rows = []
    for k in IMPORTANT_TCPEXT:
        if k not in tcpext:
            continue
        row = [k, tcpext[k]]
        if sample is not None:
            row += [sample.delta.get("TcpExt", {}).get(k, "-"),
                    f"{sample.rate.get('TcpExt', {}).get(k, 0.0):.2f}"]
        rows.append(row)
    if rows:
        headers = ["TcpExt", "total"] + ([f"delta ({sample.seconds}s)", "per s"] if sample else [])
        parts.append(tabulate(rows, headers=headers, tablefmt="simple"))
    ct = counters.conntrack
    parts.append("conntrack: not loaded" if not ct.get("loaded")
                 else f"conntrack: {ct.get('count')} / {ct.get('max')}")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    fmt, seconds, method, top, owners = "json", None, "auto", 20, True
    try:
        while args:
            a = args.pop(0)
            if a in ("--format", "-f"):
                fmt = args.pop(0)
            elif a == "--sample":
                seconds = float(args.pop(0))
            elif a == "--proc":
                method = "proc"
            elif a == "--top":
                top = int(args.pop(0))
            elif a == "--no-owners":
                owners = False
            else:
                raise ValueError(a)
        if fmt not in ("json", "table"):
            raise ValueError(fmt)
    except (IndexError, ValueError) as e:
        print(f"usage: [--format json|table] [--sample SECONDS] [--proc] [--top N] [--no-owners] ({e})",
              file=sys.stderr)
        return 2
    from tuneup.facts import counters as C
    from tuneup.facts.sockets import census

    c = census(method, top=top, owners=owners)
    smp = C.sample(seconds) if seconds else None
    cnt = smp.after if smp else C.read_counters()
    if fmt == "json":
        import json

        sys.stdout.write(json.dumps(to_json_dict(c, cnt, smp), indent=2) + "\n")
    else:
        sys.stdout.write(to_table(c, cnt, smp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
