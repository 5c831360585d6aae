"""Live: real nginx, HAProxy, Redis and an Erlang VM in a throwaway netns, audited with --pid (each test
targets its own server by pid: --process finds every process of that name on the host, and CI runs
five suites at once, each with its own nginx; discovery by name is tested in tests/test_processes.py).
The facts must equal what each server reports about itself (nginx -T, HAProxy's stats socket,
redis-cli CONFIG GET, erl's init:get_arguments), and a server configured below the target fails
the right rule."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tuneup.facts.servers.erlterm import consult

from .conftest import need, tuneup_cmd


def audit(ns, *args: str) -> dict:
    r = ns.run(*tuneup_cmd(), "audit", "-f", "json", "--fail-on", "never", *args, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def collect(ns, *args: str) -> dict:
    r = ns.run(*tuneup_cmd(), "collect", *args, check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def finding(rep: dict, rule: str) -> dict:
    return next(f for f in rep["findings"] if f["rule"] == rule)


def fact(snap: dict, key: str):
    facts = snap["facts"]
    f = facts[key] if isinstance(facts, dict) else next(x for x in facts if x["key"] == key)
    return f["value"], f["source"]


def pidfile(path: Path, timeout: float = 10) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().strip())
        time.sleep(0.1)
    raise AssertionError(f"no pid in {path}")


def test_nginx_live(ns, tmp_path):
    need("nginx")
    port = 18000 + (hash(ns.name) % 1000)
    (tmp_path / "conf.d").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"worker_processes 2;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                    "events {\n    worker_connections 300;\n}\n"
                    f"http {{\n    access_log off;\n    keepalive_timeout 20s;\n    include {tmp_path}/conf.d/*.conf;\n}}\n")
    (tmp_path / "conf.d" / "site.conf").write_text(
        f"server {{\n    listen 127.0.0.1:{port} backlog=64;\n    location / {{ proxy_pass http://127.0.0.1:9; }}\n}}\n")
    ns.run("nginx", "-c", str(conf))
    master = pidfile(tmp_path / "nginx.pid")
    ns.adopt(master)
    ns.wait_port(port)
    snap = collect(ns, "--pid", str(master))
    # what nginx itself prints
    dumped = subprocess.run(["nginx", "-T", "-q", "-c", str(conf)], capture_output=True, text=True).stdout
    assert "worker_connections 300;" in dumped and "backlog=64" in dumped
    assert fact(snap, "app.nginx.worker_connections") == (300, f"{conf}:5")
    assert fact(snap, "app.nginx.worker_processes") == (2, f"{conf}:1")
    assert fact(snap, "app.nginx.backlog") == (64, f"{tmp_path}/conf.d/site.conf:2")
    assert fact(snap, "app.nginx.keepalive_timeout")[0] == 20
    assert fact(snap, "app.nginx.proxy")[0] == 1
    # 2 workers x (300 - 300/16 kept free - 1 listener - 1 channel) / 2 (proxy)
    assert fact(snap, "app.nginx.max_clients")[0] == 2 * (300 - 18 - 2) // 2
    worker_soft = int(Path(f"/proc/{master}/limits").read_text().split("Max open files")[1].split()[0])
    assert fact(snap, "app.nginx.nofile")[0] == worker_soft
    rep = audit(ns, "--pid", str(master), "--set", "connections=1000")
    f = finding(rep, "NGINX-CONNECTIONS")
    assert f["status"] == "fail" and f["actual"] == 280
    # the snapshot keeps them: audited elsewhere, the same finding with the same file:line
    saved = tmp_path / "snap.json"
    saved.write_text(json.dumps(snap))
    again = audit(ns, "--snapshot", str(saved), "--set", "connections=1000")
    g = finding(again, "NGINX-CONNECTIONS")
    assert (g["status"], g["actual"]) == ("fail", 280)
    assert finding(again, "NGINX-BACKLOG-SOMAXCONN")["source"] == f"{tmp_path}/conf.d/site.conf:2"
    assert finding(rep, "NGINX-BACKLOG-SOMAXCONN")["status"] == "pass"


def test_haproxy_live(ns, tmp_path):
    need("haproxy")
    port = 19000 + (hash(ns.name) % 1000)
    sock = tmp_path / "stats.sock"
    conf = tmp_path / "haproxy.cfg"
    conf.write_text(f"global\n    maxconn 700\n    stats socket {sock} mode 600 level admin\n"
                    f"    pidfile {tmp_path}/h.pid\n"
                    "defaults\n    mode tcp\n    timeout client 30s\n    timeout server 30s\n    timeout connect 5s\n"
                    f"frontend fe\n    bind 127.0.0.1:{port}\n    maxconn 500\n    default_backend be\n"
                    "backend be\n    server s1 127.0.0.1:9\n")
    assert subprocess.run(["haproxy", "-c", "-q", "-f", str(conf)]).returncode == 0
    ns.run("haproxy", "-D", "-f", str(conf))
    hpid = pidfile(tmp_path / "h.pid")
    ns.adopt(hpid)
    ns.wait_port(port)
    snap = collect(ns, "--pid", str(hpid))
    assert fact(snap, "app.haproxy.maxconn")[0] == 700
    assert fact(snap, "app.haproxy.frontend_maxconn")[0] == 500
    assert fact(snap, "app.haproxy.timeout_client") == (30, f"{conf}:7")
    # what HAProxy itself says over its stats socket (show info): Maxconn and the Ulimit-n it computed
    import socket

    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"show info\n")
        info = b""
        while chunk := s.recv(65536):
            info += chunk
    said = dict(line.split(": ", 1) for line in info.decode().splitlines() if ": " in line)
    assert fact(snap, "app.haproxy.ulimit_n")[0] == int(said["Ulimit-n"])
    assert fact(snap, "app.haproxy.maxconn")[0] == int(said["Maxconn"])
    assert fact(snap, "app.haproxy.nbthread")[0] == int(said["Nbthread"])
    rep = audit(ns, "--pid", str(hpid), "--set", "connections=600")
    assert finding(rep, "HAPROXY-FRONTEND-MAXCONN")["status"] == "fail"
    assert finding(rep, "HAPROXY-MAXCONN")["status"] == "pass"


def test_redis_live_lowered_maxclients(ns, tmp_path):
    """Redis started with a fd limit too small for maxclients lowers it silently: CONFIG GET shows it."""
    need("redis-server", "redis-cli")
    port = 20000 + (hash(ns.name) % 1000)
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndaemonize no\nsave \"\"\nappendonly no\ndir {tmp_path}\n"
                    "maxclients 5000\ntcp-backlog 100\ntcp-keepalive 60\n")
    p = ns.popen("prlimit", "--nofile=1000:1000", "redis-server", str(conf))
    ns.wait_port(port)
    got = ns.run("redis-cli", "-p", str(port), "CONFIG", "GET", "maxclients").stdout.split()
    assert got[0] == "maxclients" and int(got[1]) == 1000 - 32
    assert Path(f"/proc/{p.pid}/comm").read_text().strip() == "redis-server"   # ip netns exec, prlimit: exec'd
    snap = collect(ns, "--pid", str(p.pid))
    assert fact(snap, "app.redis.maxclients")[0] == 968
    assert fact(snap, "app.redis.maxclients_configured") == (5000, f"{conf}:7")
    assert fact(snap, "app.redis.tcp_backlog")[0] == int(
        ns.run("redis-cli", "-p", str(port), "CONFIG", "GET", "tcp-backlog").stdout.split()[1])
    assert fact(snap, "app.redis.nofile")[0] == 1000
    rep = audit(ns, "--pid", str(p.pid), "--set", "connections=2000")
    assert finding(rep, "REDIS-MAXCLIENTS-NOFILE")["status"] == "fail"
    assert finding(rep, "REDIS-MAXCLIENTS")["status"] == "fail"
    assert p.poll() is None


def test_erlang_vm_live(ns, tmp_path):
    """An Erlang VM with +P and a sys.config with a Ranch listener: the facts equal what the VM says
    (erlang:system_info(process_limit), init:get_argument(config))."""
    need("erl")
    out = tmp_path / "args.txt"
    cfg = tmp_path / "sys.config"
    cfg.write_text("[{myapp, [{http, #{max_connections => 700, num_acceptors => 4,\n"
                   "                  socket_opts => [{port, 8080}, {backlog, 256}]}}]}].\n")
    expr = (f'file:write_file("{out}", io_lib:format("~p.~n~p.~n", [erlang:system_info(process_limit), '
            'init:get_argument(config)])), timer:sleep(60000), halt().')
    p = ns.popen("erl", "+P", "300000", "-noshell", "-config", str(cfg)[:-len(".config")], "-eval", expr)
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    limit, config_arg = consult(out.read_text(), str(out))     # what the VM says about itself
    pid = p.pid           # ip netns exec -> erl -> erlexec -> beam.smp: each execs the next
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "beam.smp"
    snap = collect(ns, "--pid", str(pid))
    assert config_arg == ("ok", [[str(cfg)[:-len(".config")]]])
    assert fact(snap, "app.beam.sys_config")[0] == str(cfg)
    assert fact(snap, "app.beam.max_processes")[0] == 300000
    assert limit >= 300000
    assert fact(snap, "app.ranch.max_connections") == (700, f"{cfg}:1 (myapp/http)")
    assert fact(snap, "app.ranch.backlog")[0] == 256
    rep = audit(ns, "--pid", str(pid), "--set", "connections=5000", "-p", "erlang")
    f = finding(rep, "RANCH-MAX-CONNECTIONS")      # Ranch 2: 700 per connection supervisor x 4 (num_acceptors)
    assert f["status"] == "fail" and f["actual"] == 2800
    assert finding(rep, "BEAM-VMARGS-MAX-PROCESSES")["status"] == "pass"


def test_redis_with_a_password_falls_back_to_its_file(ns, tmp_path):
    """CONFIG GET needs AUTH here: tuneup says so and takes the values from redis.conf (INFO is
    refused too, so the file is the one on the command line)."""
    need("redis-server", "redis-cli")
    port = 21000 + (hash(ns.name) % 1000)
    conf = tmp_path / "redis.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\nsave \"\"\ndir {tmp_path}\nrequirepass pw-tH\nmaxclients 3000\n")
    p = ns.popen("redis-server", str(conf))
    ns.wait_port(port)
    snap = collect(ns, "--pid", str(p.pid), "--app-config", f"redis={conf}")
    assert fact(snap, "app.redis.live")[0] == 0 and "not answered" in fact(snap, "app.redis.live")[1]
    assert fact(snap, "app.redis.maxclients") == (3000, f"{conf}:6")
    said = ns.run("redis-cli", "-p", str(port), "-a", "pw-tH", "--no-auth-warning", "CONFIG", "GET", "maxclients")
    assert said.stdout.split()[1] == "3000"
