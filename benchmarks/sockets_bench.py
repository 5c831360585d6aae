"""Socket census at 100K connections: tuneup vs `ss -tan` vs psutil.net_connections.

    sudo python benchmarks/sockets_bench.py [--pairs 100000] [--workers 12] [--runs 5]

Builds PAIRS established loopback connections (2 x PAIRS sockets) inside a throwaway network
namespace (tuneup-b-<random>): WORKERS processes each hold one listener (its own port) and
PAIRS/WORKERS client+server pairs, because one process may hold at most 20000 files. Inside the
namespace only: lo up, net.ipv4.ip_local_port_range 1024 65535, net.core.somaxconn 65535.

Then, from a process inside the namespace, times whole processes, alternating, RUNS rounds:
  tuneup   tuneup sockets --format json   (the whole command: census + owners + counters + JSON)
  ss       ss -tan
  psutil   python -c "import psutil; psutil.net_connections(kind='tcp')"
all with stdout to /dev/null, and prints medians, the ratios tuneup/ss and psutil/tuneup, and the
tuneup process's peak RSS (GNU time's %M, else wait4 rusage). Targets: tuneup <= ss, psutil/tuneup >= 10, RSS <= 64 MiB.

Workers and the namespace are removed on exit, error, Ctrl-C or timeout (--timeout, default 900 s).
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


def measure(runs: int, python: str) -> dict:
    cmds = {
        "tuneup": [*_tuneup(python), "sockets", "--format", "json"],
        "ss": ["ss", "-tan"],
        "psutil": [python, "-c", "import psutil; psutil.net_connections(kind='tcp')"],
    }
    # byte-compile our modules as an installed wheel would have them (PYTHONDONTWRITEBYTECODE
    # may be set in the environment: then every run would compile them from source)
    import compileall
    compileall.compile_dir(str(REPO / "tuneup"), quiet=1)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    rss: dict[str, list[int]] = {k: [] for k in cmds}
    for _ in range(1):   # warm the page cache and the kernel's slab caches
        for k in ("tuneup", "ss"):
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
        self.name = f"tuneup-b-{uuid.uuid4().hex[:10]}"
        self.workers: list[subprocess.Popen] = []
        self.created = False

    def ns(self, *cmd: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=True, **kw)

    def setup(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        self.created = True
        self.ns("ip", "link", "set", "lo", "up")
        self.ns("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535")
        self.ns("sysctl", "-q", "-w", "net.core.somaxconn=65535")
        self.ns("sysctl", "-q", "-w", "net.ipv4.tcp_max_syn_backlog=65535")
        per = -(-self.args.pairs // self.args.workers)
        left = self.args.pairs
        t0 = time.monotonic()
        for i in range(self.args.workers):
            n = min(per, left)
            left -= n
            if n <= 0:
                break
            self.workers.append(subprocess.Popen(
                ["ip", "netns", "exec", self.name, sys.executable, __file__, "--worker",
                 str(20000 + i), str(n), f"127.0.{1 + i // 250}.{1 + i % 250}"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        total = 0
        for w in self.workers:
            line = w.stdout.readline()
            if not line.startswith("ok "):
                raise RuntimeError(f"worker {w.pid} failed to set up its connections")
            total += int(line.split()[1])
        print(f"namespace {self.name}: {total} connections ({2 * total} sockets) held by "
              f"{len(self.workers)} workers, set up in {time.monotonic() - t0:.1f} s", flush=True)

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

    def run(self) -> int:
        p = subprocess.run(
            ["ip", "netns", "exec", self.name, sys.executable, __file__, "--measure", str(self.args.runs)],
            capture_output=True, text=True, timeout=self.args.timeout)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        r = json.loads(p.stdout)
        med = {k: statistics.median(v) for k, v in r["times"].items()}
        rss_mib = max(r["rss_kib"]["tuneup"]) / 1024
        print(f"scene seen by tuneup ({r['source']}): ESTABLISHED {r['states']['ESTABLISHED']}, "
              f"LISTEN {r['states']['LISTEN']} ({r['owned']} with an owner), ephemeral in use {r['in_use']}")
        print(f"runs: {self.args.runs} alternating; medians (all runs in ms):")
        for k in ("tuneup", "ss", "psutil"):
            runs = " ".join(f"{t * 1000:.0f}" for t in r["times"][k])
            print(f"  {k:7s} {med[k] * 1000:8.1f} ms   peak RSS {max(r['rss_kib'][k]) / 1024:6.1f} MiB   [{runs}]")
        ratio_ss = med["tuneup"] / med["ss"]
        ratio_ps = med["psutil"] / med["tuneup"]
        print(f"tuneup/ss     = {ratio_ss:.2f}   (target <= 1.0)  {'ok' if ratio_ss <= 1.0 else 'MISSED'}")
        print(f"psutil/tuneup = {ratio_ps:.1f}   (target >= 10)   {'ok' if ratio_ps >= 10 else 'MISSED'}")
        print(f"tuneup peak RSS = {rss_mib:.1f} MiB (target <= {TARGET_RSS_MIB})  "
              f"{'ok' if rss_mib <= TARGET_RSS_MIB else 'MISSED'}")
        return 0


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        print(json.dumps(measure(int(sys.argv[2]), sys.executable)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for the whole measurement")
    args = ap.parse_args()
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("ss") is None:
        print("needs root, iproute2 'ip' and 'ss'", file=sys.stderr)
        return 2
    if -(-args.pairs // args.workers) * 2 + 64 > resource.getrlimit(resource.RLIMIT_NOFILE)[1]:
        print("too many pairs per worker for the open-files hard limit: add --workers", file=sys.stderr)
        return 2
    bench = Bench(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    signal.alarm(int(args.timeout) + 600)           # a hard bound on setup + measurement
    signal.signal(signal.SIGALRM, on_signal)
    try:
        bench.setup()
        return bench.run()
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
