"""The boundary probe: open real connections on loopback until N or the first failure.

Two situations:
- self-listener (no target): a child process (`python -m tuneup.probe_server`) listens on
  127.0.0.1 with the same rlimits as the probe and holds every connection it accepts; the probe
  connects to it from 127.0.0.1, one destination, so both processes' fd limits and the ephemeral
  port range toward that one destination are what can stop it.
- target: connections to the operator's own server on a loopback address; refusals, resets and
  timeouts (SYNs dropped by a full accept queue) stop it.

Before the first connection the probe asks the capacity model for the ceiling of exactly that
situation (`predicted`). Every socket is closed and the child stopped on every path out: normal end,
error, Ctrl-C or SIGTERM. Nothing is sent before the target has been checked to be a loopback
address; names other than "localhost" are not resolved (a DNS query could leave the host).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from tuneup import capacity
from tuneup.errors import UsageError
from tuneup.model import Fact, Snapshot

DEFAULT_CONNECTIONS = 10000
DEFAULT_RATE = 5000.0        # new connections per second
DEFAULT_TIMEOUT = 5.0        # seconds a connection attempt may take (and the listener may lag)
MAX_IN_FLIGHT = 512          # connection attempts outstanding at once
LOCALHOST = {"localhost": "127.0.0.1", "localhost.localdomain": "127.0.0.1",
             "ip6-localhost": "::1", "ip6-loopback": "::1"}

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Target:
    text: str        # as given
    addr: str        # the loopback address connected to
    port: int
    family: int

    def __str__(self) -> str:
        return f"[{self.addr}]:{self.port}" if self.family == socket.AF_INET6 else f"{self.addr}:{self.port}"


def parse_target(text: str) -> Target:
    """HOST:PORT with HOST an IPv4 address, [IPv6], or localhost; only loopback addresses pass."""
    where = "--target"
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise UsageError(f"{text!r}: expected [IPV6]:PORT", where)
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep or not host:
            raise UsageError(f"{text!r}: expected HOST:PORT", where)
        if ":" in host:
            raise UsageError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:8080", where)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"{text!r}: port must be a number from 1 to 65535", where)
    port = int(port_text)
    name = host.lower().rstrip(".")
    if name in LOCALHOST:
        addr = ipaddress.ip_address(LOCALHOST[name])
    else:
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise UsageError(f"{host!r} is not an IP address or localhost (names are not resolved: the probe "
                             "sends traffic on loopback only)", where) from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped          # ::ffff:127.0.0.1 is 127.0.0.1: connect over IPv4
    if not addr.is_loopback:
        raise UsageError(f"{host} is not a loopback address; the probe only connects to 127.0.0.0/8 or ::1",
                         where)
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    return Target(text, str(addr), port, family)


@dataclass(frozen=True)
class ProbeResult:
    mode: str                         # "self" | "target"
    destination: str                  # "127.0.0.1:40729"
    requested: int
    achieved: int
    stopped_by: str | None            # EMFILE, ENFILE, EADDRNOTAVAIL, ECONNREFUSED, ETIMEDOUT, ECONNRESET, None
    side: str | None                  # "client", "listener", "target": whose error it was
    message: str | None
    seconds: float
    predicted: int | None             # binding ceiling of the capacity model for this situation
    prediction: capacity.Capacity
    rate: float
    timeout: float
    listener: dict = field(default_factory=dict)   # pid, port, fds, soft of the stand-in listener or target
    queued: int | None = None         # target: established by the kernel, never accepted (accept queue)


# Bounds that make every probe end: the ramp lasts at most MAX_RAMP_S (connections / rate), and the
# run at most about twice that plus a few timeouts (see _ramp's deadline).
MIN_RATE = 0.1
MAX_RATE = 10_000_000.0
MAX_RAMP_S = 3600.0
MIN_TIMEOUT = 0.01


def validate(connections: int, rate: float, timeout: float) -> None:
    if connections < 1:
        raise UsageError("must be at least 1", "--connections")
    if connections > 10_000_000:
        raise UsageError("at most 10000000", "--connections")
    if not MIN_RATE <= rate <= MAX_RATE:   # NaN fails both comparisons
        raise UsageError(f"must be from {MIN_RATE:g} to {MAX_RATE:g} connections per second", "--rate")
    if connections / rate > MAX_RAMP_S:
        raise UsageError(f"{connections} connections at {rate:g} per second would take {connections / rate:.0f} s; "
                         f"the ramp may last at most {MAX_RAMP_S:g} s (raise --rate or lower --connections)",
                         "--rate")
    if not MIN_TIMEOUT <= timeout <= 3600:
        raise UsageError(f"must be from {MIN_TIMEOUT:g} to 3600 seconds", "--timeout")


# -- the stand-in listener -------------------------------------------------------------------------
class _Lines:
    """Line reader over a non-blocking pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def read(self) -> list[dict]:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                break
            self.buf += chunk
        lines, _, self.buf = self.buf.rpartition(b"\n")
        out = []
        for line in lines.split(b"\n"):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
        return out


class _Listener:
    def __init__(self, timeout: float) -> None:
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self.proc = subprocess.Popen([sys.executable, "-m", "tuneup.probe_server"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True, env=env)
        self.lines = _Lines(self.proc.stdout.fileno())
        self.info: dict = {}
        self.accepted = 0
        self.error: str | None = None
        deadline = time.monotonic() + max(timeout, 10.0)
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout.fileno(), selectors.EVENT_READ)
            while not self.info:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError("the probe's listener did not start in time")
                sel.select(left)
                for msg in self.lines.read():
                    if msg.get("ready"):
                        self.info = msg
                if self.lines.eof and not self.info:
                    err = self.proc.stderr.read().decode("utf-8", "replace").strip().splitlines()
                    raise RuntimeError(f"the probe's listener exited: {err[-1] if err else self.proc.wait()}")

    @property
    def port(self) -> int:
        return int(self.info["port"])

    def update(self) -> None:
        for msg in self.lines.read():
            if "accepted" in msg:
                self.accepted = int(msg["accepted"])
            if msg.get("error"):
                self.error = str(msg["error"])
        if self.lines.eof and self.error is None:
            raise RuntimeError("the probe's listener exited unexpectedly")

    def stop(self) -> None:
        """Close its stdin (it exits and closes its sockets); kill it by pid if it does not."""
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- facts for the prediction ----------------------------------------------------------------------
def _snapshot() -> Snapshot:
    from tuneup.facts import usage
    from tuneup.facts.collect import collect

    snap = collect(usage.SYSCTL_KEYS)
    return snap


def _situation(snap: Snapshot, mode: str, dest: tuple[str, int], destination: str, listener: _Listener | None,
               target_pid: int | None, client_open: int) -> tuple[Snapshot, capacity.ProbeSituation]:
    from tuneup.facts import limits, usage

    rows = usage.tcp_sockets()
    facts = dict(snap.facts)
    facts["tcp.listen_ports"] = Fact("tcp.listen_ports", usage.listen_ports(rows), "/proc/net/tcp, /proc/net/tcp6")
    rng = snap.get("net.ipv4.ip_local_port_range")
    port_range = rng.value if rng is not None and isinstance(rng.value, tuple) and len(rng.value) == 2 else None
    reuse = snap.get("net.ipv4.tcp_tw_reuse")
    # TIME_WAIT toward a loopback destination is reusable with tcp_tw_reuse 1, or 2 (loopback only)
    count_tw = not (reuse is not None and reuse.value in (1, 2))
    in_use = usage.ports_toward(rows, dest[0], dest[1], port_range, count_time_wait=count_tw) if port_range else 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    me = os.getpid()
    sides = [capacity.Side("client", _norm(soft), client_open, f"getrlimit(RLIMIT_NOFILE) of the probe (pid {me})",
                           _norm(hard))]
    admin = [usage.cap_sys_admin("self") == 1]
    if listener is not None:
        i = listener.info
        sides.append(capacity.Side("listener", _norm(int(i["soft"])), int(i["fds"]),
                                   f"getrlimit(RLIMIT_NOFILE) of the probe's listener (pid {i['pid']})",
                                   _norm(int(i["hard"]))))
        admin.append(usage.cap_sys_admin(int(i["pid"])) == 1)
    elif target_pid is not None:
        try:
            pfacts, info = limits.process_facts(target_pid)
        except ProcessLookupError:
            pfacts, info = {}, {}
        tsoft = pfacts.get(f"proc.{target_pid}.rlimit.nofile.soft")
        tfds = pfacts.get(f"proc.{target_pid}.fds")
        if tsoft is not None and isinstance(tsoft.value, int) and tfds is not None and isinstance(tfds.value, int):
            sides.append(capacity.Side("target", tsoft.value, tfds.value,
                                       f"{tsoft.source} ({info.get('name', '?')})"))
            admin.append(usage.cap_sys_admin(target_pid) == 1)
    sit = capacity.ProbeSituation(destination=destination, sides=tuple(sides), in_use_toward=in_use,
                                  client_admin=admin[0], all_admin=all(admin) and len(admin) == len(sides))
    return replace(snap, facts=facts), sit


def _norm(v: int) -> int:
    from tuneup.model import RLIM_INFINITY

    return RLIM_INFINITY if v < 0 else v


# -- the probe -------------------------------------------------------------------------------------
_CHILD, _PENDING, _CONN = "child", "pending", "conn"


def run(connections: int = DEFAULT_CONNECTIONS, target: Target | None = None, rate: float = DEFAULT_RATE,
        timeout: float = DEFAULT_TIMEOUT, progress: Progress | None = None) -> ProbeResult:
    validate(connections, rate, timeout)
    snap = _snapshot()
    socks: list[socket.socket] = []
    listener: _Listener | None = None
    sel: selectors.BaseSelector | None = None
    abortive = target is None
    restore = _on_sigterm()
    try:
        if target is None:
            listener = _Listener(timeout)
            family, dest = socket.AF_INET, ("127.0.0.1", listener.port)
            destination = f"127.0.0.1:{listener.port}"
            target_pid = None
        else:
            family, dest, destination = target.family, (target.addr, target.port), str(target)
            from tuneup.facts import usage

            target_pid = usage.listener_pid(target.port, (target.addr,))
        sel = selectors.DefaultSelector()
        if listener is not None:
            sel.register(listener.proc.stdout.fileno(), selectors.EVENT_READ, (_CHILD, None))
        from tuneup.facts import usage

        snap2, sit = _situation(snap, "self" if target is None else "target", dest, destination, listener,
                                target_pid, usage.open_fds("self"))
        prediction = capacity.probe_model(snap2, sit)
        predicted = prediction.binding.ceiling if prediction.binding else None
        started = time.monotonic()
        achieved, stopped_by, side, message = _ramp(sel, socks, family, dest, connections, rate, timeout,
                                                    listener, progress)
        seconds = round(time.monotonic() - started, 3)
        queued = None
        if target is not None:
            # established by the kernel but still in the target's accept queue: not held by the server
            queued = _settled_queue(lambda: usage.accept_queue(target.port, (target.addr,)), timeout)
            if queued:
                achieved = max(0, achieved - queued)
        info = {}
        if listener is not None:
            info = {k: listener.info.get(k) for k in ("pid", "port", "fds", "soft", "hard")}
            info["accepted"] = listener.accepted
        elif target_pid is not None:
            info = {"pid": target_pid}
        return ProbeResult("self" if target is None else "target", destination, connections, achieved, stopped_by,
                           side, message, seconds, predicted, prediction, rate, timeout, info, queued)
    finally:
        _release(socks, sel, abortive)
        if listener is not None:
            listener.stop()
        restore()


def _settled_queue(read: Callable[[], int | None], timeout: float, stall: float = 0.5) -> int | None:
    """The target's accept queue once the server has caught up: a busy server may still be
    accepting the last connections when the ramp ends; stop waiting when the queue is empty, stops
    shrinking for `stall` seconds (a server that does not accept), or after `timeout`."""
    queued = read()
    deadline = time.monotonic() + timeout
    last_change = time.monotonic()
    while queued and time.monotonic() < deadline and time.monotonic() - last_change < stall:
        time.sleep(0.05)
        now = read()
        if now != queued:
            last_change = time.monotonic()
        queued = now
    return queued


def _ramp(sel, socks: list[socket.socket], family: int, dest: tuple[str, int], n: int, rate: float,
          timeout: float, listener: _Listener | None, progress: Progress | None):
    """Open up to n connections at `rate` per second; stop at the first failure."""
    interval = 1.0 / rate
    now = time.monotonic()
    next_due = now
    pending: dict[socket.socket, float] = {}
    established = 0
    stopped_by = side = message = None
    stop_at: float | None = None      # when the client stopped: wait for stragglers until then
    last_shown = 0.0
    deadline = now + n / rate * 2 + timeout * 3 + 10

    def stop(code: int, who: str, what: str) -> None:
        nonlocal stopped_by, side, message, stop_at
        if stopped_by is None:
            stopped_by, side = errno.errorcode.get(code, str(code)), who
            message = f"{what}: {os.strerror(code)}"
            stop_at = time.monotonic() + timeout

    while True:
        now = time.monotonic()
        if stopped_by is None:
            while (established + len(pending) < n and len(pending) < MAX_IN_FLIGHT and next_due <= now):
                try:
                    s = socket.socket(family, socket.SOCK_STREAM)
                except OSError as exc:
                    stop(exc.errno or 0, "client", "socket()")
                    break
                socks.append(s)
                s.setblocking(False)
                err = s.connect_ex(dest)
                next_due += interval
                if err == 0:
                    established += 1
                    sel.register(s, selectors.EVENT_READ, (_CONN, None))
                elif err in (errno.EINPROGRESS, errno.EALREADY):
                    pending[s] = now
                    sel.register(s, selectors.EVENT_WRITE, (_PENDING, None))
                else:
                    socks.pop().close()
                    stop(err, "client", "connect()")
                    break
            if next_due < now - 0.1:          # behind schedule (a stall): do not burst to catch up
                next_due = now - 0.1
        accepted_all = listener is None or listener.accepted >= established
        if stopped_by is None and established >= n and accepted_all:
            break
        if stopped_by is not None:
            if listener is not None and listener.error:
                break
            if not pending and accepted_all:
                break
            if stop_at is not None and now >= stop_at:
                break
        if now > deadline:
            stop(errno.ETIMEDOUT, "client", "probe deadline")
            break
        wait = 0.05 if stopped_by is not None or established + len(pending) >= n else max(0.0, min(0.05, next_due - now))
        for key, _ev in sel.select(wait):
            kind = key.data[0]
            if kind == _CHILD:
                listener.update()
                if listener.error:
                    code = getattr(errno, listener.error, 0)
                    stop(code, "listener", "accept() in the probe's listener")
                continue
            s = key.fileobj
            if kind == _PENDING:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                del pending[s]
                if err == 0:
                    established += 1
                    sel.modify(s, selectors.EVENT_READ, (_CONN, None))
                else:
                    sel.unregister(s)
                    stop(err, "client" if listener else "target", "connect()")
            else:   # an established connection became readable: data, EOF or reset
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    sel.unregister(s)
                    if stopped_by is None:     # later resets are consequences of the first failure
                        established -= 1
                    stop(exc.errno or errno.ECONNRESET, "listener" if listener else "target", "established connection")
                    continue
                if not data:
                    sel.unregister(s)
                    if stopped_by is None:
                        established -= 1
                    stop(errno.ECONNRESET, "listener" if listener else "target",
                         "established connection closed by the peer")
        now = time.monotonic()
        for s, t in list(pending.items()):
            if now - t > timeout:
                del pending[s]
                sel.unregister(s)
                stop(errno.ETIMEDOUT, "client" if listener else "target",
                     f"connect() not answered within {timeout:g} s (SYN dropped: accept queue full?)")
        if progress is not None and now - last_shown >= 0.1:
            progress(min(established, listener.accepted) if listener else established, n)
            last_shown = now
    if listener is not None:
        listener.update()
        achieved = min(established, listener.accepted)
    else:
        achieved = established
    if progress is not None:
        progress(achieved, n)
    return achieved, stopped_by, side, message


def _release(socks: list[socket.socket], sel, abortive: bool) -> None:
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        try:
            if abortive:   # RST instead of FIN: no TIME_WAIT left behind toward the stand-in listener
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        except OSError:
            pass
        try:
            s.close()
        except OSError:
            pass
    socks.clear()
    if sel is not None:
        try:
            sel.close()
        except OSError:
            pass


def _on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into an exception for the duration of the probe, so `finally` releases sockets."""
    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:     # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, old)
