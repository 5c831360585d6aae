"""The cgroup limits of a running server: pids.max (systemd TasksMax=) and memory.max (MemoryMax=).

Facts, keyed per process like the rest of processes.py's:
  proc.PID.cgroup.pids.max     tasks the server's cgroup may hold; RLIM_INFINITY for "max";
                               absent when the cgroup has no pids controller
  proc.PID.cgroup.memory.max   bytes the server's cgroup may use; RLIM_INFINITY for "max";
                               absent when the cgroup has no memory controller

cgroup v2: /proc/PID/cgroup has "0::/system.slice/nginx.service" and the files are under
/sys/fs/cgroup/<path>/. cgroup v1: the "N:pids:/path" and "N:memory:/path" lines, files under
/sys/fs/cgroup/pids/<path>/pids.max and /sys/fs/cgroup/memory/<path>/memory.limit_in_bytes.
A limit is the tightest of the cgroup and its ancestors (the kernel enforces every level).
"""

from __future__ import annotations

import os

from tuneup.model import RLIM_INFINITY, Fact

V1_FILES = {"pids": ("pids", "pids.max"), "memory": ("memory", "memory.limit_in_bytes")}
V2_FILES = {"pids": "pids.max", "memory": "memory.max"}
# cgroup v1 reports "no limit" as the largest page-aligned signed 64-bit value
V1_UNLIMITED = 0x7FFFFFFFFFFFF000


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {"": v2 path, "pids": v1 path, "memory": v1 path, ...}."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            out[""] = path
        for c in controllers.split(","):
            if c:
                out[c] = path
    return out


def parse_limit(text: str) -> int | None:
    """'max' -> RLIM_INFINITY, a number -> int, anything else -> None."""
    t = text.strip()
    if t == "max":
        return RLIM_INFINITY
    if t.isdigit():
        v = int(t)
        return RLIM_INFINITY if v >= V1_UNLIMITED else v
    return None


def _tightest(base: str, rel: str, name: str) -> tuple[int, str] | None:
    """The lowest limit from the cgroup up to the root of the hierarchy; None: no such file."""
    rel = rel.strip("/")
    parts = rel.split("/") if rel else []
    best: tuple[int, str] | None = None
    for i in range(len(parts), -1, -1):
        path = os.path.join(base, *parts[:i], name)
        try:
            with open(path) as fh:
                v = parse_limit(fh.read())
        except OSError:
            continue
        if v is not None and (best is None or v < best[0]):
            best = (v, path)
    return best


def process_cgroup_facts(pid: int, proc: str = "/proc", sysfs: str = "/sys/fs/cgroup") -> dict[str, Fact]:
    prefix = f"proc.{pid}.cgroup."
    src = f"{proc}/{pid}/cgroup"
    try:
        with open(src) as fh:
            paths = parse_proc_cgroup(fh.read())
    except OSError as exc:
        return {prefix + k + ".max": Fact(prefix + k + ".max", None, src, error=exc.strerror or str(exc))
                for k in V2_FILES}
    facts: dict[str, Fact] = {}
    for kind, v2name in V2_FILES.items():
        key = prefix + kind + ".max"
        hit = None
        if "" in paths:
            hit = _tightest(sysfs, paths[""], v2name)
        if hit is None and kind in paths:
            sub, v1name = V1_FILES[kind]
            hit = _tightest(os.path.join(sysfs, sub), paths[kind], v1name)
        facts[key] = Fact(key, hit[0], hit[1]) if hit else Fact(key, None, f"{src}: no {kind} controller")
    return facts
