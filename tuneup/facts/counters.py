"""Kernel TCP counters of the current network namespace.

Sources (all per network namespace):
  /proc/net/sockstat, sockstat6   {"tcp": {"inuse", "orphan", "tw", "alloc", "mem"}, "tcp6": {"inuse"},
                                   "udp": {...}, "sockets": {"used"}, ...}; TCP mem is in pages
  /proc/net/netstat               {"TcpExt": {...}, "IpExt": {...}, ...} every field as an int
  /proc/net/snmp                  {"Tcp": {...}, "Ip": {...}, "Udp": {...}, ...}
  /proc/sys/net/netfilter/nf_conntrack_{count,max}
                                  {"loaded": bool, "count": int | None, "max": int | None}

The parse_* functions are pure (file text in, dict out) so they can be tested on fixed text; the
read_* functions read the real files. sample(seconds) reads netstat and snmp twice and returns the
deltas and per-second rates (the counters are cumulative since boot: a delta says more).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tuneup.record import FRESH, Frozen

_set = object.__setattr__   # the written-out __init__s of the Frozen classes

# the TcpExt fields that matter for many connections (tuning.md, "Observing a live server")
IMPORTANT_TCPEXT = (
    "ListenOverflows", "ListenDrops", "TCPTimeWaitOverflow", "TCPAbortOnMemory", "SyncookiesSent",
    "SyncookiesRecv", "SyncookiesFailed", "TCPReqQFullDrop", "TCPReqQFullDoCookies",
    "TCPMemoryPressures", "TCPBacklogDrop", "TCPAbortOnTimeout", "TCPAbortOnData", "TW",
)


@dataclass(init=False, eq=False, repr=False)
class Counters(Frozen):
    """The kernel's socket counters: sockstat, netstat, snmp, conntrack; the files that failed."""

    sockstat: dict[str, dict[str, int]]
    netstat: dict[str, dict[str, int]]
    snmp: dict[str, dict[str, int]]
    conntrack: dict[str, object]
    errors: dict[str, str] = field(default_factory=dict)   # file -> why it could not be read

    def __init__(self, sockstat, netstat, snmp, conntrack, errors=FRESH) -> None:
        _set(self, "sockstat", sockstat)
        _set(self, "netstat", netstat)
        _set(self, "snmp", snmp)
        _set(self, "conntrack", conntrack)
        _set(self, "errors", {} if errors is FRESH else errors)


@dataclass(init=False, eq=False, repr=False)
class Sample(Frozen):
    """Two Counters some seconds apart: their delta and rate per second."""

    seconds: float
    delta: dict[str, dict[str, int]]      # {"TcpExt": {...}, "Tcp": {...}}
    rate: dict[str, dict[str, float]]     # delta / seconds
    before: Counters
    after: Counters

    def __init__(self, seconds, delta, rate, before, after) -> None:
        _set(self, "seconds", seconds)
        _set(self, "delta", delta)
        _set(self, "rate", rate)
        _set(self, "before", before)
        _set(self, "after", after)


# ---------------------------------------------------------------------------- pure parsers

def _int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def parse_sockstat(text: str) -> dict[str, dict[str, int]]:
    """'TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1' -> {"tcp": {"inuse": 5, ...}}; any line."""
    out: dict[str, dict[str, int]] = {}
    for line in text.splitlines():
        proto, sep, rest = line.partition(":")
        if not sep:
            continue
        words = rest.split()
        vals = {}
        for name, value in zip(words[0::2], words[1::2]):
            v = _int(value)
            if v is not None:
                vals[name] = v
        out.setdefault(proto.strip().lower(), {}).update(vals)
    return out


def parse_pairs(text: str) -> dict[str, dict[str, int]]:
    """The /proc/net/netstat and /proc/net/snmp layout: a header line then a value line per section."""
    out: dict[str, dict[str, int]] = {}
    lines = [ln for ln in text.splitlines() if ln.strip()]
    i = 0
    while i + 1 < len(lines):
        h_sec, _, h_rest = lines[i].partition(":")
        v_sec, _, v_rest = lines[i + 1].partition(":")
        if h_sec != v_sec:
            i += 1
            continue
        names, values = h_rest.split(), v_rest.split()
        sec = out.setdefault(h_sec.strip(), {})
        for name, value in zip(names, values):
            v = _int(value)
            if v is not None:
                sec[name] = v
        i += 2
    return out


def parse_conntrack(count_text: str | None, max_text: str | None) -> dict[str, object]:
    """Either text None (file absent) means the conntrack module is not loaded here."""
    if count_text is None or max_text is None:
        return {"loaded": False, "count": None, "max": None}
    return {"loaded": True, "count": _int(count_text.strip()), "max": _int(max_text.strip())}


def delta(before: Counters, after: Counters, seconds: float,
          sections: tuple[str, ...] = ("TcpExt", "Tcp")) -> tuple[dict, dict]:
    """(delta, rate) per section for fields present in both readings."""
    d: dict[str, dict[str, int]] = {}
    r: dict[str, dict[str, float]] = {}
    for sec in sections:
        a = {**before.netstat.get(sec, {}), **before.snmp.get(sec, {})}
        b = {**after.netstat.get(sec, {}), **after.snmp.get(sec, {})}
        d[sec] = {k: b[k] - a[k] for k in b if k in a}
        r[sec] = {k: (v / seconds if seconds > 0 else 0.0) for k, v in d[sec].items()}
    return d, r


# ---------------------------------------------------------------------------- readers

def _read(path: str, errors: dict[str, str]) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        errors[path] = e.strerror or str(e)
        return None


def read_counters(proc: str = "/proc") -> Counters:
    errors: dict[str, str] = {}
    sockstat: dict[str, dict[str, int]] = {}
    for name in ("sockstat", "sockstat6"):
        text = _read(f"{proc}/net/{name}", errors)
        if text is not None:
            for k, v in parse_sockstat(text).items():
                sockstat.setdefault(k, {}).update(v)
    netstat_text = _read(f"{proc}/net/netstat", errors)
    snmp_text = _read(f"{proc}/net/snmp", errors)
    nf = f"{proc}/sys/net/netfilter"
    conntrack = parse_conntrack(_read(f"{nf}/nf_conntrack_count", errors),
                                _read(f"{nf}/nf_conntrack_max", errors))
    return Counters(
        sockstat=sockstat,
        netstat=parse_pairs(netstat_text) if netstat_text else {},
        snmp=parse_pairs(snmp_text) if snmp_text else {},
        conntrack=conntrack,
        errors=errors,
    )


def sample(seconds: float = 1.0, proc: str = "/proc", *, first: Counters | None = None) -> Sample:
    """Read the counters, wait `seconds`, read again: deltas and per-second rates."""
    t0 = time.monotonic()
    before = first or read_counters(proc)
    if seconds > 0:
        time.sleep(seconds)
    after = read_counters(proc)
    elapsed = max(time.monotonic() - t0, 1e-9) if first is None else seconds
    d, r = delta(before, after, elapsed)
    return Sample(round(elapsed, 3), d, r, before, after)


def parse_softnet_stat(text: str) -> dict[str, int]:
    """/proc/net/softnet_stat (one row per CPU, hex columns: processed, dropped, time_squeeze, ...)
    -> totals over CPUs {"processed", "dropped", "time_squeeze"}. Host-wide, not per namespace."""
    out = {"processed": 0, "dropped": 0, "time_squeeze": 0}
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 3:
            continue
        try:
            out["processed"] += int(cols[0], 16)
            out["dropped"] += int(cols[1], 16)
            out["time_squeeze"] += int(cols[2], 16)
        except ValueError:
            continue
    return out


def read_softnet(proc: str = "/proc") -> dict[str, int] | None:
    try:
        with open(f"{proc}/net/softnet_stat") as fh:
            return parse_softnet_stat(fh.read())
    except OSError:
        return None
