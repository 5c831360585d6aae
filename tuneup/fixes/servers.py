"""The servers' own settings that fix failing server rules (rules/servers.toml), as snippets for
review: an nginx include, HAProxy global/defaults lines, redis.conf lines, vm.args lines and a
sys.config fragment. Pure: Report + Snapshot -> {relative path: text}. tuneup never edits a
server's files and `fix --apply` never installs these: an operator copies them in.

Every value is an integer computed here and validated (fixes.values.int_value); free text reaches
comment lines only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tuneup.fixes.values import comment, int_value
from tuneup.model import Report, Snapshot, Status

REVIEW_DIR = "review"
FILES = {"nginx": "nginx-tuneup.conf", "haproxy": "haproxy-tuneup.cfg", "redis": "redis-tuneup.conf",
         "vm.args": "vm.args.tuneup", "sys.config": "sys.config.tuneup"}


@dataclass(frozen=True)
class Change:
    file: str          # key of FILES
    setting: str       # the directive as the server spells it ("worker_connections", "+P", "maxclients")
    value: int
    where: str         # where it goes ("events block", "global section", "each listen directive")
    rule: str
    reason: str        # the finding's message
    before: str        # the fact's value and source


def _int(snap: Snapshot, key: str) -> int | None:
    f = snap.get(key)
    return f.value if f is not None and isinstance(f.value, int) and not isinstance(f.value, bool) else None


def plan(report: Report, snap: Snapshot, params: Mapping[str, Any]) -> list[Change]:
    """One change per failing server rule that a setting of the server fixes."""
    connections = int(params.get("connections", 0))
    dead_peer = int(params.get("dead_peer_max_s", 1200))
    somaxconn = _int(snap, "net.core.somaxconn")
    out: list[Change] = []
    for f in report.findings:
        if f.status is not Status.FAIL:
            continue
        fact = snap.get(f.key)
        before = f"{comment(str(f.actual))} ({comment(fact.source if fact else f.key)})"

        def add(file: str, setting: str, value: Any, where: str) -> None:
            out.append(Change(file, setting, int_value(value, f"{f.rule} {setting}"), where, f.rule,
                              comment(f.message), before))

        r = f.rule
        if r == "NGINX-CONNECTIONS":
            workers = max(1, _int(snap, "app.nginx.worker_processes") or 1)
            per = 2 if _int(snap, "app.nginx.proxy") else 1
            from tuneup.facts.servers.nginx import worker_connections_for

            wc = worker_connections_for(-(-connections * per // workers), _int(snap, "app.nginx.listens") or 1)
            add("nginx", "worker_connections", wc, "events block (replace the existing line)")
            add("nginx", "worker_rlimit_nofile", wc + 1024, "main context (top level of nginx.conf)")
        elif r == "NGINX-NOFILE":
            wc = _int(snap, "app.nginx.worker_connections") or 0
            add("nginx", "worker_rlimit_nofile", wc + 1024, "main context (top level of nginx.conf)")
        elif r in ("NGINX-BACKLOG-STORM", "NGINX-BACKLOG-SOMAXCONN"):
            want = int(f.expected_value) if r == "NGINX-BACKLOG-STORM" else somaxconn
            if want:
                add("nginx", "backlog", want, "each listen directive: listen ... backlog=N (and net.core.somaxconn "
                    ">= N: tuneup fix renders that sysctl)")
        elif r == "NGINX-KEEPALIVE-TIMEOUT":
            add("nginx", "keepalive_timeout", dead_peer, "http block")
        elif r == "NGINX-PROXY-READ-TIMEOUT":
            add("nginx", "proxy_read_timeout", 2 * int(params.get("app_keepalive_s", 0)) + 10,
                "the websocket location (or http block)")
        elif r == "HAPROXY-TIMEOUT-TUNNEL":
            add("haproxy", "timeout tunnel", max(2 * int(params.get("app_keepalive_s", 0)) + 10, 60),
                "defaults section (or the websocket backend)")
        elif r == "HAPROXY-MAXCONN":
            add("haproxy", "maxconn", connections, "global section")
        elif r == "HAPROXY-FRONTEND-MAXCONN":
            add("haproxy", "maxconn", connections, "defaults section (or each frontend)")
        elif r == "HAPROXY-ULIMIT":
            add("haproxy", "ulimit-n", 2 * (_int(snap, "app.haproxy.maxconn") or connections) + 1024,
                "global section (or remove ulimit-n: HAProxy computes it from maxconn)")
        elif r == "HAPROXY-BACKLOG-STORM":
            add("haproxy", "backlog", int(f.expected_value), "defaults section (and net.core.somaxconn >= it)")
        elif r == "REDIS-BACKLOG-STORM":
            add("redis", "tcp-backlog", int(f.expected_value), "redis.conf (and net.core.somaxconn >= it)")
        elif r == "RANCH-BACKLOG-STORM":
            add("sys.config", "backlog", int(f.expected_value), "the listener's socket_opts (and net.core.somaxconn >= it)")
        elif r == "HAPROXY-BACKLOG-SOMAXCONN" and somaxconn:
            add("haproxy", "backlog", somaxconn, "defaults section (or each frontend)")
        elif r == "HAPROXY-TIMEOUT-CLIENT":
            add("haproxy", "timeout client", dead_peer, "defaults section (seconds: write it with an s)")
        elif r == "REDIS-MAXCLIENTS":
            add("redis", "maxclients", connections, "redis.conf (and LimitNOFILE >= maxclients + 32 for the service)")
        elif r == "REDIS-MAXCLIENTS-NOFILE":
            mc = _int(snap, "app.redis.maxclients_configured") or connections
            add("redis", "LimitNOFILE", mc + 32, "the service's unit, not redis.conf: "
                "`tuneup fix --service redis-server.service` renders the drop-in")
        elif r == "REDIS-BACKLOG-SOMAXCONN" and somaxconn:
            add("redis", "tcp-backlog", somaxconn, "redis.conf (or raise net.core.somaxconn)")
        elif r == "REDIS-KEEPALIVE":
            add("redis", "tcp-keepalive", max(1, dead_peer // 2), "redis.conf")
        elif r == "RANCH-MAX-CONNECTIONS":
            sups = max(1, _int(snap, "app.ranch.num_conns_sups") or 1)
            add("sys.config", "max_connections", -(-connections // sups), "the listener's transport options "
                f"(see before); Ranch 2 counts it per connection supervisor ({sups} here); infinity lifts it")
        elif r == "RANCH-BACKLOG-SOMAXCONN" and somaxconn:
            add("sys.config", "backlog", somaxconn, "the listener's socket_opts")
        elif r == "BEAM-VMARGS-MAX-PROCESSES":
            add("vm.args", "+P", int(f.expected_value) * 11 // 10, "vm.args")
        elif r == "BEAM-VMARGS-MAX-PORTS":
            add("vm.args", "+Q", int(f.expected_value), "vm.args")
    return _one_per_setting(out)


def _one_per_setting(changes: list[Change]) -> list[Change]:
    """One line per (file, setting): the largest value, naming every rule that asked for it (a
    backlog wanted by the storm rule above somaxconn is served by raising somaxconn, not lowering it)."""
    from dataclasses import replace

    merged: dict[tuple[str, str], Change] = {}
    for c in changes:
        k = (c.file, c.setting)
        if k not in merged:
            merged[k] = c
            continue
        old = merged[k]
        top = c if c.value > old.value else old
        rules = ", ".join(dict.fromkeys(old.rule.split(", ") + c.rule.split(", ")))
        merged[k] = replace(top, rule=rules)
    return list(merged.values())


def render(changes: list[Change], host: str, profile: str) -> dict[str, str]:
    """{review/FILE: text} for the changes, one file per server, from templates/servers/*.j2."""
    from tuneup import __version__
    from tuneup.fixes.render import _env

    env = _env()
    files: dict[str, str] = {}
    for file, name in FILES.items():
        items = [c for c in changes if c.file == file]
        if not items:
            continue
        files[f"{REVIEW_DIR}/{name}"] = env.get_template(f"servers/{name}.j2").render(
            items=items, version=__version__, host=comment(host), profile=comment(profile))
    return files


def summary(files: Mapping[str, str]) -> str:
    if not files:
        return ""
    return (f"{len(files)} server snippet(s) to review, never applied by tuneup: "
            + ", ".join(sorted(files)) + "\n")
