"""Redis: maxclients, tcp-backlog, timeout, tcp-keepalive.

Live, `CONFIG GET` over the server's own socket (a small RESP client: no redis-cli needed) gives the
values in force, including a maxclients Redis lowered at start because its fd limit was too small
(it keeps 32 fds for itself: maxclients + 32 <= RLIMIT_NOFILE, and it says so only in its log).
The redis.conf (the path on its command line, when readable) gives the configured values and lines.

Facts (app.redis.*):
  maxclients             in force (live) or configured            default 10000
  maxclients_configured  the redis.conf value (what the operator asked for)
  nofile                 the server's RLIMIT_NOFILE soft (live only)
  tcp_backlog            listen backlog                            default 511
  timeout                seconds before an idle client is closed (0 = never)   default 0
  tcp_keepalive          SO_KEEPALIVE idle seconds (0 = off)       default 300
"""

from __future__ import annotations

import socket
from pathlib import Path

from tuneup.facts.servers.common import ConfigError, cmdline, fact, nofile_soft, read_text
from tuneup.model import Fact

DEFAULT_CONF = "etc/redis/redis.conf"
DEFAULTS = {"maxclients": 10000, "tcp-backlog": 511, "timeout": 0, "tcp-keepalive": 300}
RESERVED_FDS = 32        # CONFIG_MIN_RESERVED_FDS in server.h
MAX_INCLUDES = 100


def parse(text: str, path: str, depth: int = 0, as_pid: int | None = None) -> dict[str, tuple[str, str]]:
    """{directive: (value, "file:line")}, the last one winning, includes followed."""
    out: dict[str, tuple[str, str]] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        key = words[0].lower()
        if key == "include" and len(words) > 1:
            if depth >= MAX_INCLUDES:
                raise ConfigError("include nesting too deep", f"{path}:{lineno}")
            inc = Path(words[1])
            out.update(parse(read_text(inc, as_pid), str(inc), depth + 1, as_pid))
            continue
        out[key] = (" ".join(words[1:]).strip('"'), f"{path}:{lineno}")
    return out


def resp_config_get(host: str, port: int | None, names: list[str], unix: str | None = None,
                    timeout: float = 3.0) -> dict[str, str] | None:
    """CONFIG GET over RESP (and INFO server's config_file as "config_file"); None if the server
    does not answer or refuses (AUTH, renamed command)."""
    fam = socket.AF_UNIX if unix else (socket.AF_INET6 if ":" in host else socket.AF_INET)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(unix if unix else (host, port))
        out: dict[str, str] = {}
        f = s.makefile("rb")
        for name in names:
            parts = [b"CONFIG", b"GET", name.encode()]
            s.sendall(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
            reply = _read(f)
            if not isinstance(reply, list):
                return None
            for i in range(0, len(reply) - 1, 2):
                out[reply[i]] = reply[i + 1]
        s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        info = _read(f)
        if isinstance(info, str):
            for line in info.splitlines():
                if line.startswith("config_file:"):
                    out["config_file"] = line.split(":", 1)[1].strip()
        return out
    except (OSError, ValueError):
        return None
    finally:
        s.close()


def _read(f):
    line = f.readline(65536)
    if not line.endswith(b"\r\n"):
        raise ValueError("short reply")
    kind, body = line[:1], line[1:-2]
    if kind == b"-":
        return None
    if kind in (b"+", b":"):
        return body.decode()
    if kind == b"$":
        n = int(body)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode("utf-8", "replace")
    if kind in (b"*", b"%"):
        n = int(body) * (2 if kind == b"%" else 1)
        return [_read(f) for _ in range(max(n, 0))]
    raise ValueError("unexpected reply")


def facts(conf: dict[str, tuple[str, str]], origin: str, live_values: dict[str, str] | None = None,
          nofile: int | None = None, pid: int | None = None) -> dict[str, Fact]:
    out: dict[str, Fact] = {}

    def put(name, value, source):
        out[f"app.redis.{name}"] = fact("redis", name, value, source)

    for directive, default in DEFAULTS.items():
        name = directive.replace("-", "_")
        if live_values is not None and directive in live_values and live_values[directive].lstrip("-").isdigit():
            put(name, int(live_values[directive]), f"CONFIG GET {directive} (pid {pid})")
        elif directive in conf:
            raw, where = conf[directive]
            if not raw.isdigit():
                raise ConfigError(f"{directive} {raw!r} is not a number", where)
            put(name, int(raw), where)
        else:
            put(name, default, f"default ({default}; {origin})")
    if "maxclients" in conf and conf["maxclients"][0].isdigit():
        put("maxclients_configured", int(conf["maxclients"][0]), conf["maxclients"][1])
    else:
        put("maxclients_configured", DEFAULTS["maxclients"], f"default ({DEFAULTS['maxclients']}; {origin})")
    put("nofile", nofile, f"/proc/{pid}/limits" if pid else f"not a running server ({origin})")
    put("config", origin, origin)
    return out


def _listen_from_title(argv: list[str]) -> tuple[str, int] | None:
    """redis-server sets its title to "redis-server 127.0.0.1:6379" (or "*:6379")."""
    title = " ".join(argv)
    for word in title.split():
        host, sep, port = word.rpartition(":")
        if sep and port.isdigit() and host:
            host = host.strip("[]")
            return ("127.0.0.1" if host in ("*", "0.0.0.0") else "::1" if host == "::" else host), int(port)
    return None


def live(pids: list[int], proc: str = "/proc", conf_path: Path | None = None) -> dict[str, Fact]:
    pid = pids[0]
    argv = cmdline(pid, proc)
    conf: dict[str, tuple[str, str]] = {}
    origin = f"pid {pid}"
    path = conf_path
    if path is None:
        for a in argv[1:]:
            if a.endswith(".conf"):
                path = Path(a)
    if path is not None and path.is_file():
        try:
            conf = parse(read_text(path, pid, proc), str(path), as_pid=pid)
            origin = str(path)
        except ConfigError:
            conf = {}
    listen = _listen_from_title(argv)
    values = None
    unix = conf.get("unixsocket", ("", ""))[0] or None
    if listen is not None or unix:
        host, port = listen if listen else ("", None)
        values = resp_config_get(host, port, list(DEFAULTS), None if listen else unix)
    if not conf and values and values.get("config_file"):   # the title hides the path: INFO server has it
        path = Path(values["config_file"])
        if path.is_file():
            try:
                conf = parse(read_text(path, pid, proc), str(path), as_pid=pid)
                origin = str(path)
            except ConfigError:
                conf = {}
    out = facts(conf, origin, values, nofile_soft(pid, proc), pid)
    if values is None:
        out = {k: f for k, f in out.items()}
        out["app.redis.live"] = fact("redis", "live", 0, f"pid {pid}: CONFIG GET not answered (AUTH?), "
                                                         "values from the config file")
    return out


def offline(conf: Path) -> dict[str, Fact]:
    return facts(parse(read_text(conf), str(conf)), str(conf))
