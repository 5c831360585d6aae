"""Gather a Snapshot from the live host: the facts the rules need, host identity, processes."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

from tuneup.errors import UsageError
from tuneup.facts import host, limits, processes, sysctl
from tuneup.model import Fact, Snapshot

# Always collected: what capacity math and reports need even when no rule names it.
BASE_KEYS = frozenset({
    "fs.file-max", "fs.file-nr", "fs.nr_open", "net.core.somaxconn",
    "net.ipv4.ip_local_port_range", "net.ipv4.tcp_mem",
})


def resolve_targets(pids: Iterable[int] = (), names: Iterable[str] = (), proc: str = "/proc") -> list[int]:
    """--pid and --process to a list of pids; a name that matches nothing is bad input."""
    out = list(pids)
    for name in names:
        found = processes.find_by_name(name, proc)
        if not found:
            raise UsageError(f"no running process named {name!r}", "--process")
        out.extend(found)
    return list(dict.fromkeys(out))


def collect(keys: Iterable[str], pids: Iterable[int] = (), proc: str = "/proc") -> Snapshot:
    keys = set(keys) | BASE_KEYS
    facts: dict[str, Fact] = {}
    facts.update(sysctl.read_many({k for k in keys if sysctl.is_sysctl(k)}, proc))
    facts.update(limits.self_facts())
    targets = []
    for pid in dict.fromkeys(pids):
        try:
            pfacts, info = limits.process_facts(pid, proc)
        except ProcessLookupError:
            raise UsageError(f"no process with pid {pid}", "--pid") from None
        facts.update(pfacts)
        soft = pfacts.get(f"proc.{pid}.rlimit.nofile.soft")
        facts.update(processes.details(pid, info, soft.value if soft else None, proc))
        targets.append(info)
    return Snapshot(
        host=host.identity(proc),
        facts=facts,
        processes=targets,
        collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        origin="live",
    )
