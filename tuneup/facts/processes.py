"""Running servers: find them by name, their systemd unit, where their limit comes from, BEAM flags.

Facts are keyed ``proc.PID.<name>`` so process-scope rules evaluate them per target:
  proc.PID.unit               systemd unit from /proc/PID/cgroup ("nginx.service"), absent if none
  proc.PID.limit_source       what systemd says the unit's LimitNOFILE is and where it is set
  proc.PID.beam.max_ports     effective Erlang port limit (+Q, else 65536 raised to the fd limit)
  proc.PID.beam.max_processes effective Erlang process limit (+P, else 1048576)

A process once found is read through psutil: its name, command line, environment, open fds
(``num_fds``) and rlimits (``rlimit``, in limits.py). /proc is read directly in three places:
  /proc/PID/cgroup   psutil has no cgroup API; the systemd unit comes from it
  /proc/PID/limits   psutil's rlimit() is prlimit(2), which needs the target's credentials or
                     CAP_SYS_RESOURCE; the limits file is world-readable, so an unprivileged audit
                     falls back to it (limits.process_facts)
  /proc/PID/comm, cmdline in find_by_name: psutil.process_iter() has the equivalent, but costs
                     2.5-3x the direct walk over thousands of processes (benchmarks/procs_bench.py)
A ``proc`` other than "/proc" (a copied or mounted procfs) is honoured through psutil.PROCFS_PATH.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Iterator

from tuneup.model import Fact
from tuneup.rx import lazy

BEAM_NAMES = ("beam.smp", "beam")
BEAM_DEFAULT_PORTS = 65536          # erl(1) +Q default; raised to the fd limit when that is larger
BEAM_DEFAULT_PROCESSES = 1048576    # erl(1) +P default since OTP 19
BEAM_PORTS_RANGE = (1024, 134217727)
_UNIT = lazy(r"([^/]+\.(?:service|scope))$")


@contextlib.contextmanager
def procfs(proc: str = "/proc") -> Iterator[None]:
    """psutil reading the procfs at proc (its documented PROCFS_PATH switch), restored afterwards."""
    import psutil  # imported when a process is read: plain audits skip its ~12 ms import

    if proc == psutil.PROCFS_PATH:
        yield
        return
    saved, psutil.PROCFS_PATH = psutil.PROCFS_PATH, proc
    try:
        yield
    finally:
        psutil.PROCFS_PATH = saved


def find_by_name(name: str, proc: str = "/proc") -> list[int]:
    """Pids whose comm or argv[0] basename equals name (comm is cut at 15 characters).

    A direct walk of /proc/PID/comm and cmdline: psutil.process_iter() does the same walk with a
    Process object per pid (one more read of /proc/PID/stat each, and parsing it), which made
    discovery 2.5-3x slower with 2,000 processes (benchmarks/procs_bench.py). What is read about
    a process once found goes through psutil."""
    pids = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/comm", "rb") as fh:
                comm = fh.read().rstrip(b"\n").decode("utf-8", "replace")   # any bytes: a user names it
        except OSError:
            continue
        if comm == name or _argv0(entry.path) == name:
            pids.append(int(entry.name))
    return sorted(pids)


def psutil_find_by_name(name: str, proc: str = "/proc") -> list[int]:
    """find_by_name through psutil.process_iter (name, else argv[0]): the same answer, slower;
    kept for the benchmark that justifies the direct walk."""
    import psutil  # imported when a process is read: plain audits skip its ~12 ms import

    pids = []
    with procfs(proc):
        for p in psutil.process_iter():
            try:
                if _text(p.name()) == name:
                    pids.append(p.pid)
                    continue
                argv = p.cmdline()
            except (psutil.Error, OSError):
                continue
            if argv and os.path.basename(_text(argv[0])) == name:
                pids.append(p.pid)
    return sorted(pids)


def _text(s: str) -> str:
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _argv0(path: str) -> str:
    try:
        with open(f"{path}/cmdline", "rb") as fh:
            first = fh.read(4096).split(b"\0", 1)[0]
    except OSError:
        return ""
    return os.path.basename(first.decode("utf-8", "replace"))


def parse_cgroup_unit(text: str) -> str | None:
    """The innermost .service/.scope of a /proc/PID/cgroup text (v2 "0::/..." or v1 name=systemd)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[0] == "0" or (len(parts) == 3 and parts[1] == "name=systemd"):
            for comp in reversed(parts[2].strip("/").split("/")):
                m = _UNIT.search(comp)
                if m:
                    return m.group(1)
    return None


def parse_beam_flags(argv: list[str]) -> dict[str, int]:
    """+Q/+P (erl) or -Q/-P (as erlexec passes them to beam.smp) before the '--' separator."""
    flags: dict[str, int] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            break
        m = re.fullmatch(r"[+-]([QP])(\d*)", arg)
        if m:
            raw = m.group(2) or (argv[i + 1] if i + 1 < len(argv) else "")
            if raw.isdigit():
                flags[m.group(1)] = int(raw)
                i += 0 if m.group(2) else 1
        i += 1
    return flags


def beam_effective(flags: dict[str, int], nofile_soft: int | None, erl_max_ports: str | None) -> dict[str, tuple[int, str]]:
    if "Q" in flags:
        lo, hi = BEAM_PORTS_RANGE
        ports = (min(max(flags["Q"], lo), hi), f"+Q {flags['Q']}")
    elif erl_max_ports and erl_max_ports.isdigit():
        ports = (int(erl_max_ports), f"ERL_MAX_PORTS={erl_max_ports} (deprecated since R16)")
    else:
        raised = max(BEAM_DEFAULT_PORTS, nofile_soft or 0)
        ports = (min(raised, BEAM_PORTS_RANGE[1]), "default: 65536, raised to RLIMIT_NOFILE when larger")
    procs = (flags["P"], f"+P {flags['P']}") if "P" in flags else (BEAM_DEFAULT_PROCESSES, "default +P")
    return {"max_ports": ports, "max_processes": procs}


def _environ_var(pid: int, name: str, proc: str) -> str | None:
    import psutil  # imported when a process is read: plain audits skip its ~12 ms import

    try:
        with procfs(proc):
            value = psutil.Process(pid).environ().get(name)
        return None if value is None else _text(value)
    except (psutil.Error, OSError):
        return None


def systemd_limit_source(unit: str) -> str | None:
    """What systemd says about the unit's LimitNOFILE (and the files that configure the unit)."""
    exe = shutil.which("systemctl")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "show", "--no-pager", "-p", "LimitNOFILE,LimitNOFILESoft,FragmentPath,DropInPaths",
                              "--", unit], capture_output=True, text=True, timeout=5, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    if not props.get("FragmentPath") and not props.get("LimitNOFILE"):
        return None
    where = props.get("FragmentPath") or "no unit file"
    if props.get("DropInPaths"):
        where += " + drop-ins " + props["DropInPaths"]
    return (f"systemd unit {unit}: LimitNOFILE={props.get('LimitNOFILE', '?')} "
            f"LimitNOFILESoft={props.get('LimitNOFILESoft', '?')} ({where})")


def details(pid: int, info: dict, nofile_soft: int | None, proc: str = "/proc") -> dict[str, Fact]:
    """Unit, limit source and BEAM facts of one process (info from limits.process_facts)."""
    prefix = f"proc.{pid}."
    facts: dict[str, Fact] = {}
    src = f"{proc}/{pid}/cgroup"
    try:
        with open(src) as fh:
            unit = parse_cgroup_unit(fh.read())
    except OSError:
        unit = None
    facts[prefix + "unit"] = Fact(prefix + "unit", unit, src)
    if unit and unit.endswith(".service"):
        how = systemd_limit_source(unit)
        if how:
            facts[prefix + "limit_source"] = Fact(prefix + "limit_source", how, "systemctl show")
    argv = info.get("cmdline") or []
    name = info.get("name", "")
    if name in BEAM_NAMES or (argv and os.path.basename(argv[0]) in BEAM_NAMES):
        eff = beam_effective(parse_beam_flags(argv[1:]), nofile_soft, _environ_var(pid, "ERL_MAX_PORTS", proc))
        for key, (value, how) in eff.items():
            facts[f"{prefix}beam.{key}"] = Fact(f"{prefix}beam.{key}", value, f"{proc}/{pid}/cmdline: {how}")
    else:   # absent, not unknown: BEAM rules skip for other servers
        for key in ("max_ports", "max_processes"):
            facts[f"{prefix}beam.{key}"] = Fact(f"{prefix}beam.{key}", None, f"{proc}/{pid}/cmdline: not a BEAM VM")
    return facts
