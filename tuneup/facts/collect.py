"""Gather a Snapshot from the live host: the facts the rules need, host identity, processes."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from collections.abc import Iterable
from pathlib import Path

from tuneup.errors import UsageError
from tuneup.facts import host, limits, processes, sysctl
from tuneup.model import Fact, Snapshot

# Always collected: what capacity math and reports need even when no rule names it.
BASE_KEYS = frozenset({
    "fs.file-max", "fs.file-nr", "fs.nr_open", "net.core.somaxconn",
    "net.ipv4.ip_local_port_range", "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_mem",
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


def collect(keys: Iterable[str], pids: Iterable[int] = (), proc: str = "/proc", service: str | None = None,
            root: str = "/", sample: float | None = None, sockets: bool = True,
            app_configs: dict[str, Path] | None = None) -> Snapshot:
    """The live host. Beside each live sysctl the value the next boot applies (boot.KEY, from the
    files under root); with service, rlimit.nofile.* are what systemd gives that unit. With sockets,
    the live socket census and kernel counters (read twice, `sample` seconds apart, when given)."""
    from tuneup.facts import configfiles, observe

    keys = set(keys) | BASE_KEYS
    sysctl_keys = {k for k in keys if sysctl.is_sysctl(k)}
    facts: dict[str, Fact] = {}
    facts.update(sysctl.read_many(sysctl_keys, proc))
    facts.update(limits.self_facts())
    boot, limits_of = configfiles.snapshot_facts(Path(root), sysctl_keys, service, rootfs=False)
    facts.update(boot)
    listeners = None
    if sockets:
        reserved = facts.get("net.ipv4.ip_local_reserved_ports")
        pids = list(dict.fromkeys(pids))
        sock_facts, listeners = observe.socket_facts(sample, keys, reserved.value if reserved else None, proc,
                                                     targets=pids)
        facts.update(sock_facts)
    targets = []
    for pid in dict.fromkeys(pids):
        try:
            pfacts, info = limits.process_facts(pid, proc)
        except ProcessLookupError:
            raise UsageError(f"no process with pid {pid}", "--pid") from None
        facts.update(pfacts)
        soft = pfacts.get(f"proc.{pid}.rlimit.nofile.soft")
        details = processes.details(pid, info, soft.value if soft else None, proc)
        facts.update(details)
        unit = details.get(f"proc.{pid}.unit")
        if unit is not None and unit.value:
            info["unit"] = unit.value
        how = details.get(f"proc.{pid}.limit_source")
        if how is not None and how.value:   # say where the limit comes from, beside the value
            for which in ("soft", "hard"):
                key = f"proc.{pid}.rlimit.nofile.{which}"
                if key in facts:
                    facts[key] = dataclasses.replace(facts[key], source=f"{facts[key].source}; {how.value}")
        if listeners is not None:
            facts.update(observe.process_socket_facts(pid, listeners, proc))
        targets.append(info)
    ident = host.identity(proc)
    if limits_of:
        ident["limits_of"] = limits_of
    snap = Snapshot(
        host=ident,
        facts=facts,
        processes=targets,
        listeners=listeners,
        collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        origin="live",
    )
    from tuneup.facts import servers   # app.*: the servers' own limits (live targets, --app-config)

    servers.add_facts(snap, app_configs, proc=proc)
    return snap


def collect_root(keys: Iterable[str], root: Path, service: str | None = None,
                 app_configs: dict[str, Path] | None = None) -> Snapshot:
    """A filesystem tree (a golden image, a config repository) instead of a live host: every fact
    is the value the files under root give at boot, with the file and line that set it."""
    from tuneup.facts import configfiles

    if not root.is_dir():
        raise UsageError("not a directory", str(root))
    keys = set(keys) | BASE_KEYS
    facts, limits_of = configfiles.snapshot_facts(root, {k for k in keys if sysctl.is_sysctl(k)}, service,
                                                  rootfs=True)
    snap = Snapshot(
        host=_root_identity(root, limits_of),
        facts=facts,
        collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        origin=f"root:{root}",
    )
    from tuneup.facts import servers   # app.*: the servers' configs at their default paths in the tree

    servers.add_facts(snap, app_configs, root=root)
    return snap


def _root_identity(root: Path, limits_of: str) -> dict:
    def first_line(rel: str) -> str:
        try:
            return (root / rel).read_text(encoding="utf-8", errors="replace").strip().splitlines()[0].strip()
        except (OSError, IndexError):
            return ""

    osr: dict[str, str] = {}
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            k, sep, v = line.partition("=")
            if sep:
                osr[k.strip()] = v.strip().strip('"')
        break
    return {
        "hostname": first_line("etc/hostname") or root.resolve().name or "/",
        "kernel": "unknown",
        "kernel_version": [0, 0, 0],
        "distro": f"{osr.get('ID', '')} {osr.get('VERSION_ID', '')}".strip() or "unknown",
        "origin": "root",
        "root": str(root),
        "netns": "not applicable",
        "netns_evidence": "a filesystem tree, not a running kernel",
        "limits_of": limits_of,
    }
