"""Fleets of many snapshot files with varied failures, for the scale and report-size tests."""

from __future__ import annotations

import random
from pathlib import Path

from fleet_samples import snap, write

# keys that fail in different ways (critical, warning, info rules), chosen per host at random
BAD = [
    {"fs.file-max": 1000},
    {"net.core.somaxconn": 128},
    {"net.ipv4.tcp_max_syn_backlog": 128},
    {"net.core.netdev_max_backlog": 1000},
    {"rlimit.nofile.soft": 1024},
    {"net.ipv4.ip_local_port_range": (32768, 60999)},
    {"net.netfilter.nf_conntrack_max": 65536},
    {"net.ipv4.tcp_fin_timeout": 60},
]


def make_fleet(d: Path, n: int, seed: int = 7) -> Path:
    """n snapshot files in d: about 1 host in 10 passes, the others fail 1 to 5 keys."""
    rnd = random.Random(seed)
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        values: dict = {}
        if rnd.random() > 0.1:
            for extra in rnd.sample(BAD, rnd.randint(1, 5)):
                values.update(extra)
        s = snap(f"node-{i:05d}.dc{i % 7}.example-long-domain-name.internal",
                 **{k.replace(".", "__"): v for k, v in values.items()})
        s.collected_at = f"2026-01-{1 + i % 28:02d}T0{i % 10}:00:00+00:00"
        write(d / f"h{i:05d}.json", s)
    return d
