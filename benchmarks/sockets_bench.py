"""Socket census and audit at 100K to 500K connections (up to 1M sockets): tuneup vs `ss -tan`.

    sudo python benchmarks/sockets_bench.py [--sizes 100000,250000,500000] [--runs 5] [--psutil]

Builds established loopback connections inside a throwaway network namespace (NAME-PREFIX plus a
random suffix): worker processes each hold one listener (its own port) and at most --per-worker
client+server pairs, because one process may hold at most 20000 files; each worker's clients
bind their own source address 127.0.x.y (IP_BIND_ADDRESS_NO_PORT), so ports never run out. The
scene grows from size to size (workers are added), so 500K connections = 1M sockets at the end.
Inside the namespace only: lo up, net.ipv4.ip_local_port_range 1024 19999 (below the listeners'
ports), somaxconn 65535.

At each size, from a process inside the namespace, times whole processes, alternating, RUNS rounds:
  sockets  tuneup sockets --format json   (census + owners + counters + JSON)
  audit    tuneup audit -f json --fail-on never   (the whole audit: facts, census, rules, report)
  ss       ss -tan
  psutil   python -c "import psutil; psutil.net_connections(kind='tcp')"   (only with --psutil)
all with stdout to /dev/null, and prints medians, the ratios to ss and tuneup's peak RSS (GNU
time's %M, else wait4 rusage). Targets: sockets <= 1.0x ss at every size, audit <= 1.0x ss from
200K sockets up, peak RSS <= 64 MiB.

Workers (by pid) and the namespace are removed on exit, error, Ctrl-C or timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RSS_MIB = 64


# ---------------------------------------------------------------------------- worker (in the netns)

def worker(port: int, pairs: int, src: str) -> None:
    """Hold `pairs` connections to our own listener on 127.0.0.1:port; print 'ok N'; wait for EOF."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lst = socket.socket()
    lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lst.bind(("127.0.0.1", port))
    lst.listen(65535)
    keep = []
    batch = 2000
    made = 0
    while made < pairs:
        n = min(batch, pairs - made)
        for _ in range(n):
            c = socket.socket()
            # a source address of our own; the port is picked per destination at connect()
            c.setsockopt(socket.IPPROTO_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT
            c.bind((src, 0))
            c.connect(("127.0.0.1", port))
            keep.append(c)
        for _ in range(n):
            keep.append(lst.accept()[0])
        made += n
    print(f"ok {made}", flush=True)
    sys.stdin.read()


# ---------------------------------------------------------------------------- measuring (in the netns)

GNU_TIME = "/usr/bin/time"


def timed(cmd: list[str], cwd: str) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one whole process.

    The RSS comes from GNU time when it is there: a child spawned by this Python process starts
    with this process's high-water mark (vfork/fork + exec keep it), so wait4's ru_maxrss would be
    at least ours; time(1) is small, so its child's figure is the command's own.
    """
    use_time = os.access(GNU_TIME, os.X_OK)
    rfd, wfd = os.pipe() if use_time else (None, None)
    full = [GNU_TIME, "-f", "%M", "-o", f"/dev/fd/{wfd}", *cmd] if use_time else cmd
    with open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        p = subprocess.Popen(full, stdout=null, stderr=subprocess.PIPE, cwd=cwd,
                             pass_fds=(wfd,) if use_time else ())
        if use_time:
            os.close(wfd)
        _, status, ru = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
    kib = ru.ru_maxrss
    if use_time:
        with os.fdopen(rfd) as r:
            text = r.read().split()
        kib = int(text[-1]) if text and text[-1].isdigit() else kib
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} exited {p.returncode}: {err[-2000:]}")
    return dt, kib


def _tuneup(python: str) -> list[str]:
    """The real command: the console script beside this python, else python -m tuneup."""
    script = Path(python).parent / "tuneup"
    return [str(script)] if script.exists() else [python, "-m", "tuneup"]


def measure(runs: int, python: str, with_psutil: bool = False) -> dict:
    cmds = {
        "tuneup": [*_tuneup(python), "sockets", "--format", "json"],
        "audit": [*_tuneup(python), "audit", "-f", "json", "--fail-on", "never"],
        "ss": ["ss", "-tan"],
    }
    if with_psutil:
        cmds["psutil"] = [python, "-c", "import psutil; psutil.net_connections(kind='tcp')"]
    # byte-compile our modules as an installed wheel would have them (PYTHONDONTWRITEBYTECODE
    # may be set in the environment: then every run would compile them from source)
    import compileall
    compileall.compile_dir(str(REPO / "tuneup"), quiet=1)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[int]] = {k: [] for k in cmds}
    for _ in range(1):   # warm the page cache and the kernel's slab caches
        for k in ("tuneup", "audit", "ss"):
            timed(cmds[k], str(REPO))
    names = list(cmds)
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]
        for k in order:
            dt, kib = timed(cmds[k], str(REPO))
            times[k].append(dt)
            rss[k].append(kib)
    # what the tuneup run saw, to prove the scene
    out = subprocess.run(cmds["tuneup"], capture_output=True, text=True, cwd=str(REPO), check=True).stdout
    seen = json.loads(out)
    return {"times": times, "rss_kib": rss, "states": seen["states"],
            "listeners": len(seen["listeners"]),
            "owned": sum(1 for x in seen["listeners"] if x["pid"]),
            "in_use": seen["ephemeral"]["in_use"], "source": seen["source"]}


# ---------------------------------------------------------------------------- driver (host side)

class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.name = f"{args.netns_prefix}{uuid.uuid4().hex[:10]}"
        self.workers: list[subprocess.Popen] = []
        self.held = 0
        self.created = False

    def ns(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=True, **kw)

    def setup(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.created = True
        self.ns("ip", "link", "set", "lo", "up")
        # ephemeral ports below the listeners' (20000 + worker): a client port never takes a later
        # worker's listening port
        self.ns("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 19999")
        self.ns("sysctl", "-q", "-w", "net.core.somaxconn=65535")
        self.ns("sysctl", "-q", "-w", "net.ipv4.tcp_max_syn_backlog=65535")

    def grow(self, pairs: int) -> None:
        """Add workers until `pairs` connections are held."""
        per = self.args.per_worker
        t0 = time.monotonic()
        new = []
        while self.held + sum(n for _, n in new) < pairs:
            i = len(self.workers)
            n = min(per, pairs - self.held - sum(n for _, n in new))
            w = subprocess.Popen(
                ["ip", "netns", "exec", self.name, sys.executable, __file__, "--worker",
                 str(20000 + i), str(n), f"127.0.{1 + i // 250}.{2 + i % 250}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            self.workers.append(w)
            new.append((w, n))
        for w, n in new:
            line = w.stdout.readline()
            if not line.startswith("ok "):
                raise RuntimeError(f"worker {w.pid} failed to set up its connections")
            self.held += int(line.split()[1])
        print(f"namespace {self.name}: {self.held} connections ({2 * self.held} sockets) held by "
              f"{len(self.workers)} workers (+{len(new)} in {time.monotonic() - t0:.1f} s)", flush=True)

    def cleanup(self) -> None:
        for w in self.workers:
            if w.poll() is None:
                try:
                    os.kill(w.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for w in self.workers:
            try:
                w.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
            for f in (w.stdin, w.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        self.workers = []
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], check=False)
            self.created = False

    def run(self) -> dict:
        p = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, __file__, "--measure", str(self.args.runs),
             "1" if self.args.psutil else "0"],
            capture_output=True, text=True, timeout=self.args.timeout)
        if p.returncode != 0:
            raise RuntimeError(p.stderr[-3000:])
        r = json.loads(p.stdout)
        med = {k: statistics.median(v) for k, v in r["times"].items()}
        print(f"scene seen by tuneup ({r['source']}): ESTABLISHED {r['states']['ESTABLISHED']}, "
              f"LISTEN {r['states']['LISTEN']} ({r['owned']} with an owner), ephemeral in use {r['in_use']}")
        print(f"runs: {self.args.runs} alternating; medians (all runs in ms):")
        for k in r["times"]:
            runs = " ".join(f"{t * 1000:.0f}" for t in r["times"][k])
            print(f"  {k:7s} {med[k] * 1000:8.1f} ms   peak RSS {max(r['rss_kib'][k]) / 1024:6.1f} MiB   [{runs}]")
        sockets = 2 * self.held
        rss = max(max(r["rss_kib"]["tuneup"]), max(r["rss_kib"]["audit"])) / 1024
        row = {"sockets": sockets, "sockets_ms": med["tuneup"] * 1000, "audit_ms": med["audit"] * 1000,
               "ss_ms": med["ss"] * 1000, "sockets_x": med["tuneup"] / med["ss"], "audit_x": med["audit"] / med["ss"],
               "rss_mib": rss, "psutil_ms": med["psutil"] * 1000 if "psutil" in med else None}
        print(f"tuneup sockets/ss = {row['sockets_x']:.2f} (target <= 1.0: {'met' if row['sockets_x'] <= 1 else 'NOT met'}); "
              f"tuneup audit/ss = {row['audit_x']:.2f} (target <= 1.0 from 200K sockets: "
              f"{'met' if row['audit_x'] <= 1 else ('NOT met' if sockets >= 200_000 else 'not required')}); "
              f"peak RSS {rss:.1f} MiB (target <= {TARGET_RSS_MIB}: {'met' if rss <= TARGET_RSS_MIB else 'NOT met'})",
              flush=True)
        return row


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(int(sys.argv[2]), sys.executable, sys.argv[3:4] == ["1"])))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,250000,500000", help="connections (pairs) at each step")
    ap.add_argument("--per-worker", type=int, default=9000, help="pairs per worker process")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--psutil", action="store_true", help="also time psutil.net_connections (slow)")
    ap.add_argument("--netns-prefix", default="tuneup-b-")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for each size's measurement")
    args = ap.parse_args()
    sizes = sorted(int(x) for x in args.sizes.split(","))
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ss") is None:
        print("needs root, iproute2 'ip' and 'ss'", file=sys.stderr)
        return 2
    if args.per_worker * 2 + 64 > resource.getrlimit(resource.RLIMIT_NOFILE)[1]:
        print("too many pairs per worker for the open-files hard limit: lower --per-worker", file=sys.stderr)
        return 2
    bench = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    signal.alarm(int(args.timeout * len(sizes)) + 1800)     # a hard bound on setup + measurement
    signal.signal(signal.SIGALRM, on_signal)
    rows = []
    try:
        bench.setup()
        for size in sizes:
            bench.grow(size)
            rows.append(bench.run())
        print("\n| sockets | tuneup sockets | tuneup audit | ss -tan | sockets/ss | audit/ss | tuneup peak RSS |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['sockets']:,} | {r['sockets_ms']:.0f} ms | {r['audit_ms']:.0f} ms | {r['ss_ms']:.0f} ms | "
                  f"{r['sockets_x']:.2f}x | {r['audit_x']:.2f}x | {r['rss_mib']:.1f} MiB |")
        return 0
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        signal.alarm(0)
        bench.cleanup()
        for s, h in old.items():
            signal.signal(s, h)


if __name__ == "__main__":
    sys.exit(main())
