"""Running servers: find them by name, their systemd unit, where their limit comes from, BEAM flags.

Facts are keyed ``proc.PID.<name>`` so process-scope rules evaluate them per target:
  proc.PID.unit               systemd unit from /proc/PID/cgroup ("nginx.service"), absent if none
  proc.PID.limit_source       what systemd says the unit's LimitNOFILE is and where it is set
  proc.PID.beam.max_ports     effective Erlang port limit (+Q, else 65536 raised to the fd limit)
  proc.PID.beam.max_processes effective Erlang process limit (+P, else 1048576)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

from tuneup.model import Fact

BEAM_NAMES = ("beam.smp", "beam")
BEAM_DEFAULT_PORTS = 65536          # erl(1) +Q default; raised to the fd limit when that is larger
BEAM_DEFAULT_PROCESSES = 1048576    # erl(1) +P default since OTP 19
BEAM_PORTS_RANGE = (1024, 134217727)
_UNIT = re.compile(r"([^/]+\.(?:service|scope))$")


def find_by_name(name: str, proc: str = "/proc") -> list[int]:
    """Pids whose comm or argv[0] basename equals name (comm is cut at 15 characters)."""
    pids = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"{entry.path}/comm", errors="replace") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        if comm == name or _argv0(entry.path) == name:
            pids.append(int(entry.name))
    return sorted(pids)


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
    try:
        with open(f"{proc}/{pid}/environ", "rb") as fh:
            for item in fh.read().split(b"\0"):
                if item.startswith(name.encode() + b"="):
                    return item.split(b"=", 1)[1].decode("utf-8", "replace")
    except OSError:
        return None
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
