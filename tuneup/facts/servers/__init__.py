"""The servers' own limits: nginx, HAProxy, Redis and Erlang/BEAM (Ranch/Cowboy) configuration.

add_facts() puts app.<server>.* facts into a snapshot from three places:
  live      the --pid/--process targets that are one of these servers (config path from the command line)
  --root    the servers' default config paths in the tree
  --app-config NAME=PATH   a config file given by hand (NAME: nginx, haproxy, redis, beam)
Nothing here writes anything; the servers' own tools are only asked to print (nginx -T, haproxy -c).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from tuneup.errors import UsageError
from tuneup.model import Snapshot

NAMES = ("nginx", "haproxy", "redis", "beam")
_PROCESS_KIND = {"nginx": "nginx", "haproxy": "haproxy", "redis-server": "redis", "beam.smp": "beam", "beam": "beam"}


def parse_app_configs(items: Iterable[str] | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        name = name.strip().lower()
        if not sep or not path.strip():
            raise UsageError(f"{item!r}: expected NAME=PATH", "--app-config")
        if name in ("erlang", "vm.args", "sys.config", "ranch", "cowboy"):
            name = "beam"
        if name == "redis-server":
            name = "redis"
        if name not in NAMES:
            raise UsageError(f"{item!r}: unknown server {name!r} (choose: {', '.join(NAMES)})", "--app-config")
        p = Path(path.strip())
        if not p.exists():
            raise UsageError("no such file or directory", f"--app-config {name}={p}")
        out[name] = p
    return out


def kind_of(proc: Mapping) -> str | None:
    name = str(proc.get("name") or "")
    argv = proc.get("cmdline") or []
    if name in _PROCESS_KIND:
        return _PROCESS_KIND[name]
    base = os.path.basename(argv[0]) if argv else ""
    if base.startswith("nginx:") or base == "nginx":
        return "nginx"
    return _PROCESS_KIND.get(base)


def add_facts(snap: Snapshot, app_configs: Mapping[str, Path] | None = None, root: Path | None = None,
              proc: str = "/proc") -> None:
    """Add app.* facts to snap (in place). Live targets first; --app-config wins over both."""
    by_kind: dict[str, list[int]] = {}
    argv_of: dict[int, list[str]] = {}
    for p in snap.processes:
        kind = kind_of(p)
        if kind is not None and isinstance(p.get("pid"), int):
            by_kind.setdefault(kind, []).append(p["pid"])
            argv_of[p["pid"]] = list(p.get("cmdline") or [])
    if root is None and not by_kind and not app_configs:
        return      # no server to read: the parsers are not even imported (start-up of a plain audit)
    from tuneup.facts.servers import beam_config, haproxy, nginx, redis

    cpus = int(snap.host.get("cpus") or os.cpu_count() or 1)
    facts = {}
    if root is not None:
        r = Path(root)
        if (r / nginx.DEFAULT_CONF).is_file():
            facts.update(nginx.offline(r / nginx.DEFAULT_CONF, cpus, r))
        if (r / haproxy.DEFAULT_CONF).is_file():
            facts.update(haproxy.facts(_read(r / haproxy.DEFAULT_CONF), str(r / haproxy.DEFAULT_CONF), cpus))
        if (r / redis.DEFAULT_CONF).is_file():
            facts.update(redis.offline(r / redis.DEFAULT_CONF))
        vm, sc = beam_config.find_release(r)
        if vm or sc:
            facts.update(beam_config.release_facts(vm, sc))
    if "nginx" in by_kind:
        facts.update(nginx.live(by_kind["nginx"], cpus, proc))
    if "haproxy" in by_kind:
        facts.update(haproxy.live(by_kind["haproxy"], cpus, proc))
    if "redis" in by_kind:
        facts.update(redis.live(by_kind["redis"], proc, (app_configs or {}).get("redis")))
    if "beam" in by_kind:
        pid = by_kind["beam"][0]
        facts.update(beam_config.live(pid, argv_of.get(pid) or []))
    for name, path in (app_configs or {}).items():
        if name == "redis" and "redis" in by_kind:
            continue            # the live server's CONFIG GET already read with this file's lines
        if name == "nginx":
            facts.update(nginx.offline(path, cpus))
        elif name == "haproxy":
            facts.update(haproxy.offline(path, cpus))
        elif name == "redis":
            facts.update(redis.offline(path))
        elif name == "beam":
            facts.update(beam_config.from_path(path))
    snap.facts.update(facts)


def _read(path: Path) -> str:
    from tuneup.facts.servers.common import read_text

    return read_text(path)
