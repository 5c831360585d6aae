#!/usr/bin/env python3
"""Auditing 1000 snapshots in one run against auditing one (whole processes, wall time).

The target: 1000 snapshots take at most 20x one snapshot, because the rules are loaded and their
expressions compiled once per run, not once per host. Snapshots are variations of one collected
from this host (or a built-in sample when collecting is impossible), written to a temp directory.

    python benchmarks/fleet_bench.py [--hosts 1000] [--runs 5] [--format json]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def tuneup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuneup"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "tuneup"]


def base_snapshot(tu: list[str], path: Path) -> dict:
    out = subprocess.run([*tu, "collect", "-o", str(path), "--force"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tuneup collect failed: {out.stderr.strip()}")
    return json.loads(path.read_text())


def make_fleet(base: dict, n: int, d: Path) -> None:
    rnd = random.Random(42)
    for i in range(n):
        snap = json.loads(json.dumps(base))
        snap["host"]["hostname"] = f"host-{i:04d}"
        for key in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog"):
            if key in snap["facts"] and isinstance(snap["facts"][key]["value"], int):
                snap["facts"][key]["value"] = rnd.choice([128, 1024, 4096, 65535])
        (d / f"host-{i:04d}.json").write_text(json.dumps(snap, indent=2))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if out.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd[:6])}...: exit {out.returncode}: {out.stderr.strip()}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--format", default="json")
    args = ap.parse_args()
    tu = tuneup_cmd()
    tmp = Path(tempfile.mkdtemp(prefix="tuneup-fleet-bench-"))
    try:
        fleet = tmp / "fleet"
        fleet.mkdir()
        base = base_snapshot(tu, tmp / "one.json")
        make_fleet(base, args.hosts, fleet)
        one = [*tu, "audit", "--snapshot", str(tmp / "one.json"), "-f", args.format, "--fail-on", "never"]
        many = [*tu, "audit", "--snapshot", str(fleet), "-f", args.format, "--fail-on", "never"]
        timed(one), timed(many)                           # warm the page cache and .pyc files
        t1, tn = [], []
        for _ in range(args.runs):                        # alternate so drift hits both alike
            t1.append(timed(one))
            tn.append(timed(many))
        m1, mn = statistics.median(t1), statistics.median(tn)
        print(f"python {sys.version.split()[0]}, format {args.format}, {args.runs} runs each (median wall time)")
        print(f"  audit 1 snapshot:            {m1 * 1000:8.1f} ms")
        print(f"  audit {args.hosts} snapshots:       {mn * 1000:8.1f} ms  ({(mn - m1) / max(args.hosts - 1, 1) * 1000:.2f} ms per extra host)")
        print(f"  ratio {args.hosts}:1 = {mn / m1:.1f}x  (target <= 20x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
