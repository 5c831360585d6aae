#!/usr/bin/env python3
"""`tuneup rules list` over 100,000 rules: must be linear (target: under 5 s), against the same
interpreter only parsing the rule file (tomllib), measured in the same run.

    python benchmarks/catalogue_bench.py [--rules 100000] [--runs 3]

The rules are copies of one built-in rule with new ids, in one extra rules directory (files of
10,000 rules: a rule file may be at most 8 MiB); they join
the "web" profile so every listing resolves profiles for each of them.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RULE = '''
[[rule]]
id = "BENCH-{i:06d}"
title = "Generated rule {i}"
section = "accept path"
severity = "{sev}"
fact = "net.core.somaxconn"
op = ">="
expected = "max(4096, connections // {d})"
scope = "netns"
profiles = ["web"]
rationale = "A generated rule to time the catalogue at scale."
refs = ["https://docs.kernel.org/networking/ip-sysctl.html (somaxconn)"]
'''


def tuneup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuneup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuneup"]


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[:5])}...: exit {out.returncode}: {out.stderr.strip()[:300]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    import compileall

    # byte-compile tuneup as an installed wheel has it (PYTHONDONTWRITEBYTECODE may be set)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "tuneup"), quiet=1)
    tmp = Path(tempfile.mkdtemp(prefix="tuneup-cat-bench-"))
    try:
        d = tmp / "rules"
        d.mkdir()
        sevs = ("info", "warning", "critical")
        per_file = 10_000               # rule files are limited to 8 MiB each (tuneup.inputs)
        for start in range(0, args.rules, per_file):
            (d / f"bench-{start // per_file:03d}.toml").write_text("".join(
                RULE.format(i=i, sev=sevs[i % 3], d=i % 97 + 1) for i in range(start, min(args.rules, start + per_file))))
        tu = tuneup_cmd()
        cases = {
            # the peer: the same interpreter parsing the same files with the TOML parser tuneup uses
            "TOML parse only": [sys.executable, "-c", "import sys\nfrom tuneup.compat import tomllib\n"
                                "for p in sys.argv[1:]: tomllib.load(open(p, 'rb'))",
                                *sorted(str(p) for p in d.glob("*.toml"))],
            "rules list (table)": [*tu, "rules", "list", "--rules-dir", str(d)],
            "rules list -f json": [*tu, "rules", "list", "--rules-dir", str(d), "-f", "json"],
            "rules list -f markdown": [*tu, "rules", "list", "--rules-dir", str(d), "-f", "markdown"],
        }
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):                # alternating, so load drift hits all alike
            for name, cmd in cases.items():
                times[name].append(timed(cmd))
        base = statistics.median(times["TOML parse only"])
        print(f"{args.rules} rules, python {sys.version.split()[0]}, median of {args.runs} alternating runs")
        for name, ts in times.items():
            m = statistics.median(ts)
            verdict = "" if name.startswith("TOML") else ("  met (< 5 s)" if m < 5 else "  NOT met (< 5 s)")
            print(f"  {name:26} {m:7.2f} s  {m / base:5.2f}x parse{verdict}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
