#!/usr/bin/env python3
"""Fleet audits at 1,000 and 10,000 snapshots: time per host after the first, and peak memory.

Targets (issue 15): at most 3 ms per host after the first on the 2-core development machine and a
peak RSS of at most 150 MB, for 10,000 snapshots as for 1,000 (flat). The peer measured in the
same run is one snapshot audited alone (a whole process: start-up, rules, one audit).

    python benchmarks/fleet_bench.py [--hosts 1000,10000] [--runs 3] [--formats json,markdown,html]
                                     [--jobs auto|1|2]

Snapshots are variations of one collected from this host (hostname, three sysctls), written to a
temp directory. Every command runs as a whole process under GNU time (wall time, max RSS), the
sizes alternating so that load from other work on the machine hits all of them alike; medians.
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

TARGET_MS_PER_HOST = 3.0
TARGET_RSS_MB = 150


def tuneup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuneup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuneup"]


def base_snapshot(tu: list[str], path: Path) -> dict:
    out = subprocess.run([*tu, "collect", "-o", str(path), "--force"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"tuneup collect failed: {out.stderr.strip()}")
    return json.loads(path.read_text())


def make_fleet(base: dict, n: int, d: Path) -> None:
    rnd = random.Random(42)
    text = json.dumps(base, indent=1)
    for i in range(n):
        snap = json.loads(text)
        snap["host"]["hostname"] = f"host-{i:05d}"
        for key in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.core.netdev_max_backlog"):
            if key in snap["facts"] and isinstance(snap["facts"][key]["value"], int):
                snap["facts"][key]["value"] = rnd.choice([128, 1024, 4096, 65535])
        (d / f"host-{i:05d}.json").write_text(json.dumps(snap, indent=1))


def timed(cmd: list[str], out: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of the command, output to a file."""
    t0 = time.perf_counter()
    res = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd, "-o", str(out), "--force"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if res.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd[:6])}...: exit {res.returncode}: {res.stderr.strip()[-500:]}")
    return dt, int(res.stderr.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", default="1000,10000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="json,markdown,html")
    ap.add_argument("--jobs", default="auto", help="auto (the default heuristic), or a number")
    args = ap.parse_args()
    sizes = [int(x) for x in args.hosts.split(",")]
    import compileall

    # byte-compile tuneup as an installed wheel has it (PYTHONDONTWRITEBYTECODE may be set in the
    # environment: then every run would compile tuneup's modules from source)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "tuneup"), quiet=1)
    tu = tuneup_cmd()
    tmp = Path(tempfile.mkdtemp(prefix="tuneup-fleet-bench-"))
    try:
        base = base_snapshot(tu, tmp / "one.json")
        fleets = {}
        for n in sizes:
            fleets[n] = tmp / f"fleet{n}"
            fleets[n].mkdir()
            make_fleet(base, n, fleets[n])
        jobs = [] if args.jobs == "auto" else ["--jobs", args.jobs]
        results: dict[tuple[str, int], list[tuple[float, int]]] = {}
        sizes_out: dict[tuple[str, int], int] = {}
        for fmt in args.formats.split(","):
            def cmd(src: Path) -> list[str]:
                return [*tu, "audit", "--snapshot", str(src), "-f", fmt, "--fail-on", "never", *jobs]
            timed(cmd(tmp / "one.json"), tmp / "out")        # warm the page cache and .pyc files
            for _ in range(args.runs):                        # alternate so drift hits all sizes alike
                results.setdefault((fmt, 1), []).append(timed(cmd(tmp / "one.json"), tmp / "out"))
                for n in sizes:
                    results.setdefault((fmt, n), []).append(timed(cmd(fleets[n]), tmp / "out"))
                    sizes_out[(fmt, n)] = (tmp / "out").stat().st_size
        print(f"python {sys.version.split()[0]}, jobs {args.jobs}, median of {args.runs} alternating runs "
              f"(whole processes; load average at the end {open('/proc/loadavg').read().split()[0]})")
        print(f"{'format':9} {'hosts':>6} {'wall s':>8} {'ms/host after 1st':>18} {'peak RSS MB':>12} "
              f"{'output MB':>10}  verdict")
        for fmt in args.formats.split(","):
            t1 = statistics.median(t for t, _ in results[(fmt, 1)])
            for n in [1, *sizes]:
                ts = results[(fmt, n)]
                t = statistics.median(x for x, _ in ts)
                rss = statistics.median(r for _, r in ts) / 1024
                per = (t - t1) / (n - 1) * 1000 if n > 1 else float("nan")
                verdict = ""
                if n > 1:
                    ok = per <= TARGET_MS_PER_HOST and rss <= TARGET_RSS_MB
                    verdict = "met" if ok else "NOT met"
                size = sizes_out.get((fmt, n), 0) / 1e6
                print(f"{fmt:9} {n:6d} {t:8.2f} {per:18.2f} {rss:12.1f} {size:10.1f}  {verdict}")
        print(f"targets: <= {TARGET_MS_PER_HOST} ms per host after the first, peak RSS <= {TARGET_RSS_MB} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
