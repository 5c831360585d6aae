"""Gather a Snapshot from the live host: the facts the rules need, host identity, processes."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

from tuneup.errors import UsageError
from tuneup.facts import host, limits, sysctl
from tuneup.model import Fact, Snapshot

# Always collected: what capacity math and reports need even when no rule names it.
BASE_KEYS = frozenset({
    "fs.file-max", "fs.file-nr", "fs.nr_open", "net.core.somaxconn",
    "net.ipv4.ip_local_port_range", "net.ipv4.tcp_mem",
})


def collect(keys: Iterable[str], pids: Iterable[int] = (), proc: str = "/proc") -> Snapshot:
    keys = set(keys) | BASE_KEYS
    facts: dict[str, Fact] = {}
    facts.update(sysctl.read_many({k for k in keys if sysctl.is_sysctl(k)}, proc))
    facts.update(limits.self_facts())
    processes = []
    for pid in dict.fromkeys(pids):
        try:
            pfacts, info = limits.process_facts(pid, proc)
        except ProcessLookupError:
            raise UsageError(f"no process with pid {pid}", "--pid") from None
        facts.update(pfacts)
        processes.append(info)
    return Snapshot(
        host=host.identity(proc),
        facts=facts,
        processes=processes,
        collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        origin="live",
    )
