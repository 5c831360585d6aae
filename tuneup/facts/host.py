"""Host identity: hostname, kernel, distro, CPUs, RAM, network namespace."""

from __future__ import annotations

import os
import re

from tuneup.rx import lazy

# init_net's fixed inode number on kernels that assign one (include/linux/proc_ns.h).
PROC_NET_INIT_INO = 0xEFFFFFF9


def _decimals(s: str) -> int:
    """How many decimal digits (regex \\d) s starts with."""
    n = 0
    while n < len(s) and s[n].isdecimal():
        n += 1
    return n


def kernel_tuple(release: str) -> tuple[int, ...]:
    """(major, minor, patch) of a kernel release, what re.match(r"(\\d+)\\.(\\d+)(?:\\.(\\d+))?") finds at
    its start ("6.1.0-18-amd64" -> (6, 1, 0), "6.8-rc1" -> (6, 8, 0)); (0, 0, 0) when it does not
    start with two numbers. Written out: this runs at every audit, and compiling the pattern
    cost more than the rest of the host facts (tests/test_startup_regexes.py holds the two equal)."""
    a = _decimals(release)
    if not a or release[a:a + 1] != ".":
        return (0, 0, 0)
    rest = release[a + 1:]
    b = _decimals(rest)
    if not b:
        return (0, 0, 0)
    tail = rest[b:]
    c = _decimals(tail[1:]) if tail[:1] == "." else 0
    return (int(release[:a]), int(rest[:b]), int(tail[1:1 + c]) if c else 0)


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
        # os.uname() decodes undecodable bytes to lone surrogates: make them U+FFFD, text that can be
        # printed and written to a snapshot
        "hostname": uname.nodename.encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
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


_RELEASE = lazy(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def _ver_key(release: str) -> tuple:
    nums = [int(x) for x in re.findall(r"\d+", release)]
    return tuple(nums)


def _grub_default(root) -> tuple[str | None, str]:
    """The kernel release of grub's default entry, when boot/grub/grub.cfg says it plainly
    (set default="0" or no default, and menuentries with linux /boot/vmlinuz-RELEASE)."""
    for rel in ("boot/grub/grub.cfg", "boot/grub2/grub.cfg"):
        try:
            text = (root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        default = "0"
        m = re.search(r'^\s*set default="?([^"\s]*)"?', text, re.M)
        if m:
            default = m.group(1)
        entries = re.findall(r"^\s*linux(?:efi)?\s+\S*vmlinuz-(\S+)", text, re.M)
        if default.isdigit() and int(default) < len(entries):
            return entries[int(default)], f"{rel} default entry {default}"
        return None, f"{rel}: default entry {default!r} not resolvable"
    return None, ""


def tree_kernel(root, given: str | None = None) -> tuple[str | None, tuple[int, ...] | None, str]:
    """(release, version, why) of the kernel a tree boots: --kernel, else grub's default entry,
    else the newest release found in lib/modules, usr/lib/modules, boot/config-*, boot/vmlinuz-*."""
    if given:
        m = _RELEASE.match(given)
        if not m:
            from tuneup.errors import UsageError

            raise UsageError(f"not a kernel version (want X.Y or X.Y.Z): {given!r}", "--kernel")
        return given, kernel_tuple(given), "given with --kernel"
    found: dict[str, list[str]] = {}
    for rel in ("lib/modules", "usr/lib/modules"):
        try:
            for name in os.listdir(root / rel):
                if _RELEASE.match(name) and (root / rel / name).is_dir():
                    found.setdefault(name, []).append(f"{rel}/{name}")
        except OSError:
            pass
    try:
        for name in os.listdir(root / "boot"):
            for prefix in ("config-", "vmlinuz-"):
                rel = name[len(prefix):] if name.startswith(prefix) else ""
                if rel and _RELEASE.match(rel):
                    found.setdefault(rel, []).append(f"boot/{name}")
    except OSError:
        pass
    if not found:
        return None, None, "no lib/modules/*, usr/lib/modules/*, boot/config-* or boot/vmlinuz-* in the tree"
    default, why = _grub_default(root)
    if default and default in found:
        return default, kernel_tuple(default), why
    newest = max(found, key=_ver_key)
    n = len(found)
    return newest, kernel_tuple(newest), f"{found[newest][0]}" + (f", newest of {n}" if n > 1 else "")


def tree_systemd(root) -> tuple[int | None, str]:
    """systemd's version in a tree (from libsystemd-shared-NNN.so or dpkg's status), or None."""
    pat = re.compile(r"libsystemd-(?:shared|core)-(\d+)")
    for rel in ("lib/systemd", "usr/lib/systemd", "usr/lib/x86_64-linux-gnu/systemd", "usr/lib/aarch64-linux-gnu/systemd",
                "usr/lib64/systemd"):
        try:
            for name in os.listdir(root / rel):
                m = pat.match(name)
                if m:
                    return int(m.group(1)), f"{rel}/{name}"
        except OSError:
            pass
    try:
        text = (root / "var/lib/dpkg/status").read_text(encoding="utf-8", errors="replace")
        m = re.search(r"^Package: systemd\n(?:[^\n]+\n)*?Version: (\d+)", text, re.M)
        if m:
            return int(m.group(1)), "var/lib/dpkg/status"
    except OSError:
        pass
    return None, "no systemd found in the tree"
