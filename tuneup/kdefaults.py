"""The values a kernel boots with for keys no file sets, computed as the kernel computes them.

Pure: kernel version, RAM and CPUs in, {key: Default} out. Every default names the source line it
comes from (torvalds/linux, checked with the search tools; see the tests/offline netns check that
reproduces this machine's defaults). Each is exact (the kernel's own integer arithmetic on inputs
we know) or estimated (the kernel reads a number we cannot know from outside: free pages at boot,
the size of the kernel image); findings say which.

RAM: the kernel sizes its hash tables from the pages it manages (nr_kernel_pages,
totalram_pages()); MemTotal is totalram_pages, and a nominal "8 GiB" is a close stand-in. When RAM
is unknown, only what does not depend on it is computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneup.errors import MissingFact

PAGE = 4096
PAGE_SHIFT = 12
LONG_MAX = 2**63 - 1


@dataclass(frozen=True)
class Default:
    key: str
    value: int | tuple[int, ...] | str
    cite: str          # the kernel (or systemd) source that sets it
    exact: bool = True
    needs_ram: bool = False


def _roundup_pow2(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def ehash_entries(ram_bytes: int, page: int = PAGE) -> int:
    """TCP established hash size: alloc_large_system_hash("TCP established", 8, thash_entries=0,
    scale 17, ..., high_limit 512 * 1024) in tcp_init() (net/ipv4/tcp.c), mm/mm_init.c:
    pages rounded up to 1 MiB, one slot per 2^17 bytes, rounded up to a power of two, at most
    512K entries, at least one page of 8-byte buckets."""
    shift = page.bit_length() - 1
    n = ram_bytes // page
    per_mb = (1 << 20) // page
    n = -(-n // per_mb) * per_mb
    n = n >> (17 - shift) if 17 > shift else n << (shift - 17)
    if n * 8 < page:
        n = page // 8
    n = _roundup_pow2(n)
    return min(n, 512 * 1024)


def conntrack(kernel: tuple[int, ...], ram_bytes: int, page: int = PAGE) -> tuple[int, int, str]:
    """(nf_conntrack_buckets, nf_conntrack_max, cite) for a 64-bit kernel with no hashsize= given."""
    pages = ram_bytes // page
    size = (pages * page // 16384) // 8        # sizeof(struct hlist_head) == 8
    if kernel >= (5, 15):
        if pages > 4 * (2**30 // page):
            size = 262144
        elif pages > 2**30 // page:
            size = 65536
        size = max(size, 1024)
        return size, size, ("net/netfilter/nf_conntrack_core.c nf_conntrack_init_start(): 262144 buckets above "
                            "4 GiB, 65536 above 1 GiB, max_factor 1 (d532bcd0b269, 5.15)")
    if pages > 4 * (2**30 // page):
        size = 65536
    elif pages > 2**30 // page:
        size = 16384
    size = max(size, 32)
    return size, 4 * size, ("net/netfilter/nf_conntrack_core.c nf_conntrack_init_start() before 5.15: 65536 "
                            "buckets above 4 GiB, 16384 above 1 GiB, max_factor 4")


# keys the kernel no longer has, from the version that removed them
REMOVED = {"net.ipv4.tcp_tw_recycle": ((4, 12), "removed in 4.12 (4396e46187ca)")}


def absent(kernel: tuple[int, ...] | None, key: str) -> str | None:
    """Why key does not exist on this kernel, or None."""
    hit = REMOVED.get(key)
    if kernel is None or hit is None:
        return None
    return hit[1] if tuple(kernel) >= hit[0] else None


def _gib(ram: int) -> str:
    g = ram / 2**30
    return f"{g:.0f} GiB" if abs(g - round(g)) < 0.05 else f"{g:.1f} GiB"


def kernel_defaults(kernel: tuple[int, ...] | None, ram_bytes: int | None = None, cpus: int | None = None,
                    systemd: int | None = None) -> dict[str, Default]:
    """Boot values of the keys this model knows, for a kernel version (None: unknown, nothing is
    computed), RAM in bytes (None: RAM-dependent keys left out), possible CPUs, and the systemd
    version that runs as PID 1 (None: not systemd or unknown)."""
    if kernel is None:   # only what every kernel from 3.10 on boots with
        old = kernel_defaults((3, 10, 0), ram_bytes, cpus, systemd)
        new = kernel_defaults((7, 0, 0), ram_bytes, cpus, systemd)
        return {key: d for key, d in new.items() if key in old and old[key].value == d.value}
    k = tuple(kernel) + (0,) * (3 - len(kernel))
    out: dict[str, Default] = {}

    def put(key: str, value, cite: str, exact: bool = True, needs_ram: bool = False) -> None:
        out[key] = Default(key, value, cite, exact, needs_ram)

    tcp_ipv4 = "net/ipv4/tcp_ipv4.c tcp_sk_init()"
    # fixed per-namespace defaults
    put("net.core.somaxconn", 4096 if k >= (5, 4) else 128,
        "include/linux/socket.h SOMAXCONN (4096 since 5.4, 19f92a030ca6; 128 before)")
    put("net.ipv4.tcp_syncookies", 1, f"{tcp_ipv4}: sysctl_tcp_syncookies = 1")
    put("net.ipv4.tcp_abort_on_overflow", 0, "net/ipv4/sysctl_net_ipv4.c tcp_abort_on_overflow (zeroed struct net)")
    put("net.ipv4.tcp_fin_timeout", 60, f"{tcp_ipv4}: sysctl_tcp_fin_timeout = TCP_FIN_TIMEOUT (60 s)")
    put("net.ipv4.tcp_keepalive_time", 7200, f"{tcp_ipv4}: TCP_KEEPALIVE_TIME (2 h)")
    put("net.ipv4.tcp_keepalive_intvl", 75, f"{tcp_ipv4}: TCP_KEEPALIVE_INTVL (75 s)")
    put("net.ipv4.tcp_keepalive_probes", 9, f"{tcp_ipv4}: TCP_KEEPALIVE_PROBES")
    put("net.ipv4.tcp_orphan_retries", 0, f"{tcp_ipv4}: sysctl_tcp_orphan_retries = 0")
    put("net.ipv4.tcp_timestamps", 1, f"{tcp_ipv4}: sysctl_tcp_timestamps = 1")
    put("net.ipv4.tcp_tw_reuse", 2 if k >= (4, 19) else 0,
        f"{tcp_ipv4}: sysctl_tcp_tw_reuse = 2 (loopback only, since 4.19; 0 before)")
    if k < (4, 12):
        put("net.ipv4.tcp_tw_recycle", 0, "net/ipv4/tcp_ipv4.c tcp_death_row.sysctl_tw_recycle (removed in 4.12)")
    put("net.ipv4.ip_local_port_range", (32768, 60999) if k >= (4, 6) else (32768, 61000),
        "net/ipv4/af_inet.c inet_init_net(): 32768 60999 (since 4.6; 32768 61000 before)")
    if k >= (4, 11):
        put("net.ipv4.ip_unprivileged_port_start", 1024, "net/ipv4/af_inet.c inet_init_net(): PROT_SOCK (1024)")
    put("net.ipv4.ip_local_reserved_ports", "", "net/ipv4/af_inet.c: an empty bitmap")
    put("net.ipv4.tcp_wmem", (4096, 16384, 4194304),
        "net/ipv4/tcp.c tcp_init(): tcp_wmem = 4 KiB, 16 KiB, max(64 KiB, min(4 MiB, limit))")
    if k >= (4, 20):
        put("net.ipv4.tcp_rmem", (4096, 131072, 33554432 if k >= (6, 16) else 6291456),
            "net/ipv4/tcp.c tcp_init(): tcp_rmem[1] = 131072 (a337531b942b, 4.20), tcp_rmem[2] = 6 MiB "
            "(32 MiB since 572be9bf9d0d, 6.16)")
    put("net.netfilter.nf_conntrack_tcp_timeout_established", 432000,
        "net/netfilter/nf_conntrack_proto_tcp.c tcp_timeouts[TCP_CONNTRACK_ESTABLISHED] = 5 DAYS")
    # fixed host-global defaults
    put("net.core.netdev_max_backlog", 1000, "net/core/dev.c netdev_max_backlog = 1000")
    put("fs.nr_open", 1024 * 1024, "fs/file.c sysctl_nr_open = 1024 * 1024")
    put("vm.max_map_count", 65530, "include/linux/mm.h DEFAULT_MAX_MAP_COUNT (USHRT_MAX - 5)")
    if cpus:
        put("kernel.pid_max", min(4194304, max(32768, 1024 * cpus)),
            "kernel/pid.c pid_idr_init(): max(PID_MAX_DEFAULT, PIDS_PER_CPU_DEFAULT * possible CPUs)")
    if systemd is not None and systemd >= 240:
        put("fs.file-max", LONG_MAX, f"systemd {systemd} src/core/main.c bump_file_max_and_nr_open(): LONG_MAX at boot")
        put("fs.nr_open", 1073741816, f"systemd {systemd} src/core/main.c bump_file_max_and_nr_open(): the highest the "
                                      "kernel accepts, 1073741816 on 64-bit")
    if ram_bytes:
        cnt = ehash_entries(ram_bytes)
        ehash = f"cnt = {cnt} ehash entries (tcp_init(): alloc_large_system_hash(\"TCP established\", ..., 17, ...))"
        put("net.ipv4.tcp_max_tw_buckets", cnt // 2, f"{tcp_ipv4}: sysctl_max_tw_buckets = cnt / 2, {ehash}", True, True)
        put("net.ipv4.tcp_max_syn_backlog", max(128, cnt // 128 if k >= (5, 5) else cnt // 256),
            f"{tcp_ipv4}: sysctl_max_syn_backlog = max(128, cnt / 128) (cnt / 256 before 5.5), {ehash}", True, True)
        put("net.ipv4.tcp_max_orphans", cnt // 2, f"net/ipv4/tcp.c tcp_init(): sysctl_tcp_max_orphans = cnt / 2, {ehash}",
            True, True)
        if k >= (5, 0):
            buckets, ctmax, cite = conntrack(k, ram_bytes)
            put("net.netfilter.nf_conntrack_buckets", buckets, cite, True, True)
            put("net.netfilter.nf_conntrack_max", ctmax, cite, True, True)
        pages = ram_bytes // PAGE
        limit = max(pages // 16, 128)
        put("net.ipv4.tcp_mem", (limit // 4 * 3, limit, limit // 4 * 3 * 2),
            "net/ipv4/tcp.c tcp_init_mem(): limit = nr_free_buffer_pages() / 16; [limit/4*3, limit, 2*(limit/4*3)] "
            "(free buffer pages at boot estimated as RAM pages)", False, True)
        put("kernel.threads-max", pages * PAGE // (16384 * 8),
            "kernel/fork.c set_max_threads(): RAM / (THREAD_SIZE * 8), THREAD_SIZE 16 KiB on x86_64", False, True)
        if "fs.file-max" not in out:
            put("fs.file-max", max(pages * (PAGE // 1024) // 10, 8192),
                "fs/file_table.c files_maxfiles_init(): 10% of RAM in KiB (minus boot-time reservations, estimated)",
                False, True)
    return out


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str, where: str) -> int:
    """"8G", "8GiB", "512M", "8589934592" -> bytes (binary units)."""
    import re

    from tuneup.errors import UsageError

    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", text or "")
    if not m:
        raise UsageError(f"not a size (bytes, or a number with K, M, G, T): {text[:40]!r}", where)
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# counters of a running kernel: a config tree has none
LIVE_ONLY = frozenset({"fs.file-nr", "fs.inode-nr", "fs.inode-state", "fs.dentry-state",
                       "net.netfilter.nf_conntrack_count", "kernel.random.entropy_avail"})


def describe(kernel: tuple[int, ...] | None, ram_bytes: int | None) -> str:
    ver = ".".join(str(x) for x in kernel[:2]) if kernel else "any version from 3.10"
    return f"kernel default for {ver}" + (f" with {_gib(ram_bytes)}" if ram_bytes else "")


def systemd_nofile_default(systemd: int | None) -> tuple[tuple[int, int], str]:
    """DefaultLimitNOFILE= when system.conf does not set it, by systemd version."""
    if systemd is None or systemd >= 240:
        v = f"systemd {systemd}" if systemd else "systemd"
        return (1024, 524288), f"{v} default for services (1024 soft, 524288 hard since v240)"
    return (1024, 4096), f"systemd {systemd} default for services (the kernel's 1024:4096 before v240)"


class UnknownKernel:
    """The `kernel` name in rule expressions when a tree's kernel could not be found: any
    comparison raises MissingFact, so version-conditioned rules skip and say why."""

    def __init__(self, why: str) -> None:
        self.why = why

    def _raise(self, *_a):
        raise MissingFact("kernel", f"unknown for this tree ({self.why}; give --kernel X.Y)")

    __lt__ = __le__ = __gt__ = __ge__ = __getitem__ = _raise

    def __eq__(self, other):   # noqa: D105 - comparisons are what rules do with it
        self._raise()

    def __ne__(self, other):
        self._raise()

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "unknown"
