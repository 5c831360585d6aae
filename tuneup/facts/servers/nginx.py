"""nginx: the directives that cap connections, from `nginx -T` (the effective config with its
includes, printed by the server itself) or, without the binary, from the files (a small parser
that follows `include`).

Facts (app.nginx.*), each with the file:line that set it:
  worker_processes      workers ("auto" -> the CPUs)           default 1
  worker_connections    connections per worker (all: clients, upstreams, listeners)   default 512
  worker_rlimit_nofile  RLIMIT_NOFILE nginx sets for its workers; absent when not set
  nofile                the workers' fd limit: worker_rlimit_nofile, else a live worker's soft limit
  listens               distinct listening sockets (each takes one worker_connections slot per worker)
  backlog               the smallest listen backlog= (default 511 on Linux)
  reuseport             listen directives with reuseport
  keepalive_timeout     seconds an idle client keepalive connection is held (default 75)
  upstream_keepalive    the smallest `keepalive` of an upstream block; absent without one
  proxy_read_timeout    the smallest proxy_read_timeout in seconds (default 60): an idle proxied
                        connection (a websocket) is closed when the upstream sends nothing for that long
  proxy                 1 when the config proxies (proxy_pass & co.): two connections per client
  max_clients           client connections nginx holds before it starts closing idle ones:
                        workers x per_worker(worker_connections, listens) / (2 when proxying)

Each worker's connection slots: one per listening socket and one for the channel to the master are
taken for good; once no more than worker_connections/16 slots are free, every new connection makes
nginx close up to 32 of its idle (keepalive, waiting-for-request) connections, the oldest first
("worker_connections are not enough, reusing connections": ngx_drain_connections in
src/core/ngx_connection.c). Measured with nginx 1.22 and `tuneup probe`: worker_connections 512, one
worker, one listener -> 478 idle clients held, the 479th makes nginx close 32.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tuneup.facts.servers.common import ConfigError, cmdline, exe, fact, nofile_soft, parse_size, read_text, run_tool
from tuneup.model import Fact

DEFAULT_CONF = "etc/nginx/nginx.conf"
DEFAULT_WORKER_CONNECTIONS = 512
DEFAULT_BACKLOG = 511            # NGX_LISTEN_BACKLOG on Linux
DEFAULT_KEEPALIVE_TIMEOUT = 75
DEFAULT_PROXY_READ_TIMEOUT = 60
PROXY_DIRECTIVES = ("proxy_pass", "fastcgi_pass", "uwsgi_pass", "scgi_pass", "grpc_pass", "memcached_pass")
MAX_INCLUDES = 1000


@dataclass(frozen=True)
class Directive:
    name: str
    args: tuple[str, ...]
    file: str
    line: int
    context: tuple[str, ...]      # enclosing block names: ("http", "server")

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def tokenize(text: str, path: str) -> list[tuple[str, int, bool]]:
    """(token, line, quoted) with comments dropped; '{', '}' and ';' are tokens of their own."""
    out: list[tuple[str, int, bool]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, line, False))
            i += 1
        elif c in "\"'":
            start, j, buf = line, i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ConfigError("unterminated quoted string", f"{path}:{start}")
            out.append(("".join(buf), start, True))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                j += 1
            out.append((text[i:j], line, False))
            i = j
    return out


def parse(text: str, path: str, include: Callable[[str, Directive], list[Directive]] | None = None,
          context: tuple[str, ...] = ()) -> list[Directive]:
    """Directives of one file in order; `include` expands include directives (None: keep them)."""
    toks = tokenize(text, path)
    out: list[Directive] = []
    stack = list(context)
    depth0 = len(stack)
    args: list[str] = []
    start = 0
    for tok, line, quoted in toks:
        if not quoted and tok == ";":
            if not args:
                raise ConfigError("unexpected ';'", f"{path}:{line}")
            d = Directive(args[0], tuple(args[1:]), path, start, tuple(stack))
            if d.name == "include" and include is not None:
                out.extend(include(d.args[0] if d.args else "", d))
            else:
                out.append(d)
            args = []
        elif not quoted and tok == "{":
            if not args:
                raise ConfigError("unexpected '{'", f"{path}:{line}")
            out.append(Directive(args[0], tuple(args[1:]), path, start, tuple(stack)))
            stack.append(args[0])
            args = []
        elif not quoted and tok == "}":
            if args or len(stack) <= depth0:
                raise ConfigError("unexpected '}'", f"{path}:{line}")
            stack.pop()
        else:
            if not args:
                start = line
            args.append(tok)
    if args:
        raise ConfigError(f"directive {args[0]!r} is not terminated by ';'", f"{path}:{start}")
    if len(stack) != depth0:
        raise ConfigError("unexpected end of file: a '{' is not closed", path)
    return out


def read_files(conf: Path, prefix: Path | None = None, root: Path | None = None,
               as_pid: int | None = None) -> list[Directive]:
    """The config file and its includes (globs relative to the config's directory, as nginx does);
    as_pid: only files that process's user may read (see common.read_text)."""
    seen = [0]
    base = prefix or conf.parent

    def load(path: Path, context: tuple[str, ...]) -> list[Directive]:
        seen[0] += 1
        if seen[0] > MAX_INCLUDES:
            raise ConfigError(f"more than {MAX_INCLUDES} included files (an include loop?)", str(path))
        return parse(read_text(path, as_pid), str(path), include_at, context)

    def include_at(pattern: str, d: Directive) -> list[Directive]:
        pat = pattern
        if root is not None and pat.startswith("/"):
            pat = str(root) + pat
        elif not pat.startswith("/"):
            pat = str(base / pat)
        found = sorted(glob.glob(pat)) if glob.has_magic(pat) else [pat]
        out: list[Directive] = []
        for p in found:
            if not os.path.isfile(p):
                if glob.has_magic(pat):
                    continue
                raise ConfigError(f"include {pattern!r}: no such file", d.where)
            out.extend(load(Path(p), d.context))
        return out

    return load(conf, ())


_DUMP_HEADER = re.compile(r"^# configuration file (.+):$")


def parse_dump(text: str) -> list[Directive]:
    """`nginx -T` output: each file after a "# configuration file PATH:" line. The first is the
    main file; included files are parsed in the context of their include directive."""
    files: dict[str, list[str]] = {}
    order: list[str] = []
    cur: list[str] | None = None
    for raw in text.splitlines():
        m = _DUMP_HEADER.match(raw)
        if m:
            cur = files.setdefault(m.group(1), [])
            order.append(m.group(1))
            continue
        if cur is not None:
            cur.append(raw)
    if not order:
        raise ConfigError("no '# configuration file' section in the output", "nginx -T")
    texts = {path: "\n".join(lines) for path, lines in files.items()}
    main = order[0]
    depth = [0]

    def include_at(pattern: str, d: Directive) -> list[Directive]:
        depth[0] += 1
        if depth[0] > MAX_INCLUDES:
            raise ConfigError("include loop", d.where)
        pat = pattern if pattern.startswith("/") else os.path.join(os.path.dirname(main), pattern)
        out: list[Directive] = []
        for path in texts:
            if path == pat or (glob.has_magic(pat) and _fnmatch_path(path, pat)):
                out.extend(parse(texts[path], path, include_at, d.context))
        return out

    return parse(texts[main], main, include_at)


def _fnmatch_path(path: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return os.path.dirname(path) == os.path.dirname(pattern) and fnmatchcase(os.path.basename(path),
                                                                            os.path.basename(pattern))


def _seconds(text: str) -> int | None:
    """nginx time: 75, 75s, 2m, 1h, 1m30s -> seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000, "y": 31536000}
    total = 0.0
    for num, unit in re.findall(r"(\d+)(ms|[smhdwMy]?)", text):
        total += int(num) * units.get(unit or "s", 1)
    return int(total) if re.fullmatch(r"(\d+(ms|[smhdwMy])?)+", text) else None


def facts(directives: list[Directive], origin: str, cpus: int, worker_nofile: int | None = None,
          worker_source: str = "") -> dict[str, Fact]:
    """app.nginx.* from the parsed directives (origin: "nginx -T" or the file path)."""
    out: dict[str, Fact] = {}

    def put(name, value, source):
        out[f"app.nginx.{name}"] = fact("nginx", name, value, source)

    def last(name: str, ctx: tuple[str, ...] = ()) -> Directive | None:
        found = [d for d in directives if d.name == name and d.context == ctx]
        return found[-1] if found else None

    wp = last("worker_processes")
    if wp is None:
        put("worker_processes", 1, f"default (1; {origin})")
    elif wp.args and wp.args[0] == "auto":
        put("worker_processes", cpus, f"{wp.where}: auto = {cpus} CPUs")
    elif wp.args and wp.args[0].isdigit():
        put("worker_processes", int(wp.args[0]), wp.where)
    else:
        raise ConfigError(f"worker_processes {' '.join(wp.args)!r} is not a number or auto", wp.where)
    workers = out["app.nginx.worker_processes"].value

    wc = last("worker_connections", ("events",))
    if wc is None:
        put("worker_connections", DEFAULT_WORKER_CONNECTIONS, f"default ({DEFAULT_WORKER_CONNECTIONS}; {origin})")
    elif wc.args and wc.args[0].isdigit():
        put("worker_connections", int(wc.args[0]), wc.where)
    else:
        raise ConfigError("worker_connections is not a number", wc.where)
    conns = out["app.nginx.worker_connections"].value

    wr = last("worker_rlimit_nofile")
    if wr is not None and wr.args and wr.args[0].isdigit():
        put("worker_rlimit_nofile", int(wr.args[0]), wr.where)
        put("nofile", int(wr.args[0]), wr.where)
    else:
        put("worker_rlimit_nofile", None, f"not set ({origin})")
        if worker_nofile is not None:
            put("nofile", worker_nofile, worker_source)
        else:
            put("nofile", None, f"worker_rlimit_nofile not set in {origin}: the workers keep the limit "
                                "nginx is started with (LimitNOFILE= of its unit)")

    listens = [d for d in directives if d.name == "listen" and d.context[-1:] == ("server",)]
    addrs: dict[str, Directive] = {}
    backlogs: list[tuple[int, Directive]] = []
    reuse = 0
    for d in listens:
        if not d.args:
            raise ConfigError("listen without an address", d.where)
        addr = d.args[0]
        if addr.isdigit():
            addr = f"0.0.0.0:{addr}"
        addrs.setdefault(addr, d)
        for a in d.args[1:]:
            if a.startswith("backlog="):
                n = parse_size(a[len("backlog="):])
                if n is None:
                    raise ConfigError(f"{a!r} is not a number", d.where)
                backlogs.append((n, d))
            elif a == "reuseport":
                reuse += 1
        if not any(a.startswith("backlog=") for a in d.args[1:]):
            backlogs.append((DEFAULT_BACKLOG, d))
    servers = [d for d in directives if d.name == "server" and d.context == ("http",)]
    if servers and not listens:   # a server block without listen listens on *:80
        addrs["0.0.0.0:80"] = servers[0]
        backlogs.append((DEFAULT_BACKLOG, servers[0]))
    n_listen = len(addrs) or 0
    put("listens", n_listen, ", ".join(f"{a} ({d.where})" for a, d in addrs.items()) or f"no listen ({origin})")
    if backlogs:
        n, d = min(backlogs, key=lambda t: t[0])
        put("backlog", n, d.where + ("" if any(a.startswith("backlog=") for a in d.args) else
                                     f": default backlog {DEFAULT_BACKLOG}"))
    else:
        put("backlog", None, f"no listen directive ({origin})")
    put("reuseport", reuse, origin)

    ka = [d for d in directives if d.name == "keepalive_timeout" and d.context[:1] == ("http",)]
    if ka:
        d = max(ka, key=lambda d: _seconds(d.args[0]) or 0 if d.args else 0)
        secs = _seconds(d.args[0]) if d.args else None
        if secs is None:
            raise ConfigError("keepalive_timeout is not a time", d.where)
        put("keepalive_timeout", secs, d.where)
    else:
        put("keepalive_timeout", DEFAULT_KEEPALIVE_TIMEOUT, f"default ({DEFAULT_KEEPALIVE_TIMEOUT}s; {origin})")

    uk = [(int(d.args[0]), d) for d in directives
          if d.name == "keepalive" and d.context[-1:] == ("upstream",) and d.args and d.args[0].isdigit()]
    if uk:
        n, d = min(uk, key=lambda t: t[0])
        put("upstream_keepalive", n, d.where)
    else:
        put("upstream_keepalive", None, f"no upstream keepalive ({origin})")

    prt = [(_seconds(d.args[0]) if d.args else None, d) for d in directives if d.name == "proxy_read_timeout"]
    for secs, d in prt:
        if secs is None:
            raise ConfigError("proxy_read_timeout is not a time", d.where)
    if prt:
        secs, d = min(prt, key=lambda t: t[0])
        put("proxy_read_timeout", secs, d.where)
    else:
        put("proxy_read_timeout", DEFAULT_PROXY_READ_TIMEOUT, f"default ({DEFAULT_PROXY_READ_TIMEOUT}s; {origin})")

    proxies = [d for d in directives if d.name in PROXY_DIRECTIVES]
    put("proxy", 1 if proxies else 0, proxies[0].where if proxies else f"no proxy_pass ({origin})")
    per = 2 if proxies else 1
    put("max_clients", workers * per_worker(conns, n_listen) // per,
        f"{workers} worker(s) x ({conns} worker_connections - {conns // 16} kept free (nginx closes idle "
        f"connections below that) - {n_listen} listening socket(s) - 1 channel to the master)"
        + (" / 2 (each client also holds an upstream connection)" if per == 2 else ""))
    return out


def per_worker(worker_connections: int, listens: int) -> int:
    """Connections one worker holds before it starts closing idle ones (see the module docstring)."""
    return max(0, worker_connections - worker_connections // 16 - listens - 1)


def worker_connections_for(per_worker_needed: int, listens: int) -> int:
    """The smallest worker_connections whose per_worker() is at least per_worker_needed."""
    wc = per_worker_needed + listens + 1
    wc += wc // 15
    while per_worker(wc, listens) < per_worker_needed:
        wc += 1
    return wc


def conf_from_cmdline(argv: list[str]) -> tuple[str | None, str | None, list[str]]:
    """(-c file, -p prefix, -g directives) of an nginx command line (the master keeps its original
    arguments in its title: "nginx: master process /usr/sbin/nginx -c /etc/x.conf")."""
    if len(argv) == 1 and " " in argv[0]:
        argv = argv[0].split()
    if argv and argv[0].startswith("nginx:"):
        argv = argv[3:] if len(argv) > 3 else []    # "nginx:", "master", "process", binary
    conf = prefix = None
    glob_args: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-c", "-p", "-g") and i + 1 < len(argv):
            val = argv[i + 1]
            if a == "-c":
                conf = val
            elif a == "-p":
                prefix = val
            else:
                glob_args = ["-g", val]
            i += 2
            continue
        i += 1
    return conf, prefix, glob_args


def dump(binary: str, conf: str | None, prefix: str | None, extra: list[str]) -> list[Directive] | None:
    """`nginx -T`: the effective config with includes, as the server reads it; None if it fails."""
    argv = [binary, "-T", "-q"]
    if prefix:
        argv += ["-p", prefix]
    if conf:
        argv += ["-c", conf]
    argv += extra
    res = run_tool(argv)
    if res is None or res[0] != 0:
        return None
    return parse_dump(res[1])


def live(pids: list[int], cpus: int, proc: str = "/proc") -> dict[str, Fact]:
    """Facts of a running nginx: its master's command line gives the config; `nginx -T` reads it."""
    masters = [p for p in pids if "master process" in " ".join(cmdline(p, proc))]
    if not masters:             # a worker was named: its parent is the master that holds the command line
        parent = _ppid(pids[0], proc)
        masters = [parent] if parent and "master process" in " ".join(cmdline(parent, proc)) else pids[:1]
    master = masters[0]
    argv = cmdline(master, proc)
    conf, prefix, extra = conf_from_cmdline(argv)
    workers = [p for p in pids if p != master] or _children(master, proc)
    wsoft = nofile_soft(workers[0], proc) if workers else None
    wsrc = f"{proc}/{workers[0]}/limits (a worker; worker_rlimit_nofile not set)" if workers else ""
    binary = exe(master, proc)
    trusted = binary is not None and _trusted_binary(binary) and _uid(master, proc) == 0
    directives = dump(binary, conf, prefix, extra) if trusted and binary else None
    origin = f"{binary} -T (pid {master})"
    if directives is None:          # not a root master running a root-owned binary: read the files ourselves
        path = Path(conf or "/etc/nginx/nginx.conf")
        if not path.is_absolute():
            path = Path(prefix or "/usr/share/nginx") / path
        directives = read_files(path, Path(prefix) if prefix else None, as_pid=master)
        origin = str(path)
    out = facts(directives, origin, cpus, wsoft, wsrc)
    out["app.nginx.config"] = fact("nginx", "config", conf or "default", origin)
    return out


def _uid(pid: int, proc: str) -> int | None:
    """The real uid of a process (/proc/PID/status Uid:)."""
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _trusted_binary(path: str) -> bool:
    """tuneup runs as root: it executes `nginx -T` only with a binary that root owns and no one
    else can write, in directories no one else can write (any process can call itself nginx)."""
    import stat

    p = Path(path)
    for q in [p, *p.parents]:
        try:
            st = q.stat()
        except OSError:
            return False
        if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return False
    return True


def _ppid(pid: int, proc: str) -> int | None:
    try:
        with open(f"{proc}/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int, proc: str) -> list[int]:
    try:
        with open(f"{proc}/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except (OSError, ValueError):
        return []


def offline(conf: Path, cpus: int, root: Path | None = None) -> dict[str, Fact]:
    """Facts from the files (--app-config nginx=PATH, or etc/nginx/nginx.conf under --root)."""
    out = facts(read_files(conf, None if root is None else conf.parent, root), str(conf), cpus)
    out["app.nginx.config"] = fact("nginx", "config", str(conf), str(conf))
    return out
