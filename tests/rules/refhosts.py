"""Reference hosts as data: stock Debian 12, Ubuntu 24.04 and RHEL 9 at 8 and 64 GiB, every default
computed from the kernel's own formulas for that RAM, and hosts configured as published write-ups.

`python tests/rules/refhosts.py` writes tests/rules/data/ref-*.json and writeup-*.json; a test checks
that the committed files are what this module computes (the files are the data, this is their
derivation). Each fact's source names the formula and the source line it comes from.

Memory accounting (x86_64, 4 KiB pages): the kernel sees a little less than the installed RAM.
  totalram_pages       = 0.979 x RAM pages   (memmap and reserved regions; Debian 12 on 32 GiB:
                                               threads-max 256616 = totalram x 4096 / (16384 x 8))
  nr_free_buffer_pages = 0.969 x RAM pages   (totalram minus high watermarks; Debian 12 on 32 GiB:
                                               tcp_mem[1] 508285 = nr_free_buffer_pages / 16)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
GIB = 2**30
PAGE = 4096
LONG_MAX = 2**63 - 1
V61 = "https://elixir.bootlin.com/linux/v6.1/source/"


def roundup_pow2(n: int) -> int:
    return 1 << (max(n, 1) - 1).bit_length()


def kernel_defaults(ram: int) -> dict[str, tuple[object, str]]:
    pages = ram // PAGE
    totalram = int(pages * 0.979)
    free_buffer = int(pages * 0.969)
    # alloc_large_system_hash("TCP established", ..., scale 17, ..., high_limit 512K): one bucket per
    # 128 KiB of low memory (numentries >>= 17 - PAGE_SHIFT), rounded up to a power of two, at most 512K.
    numentries = -(-totalram // 256) * 256          # round_up(numentries, SZ_1M / PAGE_SIZE)
    ehash = min(roundup_pow2(numentries >> (17 - 12)), 512 * 1024)
    tcp_limit = max(free_buffer // 16, 128)         # tcp_init_mem
    threads = totalram * PAGE // (16384 * 8)        # set_max_threads: THREAD_SIZE 16 KiB on x86_64
    epoll = (totalram // 25) * PAGE // 200          # eventpoll_init: EP_ITEM_COST ~200 bytes on 64-bit
    tcp_c = V61 + "net/ipv4/tcp.c"
    ipv4_c = V61 + "net/ipv4/tcp_ipv4.c"
    return {
        "fs.file-max": (LONG_MAX, "systemd >= 240 raises it to LONG_MAX at boot (src/core/main.c bump_file_max_and_nr_open)"),
        "fs.nr_open": (1073741816, "systemd >= 240 raises it to 2^30 - 8 (src/core/main.c bump_file_max_and_nr_open)"),
        "fs.file-nr": ((2000, 0, LONG_MAX), "an idle host"),
        "fs.epoll.max_user_watches": (epoll, V61 + "fs/eventpoll.c eventpoll_init: (totalram / 25) << PAGE_SHIFT / EP_ITEM_COST"),
        "kernel.threads-max": (threads, V61 + "kernel/fork.c set_max_threads: totalram x PAGE_SIZE / (THREAD_SIZE x 8)"),
        "kernel.pid_max": (4194304, "systemd >= 243 sysctl.d/50-pid-max.conf (kernel default 32768)"),
        "vm.max_map_count": (65530, V61 + "include/linux/mm.h DEFAULT_MAX_MAP_COUNT = USHRT_MAX - 5"),
        "net.core.somaxconn": (4096, V61 + "include/linux/socket.h SOMAXCONN 4096 (since 5.4)"),
        "net.core.netdev_max_backlog": (1000, V61 + "net/core/dev.c netdev_max_backlog = 1000"),
        "net.ipv4.tcp_max_syn_backlog": (max(128, ehash // 128), ipv4_c + " tcp_sk_init: max(128, ehash / 128)"),
        "net.ipv4.tcp_max_orphans": (ehash // 2, tcp_c + " tcp_init: sysctl_tcp_max_orphans = ehash / 2"),
        "net.ipv4.tcp_max_tw_buckets": (ehash // 2, ipv4_c + " tcp_sk_init: sysctl_max_tw_buckets = ehash / 2"),
        "net.ipv4.tcp_mem": ((tcp_limit // 4 * 3, tcp_limit, tcp_limit // 4 * 3 * 2),
                             tcp_c + " tcp_init_mem: limit = nr_free_buffer_pages / 16; limit/4*3, limit, limit/4*3*2"),
        "net.ipv4.tcp_rmem": ((4096, 131072, 6291456), tcp_c + " tcp_init: 4096, 131072, 6 MiB"),
        "net.ipv4.tcp_wmem": ((4096, 16384, 4194304), tcp_c + " tcp_init: 4096, 16384, 4 MiB"),
        "net.ipv4.tcp_syncookies": (1, ipv4_c + " tcp_sk_init"),
        "net.ipv4.tcp_abort_on_overflow": (0, "kernel default"),
        "net.ipv4.tcp_fin_timeout": (60, V61 + "include/net/tcp.h TCP_FIN_TIMEOUT 60 s"),
        "net.ipv4.tcp_orphan_retries": (0, ipv4_c + " tcp_sk_init (0 means 8)"),
        "net.ipv4.tcp_retries2": (15, V61 + "include/net/tcp.h TCP_RETR2 15"),
        "net.ipv4.tcp_keepalive_time": (7200, V61 + "include/net/tcp.h TCP_KEEPALIVE_TIME 2 h"),
        "net.ipv4.tcp_keepalive_intvl": (75, V61 + "include/net/tcp.h TCP_KEEPALIVE_INTVL 75 s"),
        "net.ipv4.tcp_keepalive_probes": (9, V61 + "include/net/tcp.h TCP_KEEPALIVE_PROBES 9"),
        "net.ipv4.tcp_timestamps": (1, ipv4_c + " tcp_sk_init"),
        "net.ipv4.tcp_tw_reuse": (2, ipv4_c + " tcp_sk_init (2: loopback only)"),
        "net.ipv4.tcp_tw_recycle": (None, "removed in Linux 4.12"),
        "net.ipv4.ip_local_port_range": ((32768, 60999), V61 + "net/ipv4/af_inet.c inet_init_net"),
        "net.ipv4.ip_local_reserved_ports": ("", "kernel default"),
        "net.ipv4.ip_unprivileged_port_start": (1024, V61 + "net/ipv4/af_inet.c inet_init_net (PROT_SOCK)"),
    }


CONNTRACK_KEYS = ("net.netfilter.nf_conntrack_max", "net.netfilter.nf_conntrack_buckets",
                  "net.netfilter.nf_conntrack_count", "net.netfilter.nf_conntrack_tcp_timeout_established",
                  "net.netfilter.nf_conntrack_tcp_timeout_time_wait")


def conntrack(ram: int) -> dict[str, tuple[object, str]]:
    """nf_conntrack_init_start since 5.15 (RHEL 9 backports it): 262144 buckets on 64-bit hosts over
    4 GiB, max = buckets (max_factor 1)."""
    src = V61 + "net/netfilter/nf_conntrack_core.c nf_conntrack_init_start"
    buckets = 262144 if ram > 4 * GIB else 65536
    return {
        "net.netfilter.nf_conntrack_buckets": (buckets, src),
        "net.netfilter.nf_conntrack_max": (buckets, src + " (max_factor 1)"),
        "net.netfilter.nf_conntrack_count": (150, "an idle host"),
        "net.netfilter.nf_conntrack_tcp_timeout_established": (432000, "nf_conntrack_proto_tcp.c: 5 days"),
        "net.netfilter.nf_conntrack_tcp_timeout_time_wait": (120, "nf_conntrack_proto_tcp.c: 2 min"),
    }


DISTROS = {
    "debian12": ("debian 12", "6.1.0-18-amd64", [6, 1, 0]),
    "ubuntu2404": ("ubuntu 24.04", "6.8.0-31-generic", [6, 8, 0]),
    "rhel9": ("rhel 9.4", "5.14.0-427.el9.x86_64", [5, 14, 0]),
}
# A new systemd service's open-file limit (DefaultLimitNOFILE=1024:524288 since systemd 240): what
# the reference hosts judge for process rules, labelled so (no server is named).
DEFAULT_SERVICE = "any systemd service (DefaultLimitNOFILE; give --service NAME for one unit)"


def stock(distro: str, gib: int) -> dict:
    name, kernel, kv = DISTROS[distro]
    ram = gib * GIB
    facts = kernel_defaults(ram)
    if distro == "ubuntu2404":
        facts["vm.max_map_count"] = (1048576, "Ubuntu's procps /usr/lib/sysctl.d/10-map-count.conf (since 22.10)")
    if distro == "rhel9":
        facts.update(conntrack(ram))   # firewalld (nftables) loads nf_conntrack
    else:
        facts.update({k: (None, "nf_conntrack not loaded (no firewall rules by default)") for k in CONNTRACK_KEYS})
    facts["rlimit.nofile.soft"] = (1024, "systemd DefaultLimitNOFILE=1024:524288 (v240)")
    facts["rlimit.nofile.hard"] = (524288, "systemd DefaultLimitNOFILE=1024:524288 (v240)")
    return _snapshot(f"{distro}-{gib}g", name, kernel, kv, ram, 8 if gib <= 8 else 32, facts,
                     f"Stock {name} at {gib} GiB: kernel defaults computed from the kernel's formulas for that RAM "
                     "(tests/rules/refhosts.py), no tuning; process limits are what a new systemd service gets.",
                     limits_of=DEFAULT_SERVICE)


def _snapshot(host: str, distro: str, kernel: str, kv: list, ram: int, cpus: int, facts: dict, comment: str,
              processes: list | None = None, limits_of: str | None = None) -> dict:
    ident = {"hostname": host, "kernel": kernel, "kernel_version": kv, "arch": "x86_64", "distro": distro,
             "cpus": cpus, "mem_total_bytes": ram, "page_size": PAGE, "netns": "initial", "netns_evidence": "reference"}
    if limits_of:
        ident["limits_of"] = limits_of
    return {
        "comment": comment, "schema": "tuneup.snapshot/1", "tuneup": "reference", "collected_at": "2026-01-01T00:00:00+00:00",
        "host": ident, "processes": processes or [],
        "facts": {k: {"value": list(v) if isinstance(v, tuple) else v, "source": s} for k, (v, s) in sorted(facts.items())},
    }


def _tuned(base: dict, changes: dict, src: str) -> dict:
    out = dict(base)
    for k, v in changes.items():
        out[k] = (v, src)
    return out


def _proc(pid: int, values: dict, src: str) -> dict:
    return {f"proc.{pid}.{k}": (v, src) for k, v in values.items()}


def writeups() -> dict[str, dict]:
    hosts = {}
    # Phoenix "The Road to 2 Million Websocket Connections" (2015): Rackspace OnMetal I/O, 40 cores,
    # 128 GiB, Ubuntu 14.04 (3.13). The write-up sets fs.file-max 12000500, fs.nr_open 20000500,
    # ulimit -n 20000000, tcp_mem 10000000 x3, tcp_rmem/wmem 1024 4096 16384, +P 5000000.
    src = "Phoenix 2M write-up (phoenixframework.org/blog/the-road-to-2-million-websocket-connections)"
    ram = 128 * GIB
    f = _tuned(kernel_defaults(ram), {
        "fs.file-max": 12000500, "fs.nr_open": 20000500, "fs.file-nr": (2_010_000, 0, 12000500),
        "net.ipv4.tcp_mem": (10000000, 10000000, 10000000), "net.ipv4.tcp_rmem": (1024, 4096, 16384),
        "net.ipv4.tcp_wmem": (1024, 4096, 16384), "net.core.somaxconn": 128,
    }, src)
    f.update({k: (None, "not loaded") for k in CONNTRACK_KEYS})
    f.update(_proc(3001, {"rlimit.nofile.soft": 20000000, "rlimit.nofile.hard": 20000000, "fds": 2_000_100,
                          "beam.max_ports": 20000000, "beam.process_limit": 5000000, "process.name": "beam.smp",
                          "cgroup.pids.max": None, "cgroup.memory.max": None}, src + "; +Q defaults to the fd limit"))
    hosts["writeup-phoenix-2m"] = _snapshot("phoenix-2m", "ubuntu 14.04", "3.13.0-55-generic", [3, 13, 0], ram, 40, f,
                                            "Phoenix channels, 2M websocket connections (2015 write-up); somaxconn "
                                            "left at the 3.13 default 128 (the write-up does not raise it).",
                                            processes=[{"pid": 3001, "name": "beam.smp", "cmdline": ["beam.smp", "+P", "5000000"]}])
    # MigratoryData 12M (2013): Dell PowerEdge R610, 12 cores, 96 GiB, CentOS 6.4 (2.6.32), a Java NIO
    # server; the write-up raises fs.nr_open and ulimit -n past 12M, tcp_mem, and spreads IRQs.
    src = "MigratoryData 12M write-up (migratorydata.com/blog/migratorydata-with-12-million-concurrent-websockets)"
    ram = 96 * GIB
    f = _tuned(kernel_defaults(ram), {
        "fs.file-max": 20000000, "fs.nr_open": 20000000, "fs.file-nr": (12_010_000, 0, 20000000),
        "net.ipv4.tcp_mem": (6000000, 8000000, 10000000), "net.core.somaxconn": 65535,
        "net.ipv4.tcp_max_syn_backlog": 65535, "net.core.netdev_max_backlog": 65536,
        "net.ipv4.tcp_rmem": (4096, 4096, 16384), "net.ipv4.tcp_wmem": (4096, 4096, 16384),
        "kernel.pid_max": 32768,
        "fs.epoll.max_user_watches": 20000000,
    }, src + " (values above 12M as the write-up describes)")
    f["net.ipv4.tcp_tw_recycle"] = (0, "present on 2.6.32, off")
    f["net.ipv4.ip_unprivileged_port_start"] = (None, "does not exist before 4.11")
    f.update({k: (None, "not loaded (iptables off on the benchmark host)") for k in CONNTRACK_KEYS})
    f.update(_proc(4001, {"rlimit.nofile.soft": 20000000, "rlimit.nofile.hard": 20000000, "fds": 12_000_200,
                          "process.name": "java", "cgroup.pids.max": None, "cgroup.memory.max": None}, src))
    hosts["writeup-migratorydata-12m"] = _snapshot("migratorydata-12m", "centos 6.4", "2.6.32-358.el6.x86_64",
                                                   [2, 6, 32], ram, 12, f,
                                                   "MigratoryData WebSocket Server, 12M concurrent connections (2013).",
                                                   processes=[{"pid": 4001, "name": "java"}])
    # A 1M-connection HAProxy front end as the common guides configure it: 64 GiB, Debian 12, maxconn
    # 1000000 (2 fds each), LimitNOFILE 4000000, nr_open/file-max 5000000, somaxconn and SYN backlog
    # 65535, netdev_max_backlog 65536, port range 1024-65535 with 20 upstream (address, port) pairs,
    # tw_reuse 1, fin_timeout 15, tcp_max_tw_buckets 2000000, tcp_mem sized for 32 KiB per connection
    # plus headroom (48 GiB).
    src = "1M HAProxy guide (haproxy.com/blog: 'use 2 fds per connection', maxconn, source address pools)"
    ram = 64 * GIB
    f = _tuned(kernel_defaults(ram), {
        "fs.file-max": 5000000, "fs.nr_open": 5000000, "fs.file-nr": (2_001_000, 0, 5000000),
        "net.core.somaxconn": 65535, "net.ipv4.tcp_max_syn_backlog": 65535, "net.core.netdev_max_backlog": 65536,
        "net.ipv4.ip_local_port_range": (1024, 65535), "net.ipv4.ip_local_reserved_ports": "8404",
        "net.ipv4.tcp_tw_reuse": 1, "net.ipv4.tcp_fin_timeout": 15, "net.ipv4.tcp_max_tw_buckets": 2000000,
        "net.ipv4.tcp_max_orphans": 262144, "net.ipv4.tcp_mem": (8388608, 10485760, 12582912),
    }, src)
    f.update({k: (None, "not loaded") for k in CONNTRACK_KEYS})
    f.update(_proc(5001, {"rlimit.nofile.soft": 4000000, "rlimit.nofile.hard": 4000000, "fds": 2_000_050,
                          "process.name": "haproxy", "cgroup.pids.max": 4915, "cgroup.memory.max": None}, src))
    hosts["writeup-haproxy-1m"] = _snapshot("haproxy-1m", "debian 12", "6.1.0-18-amd64", [6, 1, 0], ram, 16, f,
                                            "HAProxy terminating 1M client connections, each with an upstream connection.",
                                            processes=[{"pid": 5001, "name": "haproxy", "unit": "haproxy.service"}])
    return hosts


def all_hosts() -> dict[str, dict]:
    out = {f"ref-{d}-{g}g": stock(d, g) for d in DISTROS for g in (8, 64)}
    out.update(writeups())
    return out


def dump(snap: dict) -> str:
    return json.dumps(snap, indent=1, sort_keys=False) + "\n"


if __name__ == "__main__":
    for name, snap in all_hosts().items():
        (DATA / f"{name}.json").write_text(dump(snap), encoding="utf-8")
        print(name, file=sys.stderr)
