"""The Erlang VM's effective process limit, by OTP release when the node runs without +P.

  proc.PID.beam.process_limit   +P when given (as erl(1) passes it to beam.smp: -P), else the
                                release's ERTS_DEFAULT_MAX_PROCESSES; absent for other processes
  proc.PID.beam.erts_version    the erts version from the emulator's path (.../erts-13.2.2/bin/)

ERTS_DEFAULT_MAX_PROCESSES in erts/emulator/beam/erl_process.h is (1 << 18) = 262144 in the
releases servers run (it was 1 << 15 = 32768 before R16's larger default); where the erts version
cannot be read the conservative 262144 is used, never a larger guess.
"""

from __future__ import annotations

import os
import re

from tuneup.model import Fact

DEFAULT_MAX_PROCESSES = 1 << 18          # erl_process.h ERTS_DEFAULT_MAX_PROCESSES
OLD_DEFAULT_MAX_PROCESSES = 1 << 15      # erts before 5.10 (R16): 32768
BEAM_NAMES = ("beam.smp", "beam", "beam.emu")
_ERTS = re.compile(r"erts-(\d+)\.(\d+)(?:\.(\d+))?")


def erts_version(paths: list[str]) -> tuple[int, ...] | None:
    for p in paths:
        m = _ERTS.search(p or "")
        if m:
            return tuple(int(x) for x in m.groups() if x is not None)
    return None


def default_for(version: tuple[int, ...] | None) -> tuple[int, str]:
    if version is None:
        return DEFAULT_MAX_PROCESSES, "erts version unknown: ERTS_DEFAULT_MAX_PROCESSES 262144 assumed"
    shown = ".".join(map(str, version))
    if version < (5, 10):
        return OLD_DEFAULT_MAX_PROCESSES, f"erts {shown} default (32768)"
    return DEFAULT_MAX_PROCESSES, f"erts {shown} default (ERTS_DEFAULT_MAX_PROCESSES 1 << 18)"


def process_limit(argv: list[str], exe: str | None) -> tuple[int, str, tuple[int, ...] | None]:
    from tuneup.facts.processes import parse_beam_flags

    flags = parse_beam_flags(argv[1:])
    version = erts_version([exe or "", *(argv[:1])])
    if "P" in flags:
        return flags["P"], f"+P {flags['P']}", version
    value, how = default_for(version)
    return value, how, version


def beam_facts(pid: int, name: str, argv: list[str], proc: str = "/proc") -> dict[str, Fact]:
    prefix = f"proc.{pid}.beam."
    src = f"{proc}/{pid}/cmdline"
    if name not in BEAM_NAMES and not (argv and os.path.basename(argv[0]) in BEAM_NAMES):
        return {prefix + "process_limit": Fact(prefix + "process_limit", None, f"{src}: not a BEAM VM")}
    try:
        exe = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        exe = None
    value, how, version = process_limit(argv, exe)
    facts = {prefix + "process_limit": Fact(prefix + "process_limit", value, f"{src}: {how}")}
    if version:
        facts[prefix + "erts_version"] = Fact(prefix + "erts_version", ".".join(map(str, version)),
                                             f"{proc}/{pid}/exe")
    return facts
