#!/usr/bin/env python3
"""Wall time of `tuneup audit` on this (idle) host against `python -c pass`, same interpreter.

Runs each command N times, alternating, and prints medians and ratios. Also times the imports that
dominate start-up (typer, tabulate, psutil, distro, tomllib) so the ratio can be read honestly.

    python benchmarks/startup_bench.py [--runs 21]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def tuneup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuneup"
    if script.exists():
        return [str(script)]
    return [shutil.which("tuneup") or sys.executable, *([] if shutil.which("tuneup") else ["-m", "tuneup"])]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()
    py = sys.executable
    tu = tuneup_cmd()
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "tuneup audit (json)": [*tu, "audit", "-f", "json", "--fail-on", "never"],
        "tuneup audit (table)": [*tu, "audit", "--fail-on", "never"],
        "import typer + build app": [py, "-c", "import tuneup.cli, typer.main; typer.main.get_command(tuneup.cli.app)"],
        "import tabulate": [py, "-c", "import tabulate"],
        "import psutil": [py, "-c", "import psutil"],
        "import distro": [py, "-c", "import distro"],
        "import tomllib": [py, "-c", "import tomllib"],
    }
    env = dict(os.environ, NO_COLOR="1")
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, cmd in cases.items():
            t0 = time.perf_counter()
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["python -c pass"])
    print(f"{'command':32} {'median ms':>10} {'x python -c pass':>17}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:32} {med * 1000:10.1f} {med / base:17.2f}")
    audit = statistics.median(times["tuneup audit (json)"])
    typer_cost = statistics.median(times["import typer + build app"]) - base
    print(f"\ntuneup audit / python -c pass = {audit / base:.2f} (goal <= 3.00)")
    print(f"typer's import and command build alone add {typer_cost * 1000:.1f} ms = {typer_cost / base:.2f}x python start-up")
    print(f"tuneup audit without that cost would be {(audit - typer_cost) / base:.2f}x")


if __name__ == "__main__":
    main()
