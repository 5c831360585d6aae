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


def identity(proc: str = "/proc") -> dict:
    import distro
    import psutil

    uname = os.uname()
    ns, evidence = netns_state(proc)
    try:
        cpus = len(os.sched_getaffinity(0))
    except OSError:
        cpus = os.cpu_count() or 1
    # os-release only: the lsb_release and uname fallbacks cost two subprocesses per audit.
    dist = distro.LinuxDistribution(include_lsb=False, include_uname=False, include_oslevel=False)
    name = dist.id() or "linux"
    version = dist.version(best=False)
    return {
        # os.uname() decodes undecodable bytes to lone surrogates: make them U+FFFD, text that can be
        # printed and written to a snapshot
        "hostname": uname.nodename.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
        "kernel": uname.release,
        "kernel_version": list(kernel_tuple(uname.release)),
        "arch": uname.machine,
        "distro": f"{name} {version}".strip(),
        "cpus": cpus,
        "mem_total_bytes": psutil.virtual_memory().total,
        "page_size": os.sysconf("SC_PAGE_SIZE"),
        "netns": ns,
        "netns_evidence": evidence,
    }
