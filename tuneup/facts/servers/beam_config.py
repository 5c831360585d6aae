"""Erlang/BEAM releases: vm.args (+P, +Q, +K, +IOp, ERL_MAX_PORTS) and sys.config's Ranch/Cowboy
listener options (max_connections, num_acceptors, backlog, num_conns_sups).

sys.config is read with the term reader in erlterm.py (it keeps line numbers); when `erl` is
installed it checks the file first (`file:consult/1`), so a file the VM would refuse is bad input.
A Ranch listener is any map or proplist in sys.config holding max_connections or num_acceptors
(Ranch's transport options, as applications pass them through their env).

Facts (app.beam.* and app.ranch.*):
  beam.max_processes     +P (default 1048576)
  beam.max_ports         +Q, else ERL_MAX_PORTS, else 65536 (raised to the fd limit at start)
  beam.kernel_poll       +K true/false (ignored since OTP 21; recorded)
  beam.io_poll_threads   +IOt, beam.io_pollsets +IOp: the I/O polling threads and poll sets (recorded)
  ranch.listeners        listeners found
  ranch.max_connections  the smallest listener's max_connections (default 1024)
  ranch.num_conns_sups   its connection supervisors (Ranch 2: default num_acceptors)
  ranch.capacity         the smallest listener's ceiling: max_connections x num_conns_sups on
                         Ranch >= 2.0 (the limit is per connection supervisor), max_connections on 1.x
  ranch.num_acceptors    the smallest num_acceptors (default 10)
  ranch.backlog          the smallest socket backlog (default 1024)
  ranch.version          the ranch-X.Y.Z found under the release's lib/, when found
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tuneup.facts.processes import BEAM_DEFAULT_PORTS, BEAM_DEFAULT_PROCESSES
from tuneup.facts.servers import erlterm
from tuneup.facts.servers.common import ConfigError, fact, read_text, run_tool
from tuneup.model import Fact

RANCH_MAX_CONNECTIONS = 1024
RANCH_NUM_ACCEPTORS = 10
RANCH_BACKLOG = 1024
INFINITY = 2**31 - 1
RELEASE_GLOBS = ("opt/*/releases/*", "srv/*/releases/*", "usr/lib/*/releases/*", "app/releases/*",
                 "opt/*/*/releases/*")


def parse_vm_args(text: str, path: str, depth: int = 0) -> list[tuple[str, str]]:
    """(argument, "file:line") in order; -args_file is followed."""
    out: list[tuple[str, str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            raise ConfigError("unbalanced quotes", f"{path}:{lineno}") from None
        if words[:1] == ["-args_file"] and len(words) > 1:
            if depth > 10:
                raise ConfigError("-args_file nesting too deep", f"{path}:{lineno}")
            p = Path(words[1])
            out.extend(parse_vm_args(read_text(p), str(p), depth + 1))
            continue
        out.extend((w, f"{path}:{lineno}") for w in words)
    return out


def vm_facts(args: list[tuple[str, str]], origin: str) -> dict[str, Fact]:
    out: dict[str, Fact] = {}
    found: dict[str, tuple[str, str]] = {}
    env: dict[str, tuple[str, str]] = {}
    i = 0
    while i < len(args):
        a, where = args[i]
        nxt = args[i + 1][0] if i + 1 < len(args) else ""
        m = re.fullmatch(r"\+(P|Q|K|IOp|IOt)(.*)", a)
        if m:
            val = m.group(2) or nxt
            found[m.group(1)] = (val, where)
            i += 1 if m.group(2) else 2
            continue
        if a == "-env" and i + 2 < len(args):
            env[args[i + 1][0]] = (args[i + 2][0], where)
            i += 3
            continue
        i += 1

    def num(flag: str) -> tuple[int, str] | None:
        if flag not in found:
            return None
        val, where = found[flag]
        if not val.isdigit():
            raise ConfigError(f"+{flag} {val!r} is not a number", where)
        return int(val), where

    p = num("P")
    out["app.beam.max_processes"] = fact("beam", "max_processes", p[0] if p else BEAM_DEFAULT_PROCESSES,
                                         p[1] if p else f"default +P {BEAM_DEFAULT_PROCESSES} ({origin})")
    q = num("Q")
    if q:
        out["app.beam.max_ports"] = fact("beam", "max_ports", q[0], q[1])
    elif "ERL_MAX_PORTS" in env and env["ERL_MAX_PORTS"][0].isdigit():
        out["app.beam.max_ports"] = fact("beam", "max_ports", int(env["ERL_MAX_PORTS"][0]),
                                         env["ERL_MAX_PORTS"][1] + " (-env ERL_MAX_PORTS, deprecated)")
    else:
        out["app.beam.max_ports"] = fact("beam", "max_ports", BEAM_DEFAULT_PORTS,
                                         f"default (+Q {BEAM_DEFAULT_PORTS}, raised to RLIMIT_NOFILE at start; "
                                         f"{origin})")
    if "K" in found:     # accepted and ignored since OTP 21 (the VM always uses epoll): recorded only
        out["app.beam.kernel_poll"] = fact("beam", "kernel_poll", found["K"][0], found["K"][1])
    for flag, name in (("IOt", "io_poll_threads"), ("IOp", "io_pollsets")):
        n = num(flag)
        if n:
            out[f"app.beam.{name}"] = fact("beam", name, n[0], n[1])
    return out


def _proplist(term) -> dict | None:
    """A proplist as a dict (atom keys) or a map; None if it is neither."""
    if isinstance(term, dict):
        return {str(k): v for k, v in term.items()}
    if isinstance(term, list) and term and all(isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], str)
                                               for t in term):
        return {str(k): v for k, v in term}
    return None


def ranch_listeners(terms: list, path: str) -> list[dict]:
    """Every map/proplist holding max_connections or num_acceptors, with the place it came from."""
    found: list[dict] = []

    def line_of(term) -> int:
        return getattr(term, "line", 0) or 0

    def walk(term, trail: tuple[str, ...], line: int) -> None:
        line = line_of(term) or line
        d = _proplist(term)
        if d is not None and ("max_connections" in d or "num_acceptors" in d):
            sock = _proplist(d.get("socket_opts")) or {}
            backlog = d.get("backlog", sock.get("backlog"))
            found.append({"name": "/".join(trail) or "listener", "where": f"{path}:{line}", "opts": d,
                          "backlog": backlog, "port": sock.get("port", d.get("port"))})
        if isinstance(term, tuple):
            key = str(term[0]) if term and isinstance(term[0], str) else None
            for t in term[1:] if key else term:
                walk(t, trail + ((key,) if key else ()), line_of(term) or line)
        elif isinstance(term, list):
            for t in term:
                walk(t, trail, line)
        elif isinstance(term, dict):
            for k, v in term.items():
                walk(v, trail + (str(k),), line)

    for t in terms:
        walk(t, (), 1)
    return found


def _num(v, what: str, where: str) -> int:
    if isinstance(v, str) and v == "infinity":
        return INFINITY
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise ConfigError(f"{what} {v!r} is not a number or infinity", where)


def ranch_facts(listeners: list[dict], origin: str, ranch_version: str | None) -> dict[str, Fact]:
    out: dict[str, Fact] = {}

    def put(name, value, source):
        out[f"app.ranch.{name}"] = fact("ranch", name, value, source)

    put("listeners", len(listeners), ", ".join(f"{lst['name']} ({lst['where']})" for lst in listeners) or
        f"no Ranch/Cowboy listener options in {origin}")
    v2 = ranch_version is None or not ranch_version.startswith(("0.", "1."))
    put("version", ranch_version, f"lib/ranch-{ranch_version} of the release" if ranch_version
        else "not found: Ranch 2 semantics assumed")
    if not listeners:
        for name in ("max_connections", "num_conns_sups", "capacity", "num_acceptors", "backlog"):
            put(name, None, f"no Ranch/Cowboy listener options in {origin}")
        return out
    rows = []
    for lst in listeners:
        o, where = lst["opts"], lst["where"]
        mc = _num(o.get("max_connections", RANCH_MAX_CONNECTIONS), "max_connections", where)
        na = _num(o.get("num_acceptors", RANCH_NUM_ACCEPTORS), "num_acceptors", where)
        ns = _num(o.get("num_conns_sups", na), "num_conns_sups", where) if v2 else 1
        bl = _num(lst["backlog"] if lst["backlog"] is not None else RANCH_BACKLOG, "backlog", where)
        cap = min(INFINITY, mc * ns) if v2 else mc
        rows.append((cap, mc, ns, na, bl, lst))
    cap, mc, ns, na, bl, lst = min(rows, key=lambda r: r[0])
    label = f"{lst['where']} ({lst['name']})"
    dflt = lambda key, d: "" if key in lst["opts"] else f": default {d}"  # noqa: E731
    put("max_connections", mc, label + dflt("max_connections", RANCH_MAX_CONNECTIONS))
    put("num_conns_sups", ns, label + (dflt("num_conns_sups", "num_acceptors") if v2 else ": Ranch 1.x has one"))
    put("capacity", cap, f"{label}: " + (f"{mc} max_connections x {ns} connection supervisors (Ranch 2: the limit "
                                         "is per connection supervisor)" if v2 else f"{mc} max_connections"))
    put("num_acceptors", min(r[3] for r in rows), label + dflt("num_acceptors", RANCH_NUM_ACCEPTORS))
    bmin = min(rows, key=lambda r: r[4])
    put("backlog", bmin[4], f"{bmin[5]['where']} ({bmin[5]['name']})"
        + ("" if bmin[5]["backlog"] is not None else f": default {RANCH_BACKLOG}"))
    return out


def consult_check(path: Path) -> None:
    """`erl` file:consult/1 when installed: a sys.config the VM refuses is bad input."""
    expr = f'case file:consult("{_erl_string(str(path))}") of {{ok, _}} -> halt(0); ' \
           '{error, E} -> io:format("~s", [file:format_error(E)]), halt(1) end.'
    res = run_tool(["erl", "-noshell", "-noinput", "-eval", expr], timeout=30)
    if res is not None and res[0] == 1:
        raise ConfigError(f"erl file:consult refuses it: {res[1].strip()[:200]}", str(path))


def _erl_string(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def ranch_version_under(release_dir: Path) -> str | None:
    """ranch-X.Y.Z under the release root's lib/ (release_dir = ROOT/releases/VSN)."""
    lib = release_dir.parent.parent / "lib"
    try:
        names = sorted(p.name for p in lib.iterdir() if p.name.startswith("ranch-"))
    except OSError:
        return None
    return names[-1][len("ranch-"):] if names else None


def release_facts(vm_args: Path | None, sys_config: Path | None, ranch_version: str | None = None,
                  as_pid: int | None = None) -> dict[str, Fact]:
    out: dict[str, Fact] = {}
    if vm_args is not None:
        out.update(vm_facts(parse_vm_args(read_text(vm_args, as_pid), str(vm_args)), str(vm_args)))
        out["app.beam.vm_args"] = fact("beam", "vm_args", str(vm_args), str(vm_args))
    if sys_config is not None:
        text = read_text(sys_config, as_pid)
        consult_check(sys_config)
        terms = erlterm.consult(text, str(sys_config))
        if ranch_version is None:
            ranch_version = ranch_version_under(sys_config.parent)
        out.update(ranch_facts(ranch_listeners(terms, str(sys_config)), str(sys_config), ranch_version))
        out["app.beam.sys_config"] = fact("beam", "sys_config", str(sys_config), str(sys_config))
    return out


def find_release(root: Path) -> tuple[Path | None, Path | None]:
    """The newest release's vm.args and sys.config under a tree's usual release paths."""
    for pattern in RELEASE_GLOBS:
        dirs = sorted(d for d in root.glob(pattern) if d.is_dir())
        for d in reversed(dirs):
            vm, sc = d / "vm.args", d / "sys.config"
            if vm.is_file() or sc.is_file():
                return (vm if vm.is_file() else None), (sc if sc.is_file() else None)
    return None, None


def from_path(path: Path) -> dict[str, Fact]:
    """--app-config beam=PATH: a vm.args, a sys.config, or a release directory holding them."""
    if path.is_dir():
        vm, sc = path / "vm.args", path / "sys.config"
        if not vm.is_file() and not sc.is_file():
            raise ConfigError("holds neither vm.args nor sys.config", str(path))
        return release_facts(vm if vm.is_file() else None, sc if sc.is_file() else None)
    if path.name.endswith(".config"):
        return release_facts(None, path)
    return release_facts(path, None)


def live(pid: int, argv: list[str]) -> dict[str, Fact]:
    """A running VM: its flags from its command line, its sys.config from -config."""
    args = [(a, f"/proc/{pid}/cmdline") for a in argv[1:]]
    # beam.smp gets emulator flags as -P N / -Q N before "--"; normalise them to +P / +Q
    norm = []
    for a, w in args:
        if a == "--":
            norm.append((a, w))
            continue
        m = re.fullmatch(r"-([PQK])(\d*|true|false)", a)
        norm.append((f"+{m.group(1)}{m.group(2)}" if m else a, w))
    out = vm_facts(norm, f"/proc/{pid}/cmdline")
    for i, a in enumerate(argv):
        if a == "-config" and i + 1 < len(argv):
            p = Path(argv[i + 1])
            if not p.suffix:
                p = p.with_suffix(".config")
            if p.is_file():
                out.update(release_facts(None, p, as_pid=pid))
            break
    return out
