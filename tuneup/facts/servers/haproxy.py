"""HAProxy: global maxconn, ulimit-n, per-frontend maxconn and backlog, threads.

Live, the running process says what it derived (its stats socket's `show info` / `show stat`:
Maxconn, Ulimit-n, Nbthread, each frontend's session limit), else its fd limit in /proc; the
config file (checked with `haproxy -c -f` when the binary is there) gives the rest, with file:line.

Facts (app.haproxy.*):
  maxconn            global maxconn; unset, HAProxy derives it from its fd limit at start
  ulimit_n           fds HAProxy gives itself (ulimit-n; by default 2 x maxconn + a few)
  frontend_maxconn   the smallest frontend/listen maxconn (default: the global maxconn)
  backlog            the smallest listen backlog of a frontend (default: its maxconn)
  nbthread           threads (default: the CPUs, at most 64)
  timeout_client     seconds an idle client connection is kept (the smallest)
  timeout_tunnel     seconds an idle tunnel (websocket) is kept; absent when not set
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from tuneup.facts.servers.common import ConfigError, cmdline, fact, nofile_soft, read_text, run_tool
from tuneup.model import Fact

DEFAULT_CONF = "etc/haproxy/haproxy.cfg"
PROXY_SECTIONS = ("frontend", "listen", "backend", "defaults")
MAX_THREADS = 64


def parse(text: str, path: str) -> list[tuple[str, str, str, list[str], int]]:
    """(section kind, section name, keyword, args, line) for every line inside a section."""
    out = []
    kind = name = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        if words[0] in ("global",) + PROXY_SECTIONS + ("resolvers", "peers", "userlist", "cache", "program",
                                                         "http-errors", "ring", "mailers"):
            kind, name = words[0], (words[1] if len(words) > 1 else "")
            continue
        if not kind:
            raise ConfigError(f"{words[0]!r} outside of a section", f"{path}:{lineno}")
        out.append((kind, name, words[0], words[1:], lineno))
    return out


def _secs(text: str) -> int | None:
    m = re.fullmatch(r"(\d+)(us|ms|s|m|h|d)?", text)
    if not m:
        return None
    mult = {"us": 1e-6, "ms": 0.001, None: 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return int(int(m.group(1)) * mult)


def _int(args: list[str], where: str) -> int:
    if not args or not args[0].isdigit():
        raise ConfigError("expected a number", where)
    return int(args[0])


def stats(sock_path: str) -> tuple[dict[str, str], list[dict[str, str]]] | None:
    """`show info` and `show stat` over the admin/stats socket, or None if it does not answer."""
    def ask(cmd: str) -> str:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(3)
        try:
            s.connect(sock_path)
            s.sendall(cmd.encode())
            chunks = []
            while True:
                c = s.recv(65536)
                if not c:
                    break
                chunks.append(c)
        finally:
            s.close()
        return b"".join(chunks).decode("utf-8", "replace")

    try:
        info_text, stat_text = ask("show info\n"), ask("show stat\n")
    except OSError:
        return None
    info = {}
    for line in info_text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            info[k.strip()] = v.strip()
    rows = []
    lines = stat_text.splitlines()
    if lines and lines[0].startswith("#"):
        hdr = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(hdr, r.split(","))) for r in lines[1:] if r]
    return info, rows


def facts(text: str, path: str, cpus: int, live: dict | None = None) -> dict[str, Fact]:
    """app.haproxy.* from the config text; `live` = {"info", "rows", "nofile", "pid"} of a running one."""
    lines = parse(text, path)
    out: dict[str, Fact] = {}

    def put(name, value, source):
        out[f"app.haproxy.{name}"] = fact("haproxy", name, value, source)

    glob = {kw: (args, f"{path}:{ln}") for kind, _n, kw, args, ln in lines if kind == "global"}
    info = (live or {}).get("info") or {}
    pid = (live or {}).get("pid")
    if info.get("Maxconn", "").isdigit():
        put("maxconn", int(info["Maxconn"]), f"stats socket of pid {pid}: show info Maxconn"
            + (f" (set at {glob['maxconn'][1]})" if "maxconn" in glob else " (derived from the fd limit at start)"))
    elif "maxconn" in glob:
        put("maxconn", _int(glob["maxconn"][0], glob["maxconn"][1]), glob["maxconn"][1])
    else:
        put("maxconn", None, f"global maxconn not set in {path}: HAProxy derives it at start from its fd limit "
                             "((ulimit-n - reserved fds) / 2)")
    gmax = out["app.haproxy.maxconn"].value

    if info.get("Ulimit-n", "").isdigit():
        put("ulimit_n", int(info["Ulimit-n"]), f"stats socket of pid {pid}: show info Ulimit-n")
    elif "ulimit-n" in glob:
        put("ulimit_n", _int(glob["ulimit-n"][0], glob["ulimit-n"][1]), glob["ulimit-n"][1])
    elif (live or {}).get("nofile") is not None:
        put("ulimit_n", live["nofile"], f"/proc/{pid}/limits (HAProxy sets its own limit)")
    else:
        put("ulimit_n", None, f"ulimit-n not set in {path}: HAProxy computes it from maxconn at start")

    if info.get("Nbthread", "").isdigit():
        put("nbthread", int(info["Nbthread"]), f"stats socket of pid {pid}: show info Nbthread")
    elif "nbthread" in glob:
        put("nbthread", _int(glob["nbthread"][0], glob["nbthread"][1]), glob["nbthread"][1])
    else:
        put("nbthread", min(cpus, MAX_THREADS), f"default (the {cpus} CPUs; {path})")

    # per proxy: defaults sections apply to the proxies after them
    fronts: dict[str, dict] = {}
    defaults: dict[str, tuple[list[str], str]] = {}
    cur = None
    for kind, name, kw, args, ln in lines:
        where = f"{path}:{ln}"
        if kind == "defaults":
            if cur is None or cur.get("_kind") != "defaults":
                defaults = dict(defaults)
            defaults[kw if kw != "timeout" else f"timeout {args[0] if args else ''}"] = (args, where)
            cur = {"_kind": "defaults"}
            continue
        if kind not in ("frontend", "listen"):
            cur = None
            continue
        fe = fronts.get(name)
        if fe is None:
            fe = fronts[name] = {"_kind": kind, "defaults": dict(defaults), "bind": [], "line": ln}
        cur = fe
        if kw == "bind":
            fe["bind"].append((args, where))
        elif kw == "timeout" and args:
            fe[f"timeout {args[0]}"] = (args[1:], where)
        else:
            fe[kw] = (args, where)
    stat_rows = {r.get("pxname"): r for r in (live or {}).get("rows") or [] if r.get("svname") == "FRONTEND"}
    fmax: list[tuple[int, str]] = []
    backlogs: list[tuple[int, str]] = []
    tclient: list[tuple[int, str]] = []
    ttunnel: list[tuple[int, str]] = []
    for name, fe in fronts.items():
        if not fe["bind"]:
            continue
        d = fe["defaults"]
        if name in stat_rows and stat_rows[name].get("slim", "").isdigit():
            m, src = int(stat_rows[name]["slim"]), f"stats socket of pid {pid}: show stat {name} slim"
        elif "maxconn" in fe:
            m, src = _int(fe["maxconn"][0], fe["maxconn"][1]), fe["maxconn"][1]
        elif "maxconn" in d:
            m, src = _int(d["maxconn"][0], d["maxconn"][1]), d["maxconn"][1] + " (defaults)"
        elif isinstance(gmax, int):
            m, src = gmax, f"{path}:{fe['line']}: {name} has no maxconn: the global maxconn"
        else:
            m, src = None, ""
        if m is not None:
            fmax.append((m, src))
        blog = fe.get("backlog") or d.get("backlog")
        for args, where in fe["bind"]:
            if "backlog" in args[1:] and args.index("backlog") + 1 < len(args):
                backlogs.append((_int(args[args.index("backlog") + 1:], where), where))
            elif blog:
                backlogs.append((_int(blog[0], blog[1]), blog[1]))
            elif m is not None:
                backlogs.append((m, f"{where}: no backlog, the frontend's maxconn"))
        for key, acc in (("timeout client", tclient), ("timeout tunnel", ttunnel)):
            t = fe.get(key) or d.get(key)
            if t:
                args = t[0] if fe.get(key) else t[0][1:]
                secs = _secs(args[0]) if args else None
                if secs is None:
                    raise ConfigError(f"{key}: not a time", t[1])
                acc.append((secs, t[1]))
    bound = any(fe["bind"] for fe in fronts.values())
    unset = ("no maxconn in the frontends: the global maxconn, derived at start" if bound
             else "no frontend with a bind line")
    for name, acc, why in (("frontend_maxconn", fmax, unset),
                           ("backlog", backlogs, unset),
                           ("timeout_client", tclient, "timeout client not set (HAProxy warns: infinite)"),
                           ("timeout_tunnel", ttunnel, "timeout tunnel not set")):
        if acc:
            v, src = min(acc, key=lambda t: t[0])
            put(name, v, src)
        else:
            put(name, None, f"{why} ({path})")
    out["app.haproxy.config"] = fact("haproxy", "config", path, path)
    return out


def check(binary: str, conf: Path) -> None:
    """`haproxy -c -f CONF`: a config HAProxy itself rejects is bad input."""
    res = run_tool([binary, "-c", "-q", "-f", str(conf)])
    if res is not None and res[0] != 0:
        first = next((ln for ln in (res[2] + res[1]).splitlines() if ln.strip()), "invalid")
        raise ConfigError(f"haproxy -c rejects it: {first.strip()}", str(conf))


def conf_from_cmdline(argv: list[str]) -> list[str]:
    out = []
    for i, a in enumerate(argv):
        if a == "-f" and i + 1 < len(argv):
            out.append(argv[i + 1])
    return out


def live(pids: list[int], cpus: int, proc: str = "/proc") -> dict[str, Fact]:
    pid = pids[0]
    argv = cmdline(pid, proc)
    confs = conf_from_cmdline(argv) or ["/etc/haproxy/haproxy.cfg"]
    path = Path(confs[0])
    text = read_text(path, as_pid=pid, proc=proc)
    info: dict[str, str] = {}
    rows: list[dict[str, str]] = []
    for _k, _n, kw, args, _ln in parse(text, str(path)):
        if kw == "stats" and args[:1] == ["socket"] and len(args) > 1 and args[1].startswith("/"):
            got = stats(args[1])
            if got:
                info, rows = got
                break
    return facts(text, str(path), cpus, {"info": info, "rows": rows, "nofile": nofile_soft(pid, proc), "pid": pid})


def offline(conf: Path, cpus: int) -> dict[str, Fact]:
    text = read_text(conf)
    binary = run_tool(["haproxy", "-v"])
    if binary is not None:
        check("haproxy", conf)
    return facts(text, str(conf), cpus)
