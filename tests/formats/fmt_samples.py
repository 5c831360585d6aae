"""In-memory snapshots and reports for the format tests (real rulebook, real engine)."""

from __future__ import annotations

import functools

from conftest import STOCK as BASE

from tuneup.model import Fact, Finding, Report, Scope, Severity, Snapshot, Status

STOCK = {**BASE, "rlimit.nofile.hard": 2**64 - 1}   # "unlimited", rendered as such
HOSTILE = '<script>alert("x")</script> & "quoted" | pipe\\back`tick\nnewline @team'


def host(hostname: str = "web-1") -> dict:
    return {"hostname": hostname, "kernel": "6.1.0-13-amd64", "kernel_version": [6, 1, 0], "arch": "x86_64",
            "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096, "netns": "initial",
            "limits_of": "nginx.service (from its unit files)"}   # whose rlimit.* these are (audit --service)


def snapshot(hostname: str = "web-1", origin: str = "test", **values) -> Snapshot:
    vals = {**STOCK, **values}
    facts = {k: Fact(k, v, "/proc/sys/" + k.replace(".", "/") if not k.startswith("rlimit") else "getrlimit(2)")
             for k, v in vals.items()}
    return Snapshot(host=host(hostname), facts=facts, origin=origin)


@functools.lru_cache(maxsize=1)
def plan():
    from tuneup import run

    return run.plan("web", {})


def report(hostname: str = "web-1", origin: str = "test", **values) -> Report:
    return plan().audit(snapshot(hostname, origin, **values))


def file_report(origin: str = "root:tree") -> Report:
    """A report whose facts came from files (as `audit --root` produces them)."""
    def f(rule, status, source, sev=Severity.WARNING):
        return Finding(rule=rule, key="net.core.somaxconn", status=status, severity=sev, actual=128,
                       expected=">= 4096", message=f"{rule} message", title="t", scope=Scope.NETNS,
                       source=source, expected_value=4096, rationale="why", refs=("https://example.org/x (y)",))
    return Report(profile="web", params={"connections": 1}, host=host("tree-host"), origin=origin, findings=(
        f("NET-A", Status.FAIL, "etc/sysctl.d/99-x.conf:3"),
        f("NET-B", Status.FAIL, "/proc/sys/net/core/somaxconn"),
        f("NET-C", Status.ERROR, "/etc/sysctl.conf:12", Severity.CRITICAL),
        f("NET-D", Status.PASS, "etc/sysctl.conf:1"),
        f("NET-E", Status.FAIL, "getrlimit(2)", Severity.INFO),
    ))
