#!/usr/bin/env python3
"""Process discovery and per-process facts on a host with thousands of processes: tuneup's psutil
implementation against the hand-written /proc walk it replaced (kept below as the peer, verbatim
in behaviour), measured in the same run.

Spawns N sleeping processes (default 2000) named "sleep", then times, alternating the
implementations, median of R runs (psutil's process cache cleared before each, as in one command):
  find miss   find_by_name() of a name no process has (a full walk: name, then argv[0], of every pid)
  find 2000   find_by_name("sleep") (every spawned process matches)
  facts x50   process_facts() (name, cmdline, nofile/nproc limits, open fds) of 50 of them
The spawned processes are killed by pid at the end (and on any error).

    python benchmarks/procs_bench.py [--procs 2000] [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuneup.facts import limits as new_limits  # noqa: E402
from tuneup.facts import processes as new_processes  # noqa: E402
from tuneup.model import Fact  # noqa: E402


# --- the peer: tuneup's hand-written /proc reader before psutil (commit 65fd3ce) ------------------
# One change: comm is decoded with errors="replace". The original raised UnicodeDecodeError for a
# process whose name is not UTF-8 (any user can name a process so), which stopped `--process`.

def old_find_by_name(name: str, proc: str = "/proc") -> list[int]:
    pids = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/comm", errors="replace") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm == name or _old_argv0(entry.path) == name:
            pids.append(int(entry.name))
    return sorted(pids)


def _old_argv0(path: str) -> str:
    try:
        with open(f"{path}/cmdline", "rb") as fh:
            first = fh.read(4096).split(b"\0", 1)[0]
    except OSError:
        return ""
    return os.path.basename(first.decode("utf-8", "replace"))


def old_process_facts(pid: int, proc: str = "/proc") -> tuple[dict, dict]:
    base = f"{proc}/{pid}"
    prefix = f"proc.{pid}."
    facts: dict[str, Fact] = {}
    with open(f"{base}/comm") as fh:
        name = fh.read().strip()
    info = {"pid": pid, "name": name}
    with open(f"{base}/cmdline", "rb") as fh:
        info["cmdline"] = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    src = f"{base}/limits"
    with open(src) as fh:
        lim = new_limits.parse_proc_limits(fh.read())
    for name_ in ("nofile", "nproc"):
        for i, which in enumerate(("soft", "hard")):
            key = f"{prefix}rlimit.{name_}.{which}"
            facts[key] = Fact(key, lim[name_][i], src)
    facts[f"{prefix}fds"] = Fact(f"{prefix}fds", len(os.listdir(f"{base}/fd")), f"{base}/fd")
    return facts, info


# ---------------------------------------------------------------------------------------------------

def timed(fn, *args) -> tuple[float, object]:
    import psutil

    psutil.process_iter.cache_clear()     # cold, as in a tuneup command: one walk per run
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()

    children: list[subprocess.Popen] = []
    try:
        t0 = time.perf_counter()
        for _ in range(args.procs):
            children.append(subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        total = sum(1 for e in os.scandir("/proc") if e.name.isdigit())
        print(f"spawned {args.procs} sleeping processes in {time.perf_counter() - t0:.1f} s; "
              f"{total} processes on this host")
        ours = {c.pid for c in children}
        sample = sorted(ours)[:50]

        # (label, call, {implementation: function}); "tuneup" is the code as it is now
        cases = [
            ("find miss", lambda f: f("tuneup-no-such-process"),
             {"tuneup": new_processes.find_by_name, "before": old_find_by_name,
              "process_iter": new_processes.psutil_find_by_name}),
            (f"find {args.procs}", lambda f: f("sleep"),
             {"tuneup": new_processes.find_by_name, "before": old_find_by_name,
              "process_iter": new_processes.psutil_find_by_name}),
            ("facts x50", lambda f: [f(p) for p in sample],
             {"tuneup": new_limits.process_facts, "before": old_process_facts}),
        ]
        print("tuneup: the code now (facts through psutil); before: the /proc reader it replaced; "
              "process_iter: discovery through psutil.process_iter")
        for label, call, impls in cases:
            times: dict[str, list[float]] = {k: [] for k in impls}
            for _ in range(args.runs):
                for which, fn in impls.items():
                    dt, out = timed(call, fn)
                    times[which].append(dt)
                    if label.startswith("find") and "miss" not in label:
                        assert ours <= set(out), f"{which} missed spawned processes"
            med = {k: statistics.median(v) for k, v in times.items()}
            cols = "  ".join(f"{k} {v * 1000:7.1f} ms ({v / med['before']:.2f}x)" for k, v in med.items())
            print(f"{label:<10} {cols}")
        # same answers
        assert ours <= set(new_processes.find_by_name("sleep"))
        assert ours <= set(new_processes.psutil_find_by_name("sleep"))
        for p in sample[:5]:
            a, b = new_limits.process_facts(p)[0], old_process_facts(p)[0]
            assert {k: f.value for k, f in a.items()} == {k: f.value for k, f in b.items()}, (a, b)
        print("both implementations give the same pids and facts")
    finally:
        for c in children:
            try:
                os.kill(c.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for c in children:
            c.wait()


if __name__ == "__main__":
    main()
