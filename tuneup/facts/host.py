"""Host identity: hostname, kernel, distro, CPUs, RAM, network namespace."""

from __future__ import annotations

import os
import re

# init_net's fixed inode number on kernels that assign one (include/linux/proc_ns.h).
PROC_NET_INIT_INO = 0xEFFFFFF9


def kernel_tuple(release: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not m:
        return (0, 0, 0)
    return tuple(int(x or 0) for x in m.groups())


def netns_state(proc: str = "/proc") -> tuple[str, str]:
    """("initial" | "child" | "unknown", evidence).

    First compare the network namespace of this process with that of PID 1. PID 1 may be
    unreadable (no CAP_SYS_PTRACE) or may itself live in a container; so also use the kernel's own
    tell: host-global IPv4 sysctls such as tcp_mem are registered in the initial namespace only, so
    they are missing in every child namespace.
    """
    try:
        mine = os.stat(f"{proc}/self/ns/net").st_ino
    except OSError:
        mine = None
    try:
        init = os.stat(f"{proc}/1/ns/net").st_ino
    except OSError:
        init = None
    has_global = os.path.exists(f"{proc}/sys/net/ipv4/tcp_mem")
    has_netns_keys = os.path.exists(f"{proc}/sys/net/ipv4/tcp_rmem")
    if mine is not None and init is not None and mine != init:
        return "child", "/proc/self/ns/net differs from /proc/1/ns/net"
    if has_netns_keys and not has_global:
        return "child", "host-global sysctl net.ipv4.tcp_mem is not visible (child namespace)"
    if mine is not None and init is not None:
        return "initial", "/proc/self/ns/net equals /proc/1/ns/net"
    if mine == PROC_NET_INIT_INO:
        return "initial", "network namespace inode is init_net's fixed inode"
    if has_global:
        return "initial", "host-global sysctl net.ipv4.tcp_mem is visible (/proc/1/ns/net unreadable)"
    return "unknown", "neither /proc/1/ns/net nor net.ipv4 sysctls could be read"


def os_release(root: str = "/") -> dict[str, str]:
    """os-release(5) as a dict: /etc/os-release, else /usr/lib/os-release (the distro package
    reads the same file, but importing it costs more than the rest of an audit's collection)."""
    for rel in ("etc/os-release", "usr/lib/os-release"):
        try:
            with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as fh:
                text = fh.read(1 << 16)
        except OSError:
            continue
        out: dict[str, str] = {}
        for line in text.splitlines():
            k, sep, v = line.partition("=")
            v = v.strip()
            if sep and k.strip() and not k.lstrip().startswith("#"):
                if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                    v = v[1:-1]
                out[k.strip()] = v
        return out
    return {}


def mem_total_bytes(proc: str = "/proc") -> int:
    """MemTotal from /proc/meminfo (what psutil.virtual_memory().total reports), in bytes."""
    try:
        with open(f"{proc}/meminfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def identity(proc: str = "/proc") -> dict:
    uname = os.uname()
    ns, evidence = netns_state(proc)
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    # os-release only: the lsb_release and uname fallbacks cost two subprocesses per audit.
    osr = os_release()
    name = osr.get("ID", "").lower() or "linux"
    version = osr.get("VERSION_ID", "")
    return {
        "hostname": uname.nodename,
        "kernel": uname.release,
        "kernel_version": list(kernel_tuple(uname.release)),
        "arch": uname.machine,
        "distro": f"{name} {version}".strip(),
        "cpus": cpus,
        "mem_total_bytes": mem_total_bytes(proc),
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "netns": ns,
        "netns_evidence": evidence,
    }
