"""Resource limits: of this process (getrlimit) and of another (psutil: prlimit(2), else
/proc/PID/limits, which everyone may read while prlimit needs the target's credentials)."""

from __future__ import annotations

import os

from tuneup.model import RLIM_INFINITY, Fact
from tuneup.rx import lazy

# /proc/PID/limits row name -> short name used in fact keys
LIMIT_NAMES = {
    "Max open files": "nofile",
    "Max processes": "nproc",
    "Max locked memory": "memlock",
    "Max stack size": "stack",
    "Max address space": "as",
}
_ROW = lazy(r"^(Max [A-Za-z ]+?)\s{2,}(\S+)\s+(\S+)")


def _limit_value(text: str) -> int:
    return RLIM_INFINITY if text == "unlimited" else int(text)


def parse_proc_limits(text: str) -> dict[str, tuple[int, int]]:
    """Text of /proc/PID/limits -> {"nofile": (soft, hard), ...}; "unlimited" -> RLIM_INFINITY."""
    out: dict[str, tuple[int, int]] = {}
    for line in text.splitlines()[1:]:
        m = _ROW.match(line)
        if m and m.group(1) in LIMIT_NAMES:
            try:
                out[LIMIT_NAMES[m.group(1)]] = (_limit_value(m.group(2)), _limit_value(m.group(3)))
            except ValueError:
                continue
    return out


def self_facts() -> dict[str, Fact]:
    import resource

    facts = {}
    for name, res in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = resource.getrlimit(res)
        src = f"getrlimit(RLIMIT_{name.upper()}) of tuneup (pid {os.getpid()})"
        facts[f"rlimit.{name}.soft"] = Fact(f"rlimit.{name}.soft", _norm(soft), src)
        facts[f"rlimit.{name}.hard"] = Fact(f"rlimit.{name}.hard", _norm(hard), src)
    return facts


def _norm(v: int) -> int:
    return RLIM_INFINITY if v < 0 or v == RLIM_INFINITY else v


_RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC"}


def _text(s: str) -> str:
    """psutil decodes /proc text with surrogateescape; undecodable bytes become U+FFFD here, as in
    every other text tuneup reads from a host (a surrogate cannot be written as UTF-8)."""
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _psutil_limits(p) -> dict[str, tuple[int, int]]:
    import psutil

    return {name: tuple(_norm(v) for v in p.rlimit(getattr(psutil, res))) for name, res in _RLIMITS.items()}


def process_facts(pid: int, proc: str = "/proc") -> tuple[dict[str, Fact], dict]:
    """Facts about one process (prefix proc.PID.) and its identity; raises ProcessLookupError.

    Through psutil (name, cmdline, rlimit, num_fds); the limits come from /proc/PID/limits when
    prlimit(2) is refused (another user's process without CAP_SYS_RESOURCE)."""
    import psutil

    from tuneup.facts.processes import procfs

    base = f"{proc}/{pid}"
    prefix = f"proc.{pid}."
    facts: dict[str, Fact] = {}
    with procfs(proc):
        try:
            p = psutil.Process(pid)
        except psutil.NoSuchProcess:
            raise ProcessLookupError(pid) from None
        try:
            name = _text(p.name())
        except psutil.NoSuchProcess:
            raise ProcessLookupError(pid) from None
        except (psutil.AccessDenied, OSError):
            name = "?"
        info = {"pid": pid, "name": name}
        try:
            info["cmdline"] = [_text(a) for a in p.cmdline() if a]
        except (psutil.Error, OSError):
            info["cmdline"] = []
        src, err = f"prlimit(2) of pid {pid}", None
        try:
            limits = _psutil_limits(p) if proc == "/proc" else None
        except psutil.ZombieProcess:  # exited, not yet reaped: its limits file still reads
            limits = None
        except psutil.NoSuchProcess:
            raise ProcessLookupError(pid) from None
        except (psutil.AccessDenied, OSError):
            limits = None
        if limits is None:            # refused, or another procfs than this kernel's: read the file
            src = f"{base}/limits"
            try:
                with open(src) as fh:
                    limits = parse_proc_limits(fh.read())
            except FileNotFoundError:
                raise ProcessLookupError(pid) from None
            except OSError as exc:
                limits, err = {}, ("permission denied" if isinstance(exc, PermissionError) else exc.strerror)
        for name_ in ("nofile", "nproc"):
            for i, which in enumerate(("soft", "hard")):
                key = f"{prefix}rlimit.{name_}.{which}"
                if err:
                    facts[key] = Fact(key, None, src, error=err)
                elif name_ in limits:
                    facts[key] = Fact(key, limits[name_][i], src)
                else:
                    facts[key] = Fact(key, None, src, error="not listed in limits")
        fdkey = f"{prefix}fds"
        try:
            facts[fdkey] = Fact(fdkey, p.num_fds(), f"{base}/fd")
        except psutil.AccessDenied:
            facts[fdkey] = Fact(fdkey, None, f"{base}/fd", error="permission denied")
        except (psutil.Error, OSError) as exc:
            facts[fdkey] = Fact(fdkey, None, f"{base}/fd", error=getattr(exc, "strerror", None) or str(exc) or "gone")
    return facts, info
