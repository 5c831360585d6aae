"""Resource limits: of this process (getrlimit) and of another (/proc/PID/limits)."""

from __future__ import annotations

import os
import re

from tuneup.model import RLIM_INFINITY, Fact

# /proc/PID/limits row name -> short name used in fact keys
LIMIT_NAMES = {
    "Max open files": "nofile",
    "Max processes": "nproc",
    "Max locked memory": "memlock",
    "Max stack size": "stack",
    "Max address space": "as",
}
_ROW = re.compile(r"^(Max [A-Za-z ]+?)\s{2,}(\S+)\s+(\S+)")


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


def process_facts(pid: int, proc: str = "/proc") -> tuple[dict[str, Fact], dict]:
    """Facts about one process (prefix proc.PID.) and its identity; raises ProcessLookupError."""
    base = f"{proc}/{pid}"
    prefix = f"proc.{pid}."
    facts: dict[str, Fact] = {}
    try:
        with open(f"{base}/comm", errors="replace") as fh:
            name = fh.read().strip()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    except OSError:
        name = "?"
    info = {"pid": pid, "name": name}
    try:
        with open(f"{base}/cmdline", "rb") as fh:
            info["cmdline"] = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        info["cmdline"] = []
    src = f"{base}/limits"
    try:
        with open(src) as fh:
            limits = parse_proc_limits(fh.read())
        err = None
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
        facts[fdkey] = Fact(fdkey, len(os.listdir(f"{base}/fd")), f"{base}/fd")
    except PermissionError:
        facts[fdkey] = Fact(fdkey, None, f"{base}/fd", error="permission denied")
    except OSError as exc:
        facts[fdkey] = Fact(fdkey, None, f"{base}/fd", error=exc.strerror or str(exc))
    return facts, info
