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


# -- systemd TasksMax= for a service that is not running (--service, --root) -----------------------
# systemd.resource-control(5): TasksMax=N, N%, or infinity; a percentage is of the kernel's task
# ceiling (the smaller of kernel.pid_max and kernel.threads-max). systemd-system.conf(5):
# DefaultTasksMax= defaults to 15% since v240.
DEFAULT_TASKS_MAX_PCT = 15


def parse_tasks_max(value: str, ceiling: int | None) -> int | None:
    """'4915' -> 4915, 'infinity' -> RLIM_INFINITY, '15%' -> 15% of ceiling (None: unknown ceiling)."""
    v = value.strip()
    if v == "infinity":
        return RLIM_INFINITY
    if v.endswith("%") and v[:-1].replace(".", "", 1).isdigit():
        return None if ceiling is None else int(ceiling * float(v[:-1]) / 100)
    if v.isdigit():
        return int(v)
    return None


def service_tasks_facts(root, service: str | None, facts: dict) -> dict[str, Fact]:
    """cgroup.pids.max as systemd would set it for the service (TasksMax= in its unit files, else
    DefaultTasksMax=, else 15%), or for any service without one; the key process rules read when no
    running server is named."""
    from pathlib import Path

    from tuneup.facts import configfiles as cf

    root = Path(root)
    nums = [facts[k].value for k in ("kernel.pid_max", "kernel.threads-max")
            if k in facts and isinstance(facts[k].value, int)]
    ceiling = min(nums) if nums else None

    def last(files, section: str, key: str):
        found = None
        for f in files:
            try:
                text = f.path.read_bytes().decode("utf-8", "replace")
            except OSError:
                continue
            for sec, k, v, where in cf.parse_unit(text, f.shown):
                if sec == section and k == key:
                    found = (v, where) if v else None
        return found

    hit = None
    if service:
        hit = last(cf.unit_files(root, cf.unit_name(service)), "Service", "TasksMax")
    if hit is None:
        hit = last(cf._file(root, cf.SYSTEMD_CONF) + cf.conf_files(root, cf.SYSTEMD_CONF_DIRS),
                   "Manager", "DefaultTasksMax")
    raw, where = hit or (f"{DEFAULT_TASKS_MAX_PCT}%", "systemd default DefaultTasksMax=15% (v240)")
    value = parse_tasks_max(raw, ceiling)
    if value is None:
        return {"cgroup.pids.max": Fact("cgroup.pids.max", None, where,
                                        error=f"TasksMax={raw}: cannot size it without kernel.pid_max")}
    shown = f"{where} (TasksMax={raw}" + (f" of {ceiling})" if raw.endswith("%") else ")")
    return {"cgroup.pids.max": Fact("cgroup.pids.max", value, shown)}
