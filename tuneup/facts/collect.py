"""Gather a Snapshot from the live host: the facts the rules need, host identity, processes."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
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
    for name in names:   # never tuneup itself (`--process python3` would otherwise match it)
        found = [p for p in processes.find_by_name(name, proc) if p != os.getpid()]
        if not found:
            raise UsageError(f"no running process named {name!r}", "--process")
        out.extend(found)
    return list(dict.fromkeys(out))


def collect(keys: Iterable[str], pids: Iterable[int] = (), proc: str = "/proc", service: str | None = None,
            root: str = "/", sample: float | None = None, sockets: bool = True,
            app_configs: dict[str, Path] | None = None, only_wanted: bool = False) -> Snapshot:
    """The live host. Beside each live sysctl the value the next boot applies (boot.KEY, from the
    files under root); with service, rlimit.nofile.* are what systemd gives that unit. With sockets,
    the live socket census and kernel counters (read twice, `sample` seconds apart, when given).
    only_wanted (an audit, not a snapshot to keep): the census is only as wide as keys need, so the
    per-state socket counts are left out unless a key names one (observe.census_scope)."""
    from tuneup.facts import configfiles, observe

    keys = set(keys) | BASE_KEYS
    sysctl_keys = {k for k in keys if sysctl.is_sysctl(k)}
    facts: dict[str, Fact] = {}
    facts.update(sysctl.read_many(sysctl_keys, proc))
    facts.update(limits.self_facts())
    rel = os.uname().release
    boot, limits_of = configfiles.snapshot_facts(Path(root), sysctl_keys, service, rootfs=False,
                                                 kernel=host.kernel_tuple(rel), release=rel)
    facts.update(boot)
    listeners = None
    if sockets:
        from tuneup.facts import counters

        reserved = facts.get("net.ipv4.ip_local_reserved_ports")
        pids = list(dict.fromkeys(pids))
        softnet = counters.read_softnet(proc) if sample else None
        sock_facts, listeners = observe.socket_facts(sample, keys, reserved.value if reserved else None, proc,
                                                     targets=pids, only_wanted=only_wanted)
        facts.update(sock_facts)
        facts.update(_softnet_facts(softnet, counters.read_softnet(proc) if sample else None, proc))
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
        facts.update(_cgroup_and_beam_facts(pid, info, proc))
        targets.append(info)
    ident = host.identity(proc)
    applier = facts.get("boot.applier")
    if applier is not None:
        ident["sysctl_at_boot"] = f"{applier.value} ({applier.source})"
    if limits_of:
        ident["limits_of"] = limits_of
        facts.update(_service_tasks(root, service, facts))
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


def _softnet_facts(before: dict | None, after: dict | None, proc: str) -> dict[str, Fact]:
    """sample.softnet.dropped.delta over the sampling window (absent without one)."""
    key = "sample.softnet.dropped.delta"
    if before is None or after is None:
        return {key: Fact(key, None, "no sampling window (audit --sample SECONDS)")}
    return {key: Fact(key, max(0, after["dropped"] - before["dropped"]), f"{proc}/net/softnet_stat sampled twice")}


def _service_tasks(root, service: str | None, facts: dict[str, Fact]) -> dict[str, Fact]:
    """systemd's TasksMax= for the --service unit (or any service, from a tree)."""
    from tuneup.facts import cgroups

    return cgroups.service_tasks_facts(root, service, facts)


def _cgroup_and_beam_facts(pid: int, info: dict, proc: str) -> dict[str, Fact]:
    from tuneup.facts import beam, cgroups

    out = cgroups.process_cgroup_facts(pid, proc)
    out.update(beam.beam_facts(pid, str(info.get("name", "")), list(info.get("cmdline") or []), proc))
    return out


def collect_root(keys: Iterable[str], root: Path, service: str | None = None, kernel: str | None = None,
                 ram_bytes: int | None = None,
                 app_configs: dict[str, Path] | None = None) -> Snapshot:
    """A filesystem tree (a golden image, a config repository) instead of a live host: every fact
    is the value the files under root give at boot, with the file and line that set it; a key no
    file sets gets the kernel's own default for the tree's kernel (and RAM, when given)."""
    from tuneup import kdefaults
    from tuneup.facts import configfiles

    if not root.is_dir():
        raise UsageError("not a directory", str(root))
    keys = set(keys) | BASE_KEYS
    release, version, why = host.tree_kernel(root, kernel)
    systemd, systemd_where = host.tree_systemd(root)
    facts, limits_of = configfiles.snapshot_facts(root, {k for k in keys if sysctl.is_sysctl(k)}, service,
                                                  rootfs=True, systemd=systemd, kernel=version, release=release)
    facts.update(_service_tasks(root, service, facts))
    pid1 = systemd if systemd is not None and _init_is_systemd(root) else None
    defaults = kdefaults.kernel_defaults(version, ram_bytes, None, pid1)
    label = kdefaults.describe(version, ram_bytes)
    for k in kdefaults.LIVE_ONLY:
        facts.pop(k, None)
    for k in sorted(keys):
        f = facts.get(k)
        if f is None or f.value is not None or not sysctl.is_sysctl(k):
            continue
        d = defaults.get(k)
        gone = kdefaults.absent(version, k)
        if gone:
            facts[k] = Fact(k, None, f"kernel {release}: {gone}")
        elif d is not None:
            how = "computed" if d.exact else "estimated"
            facts[k] = Fact(k, d.value, f"{label}, {how}: {d.cite}")
        elif version is None:
            facts[k] = dataclasses.replace(f, error=f"no file sets it and the tree's kernel is unknown ({why}; "
                                                    "give --kernel X.Y)")
        elif ram_bytes is None and k in kdefaults.kernel_defaults(version, 2**33, 1, pid1):
            facts[k] = dataclasses.replace(f, error="no file sets it and its kernel default depends on RAM "
                                                    "(give --ram SIZE)")
    ident = _root_identity(root, limits_of)
    from tuneup.textsafe import printable

    release, why = (printable(release) if release else release), printable(why)
    ident.update({"kernel": f"{release} ({why})" if release else f"unknown ({why})",
                  "kernel_release": release or "", "kernel_version": list(version) if version else None,
                  "kernel_why": why, "systemd": systemd, "systemd_source": systemd_where})
    applier = facts.get("boot.applier")
    if applier is not None:
        ident["sysctl_at_boot"] = f"{applier.value} ({applier.source})"
    if ram_bytes:
        ident["mem_total_bytes"] = int(ram_bytes)
    snap = Snapshot(
        host=ident,
        facts=facts,
        collected_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        origin=f"root:{root}",
    )
    from tuneup.facts import servers   # app.*: the servers' configs at their default paths in the tree

    servers.add_facts(snap, app_configs, root=root)
    return snap


def _init_is_systemd(root: Path) -> bool:
    """Does the tree boot systemd as PID 1 (sbin/init a link to systemd, or no other init)?"""
    for rel in ("sbin/init", "usr/sbin/init"):
        p = root / rel
        if p.is_symlink():
            return "systemd" in os.readlink(p)
        if p.exists():
            return False
    return True


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
        "kernel_version": None,
        "distro": f"{osr.get('ID', '')} {osr.get('VERSION_ID', '')}".strip() or "unknown",
        "origin": "root",
        "root": str(root),
        "netns": "not applicable",
        "netns_evidence": "a filesystem tree, not a running kernel",
        "limits_of": limits_of,
    }
