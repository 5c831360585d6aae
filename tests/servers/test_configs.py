"""Offline: the parsers, the term reader against erl itself, a release layout under --root, the
capacity ceilings, and bad input (exit 2, file:line)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tuneup import capacity
from tuneup.facts.servers import beam_config, erlterm, haproxy, nginx, redis
from tuneup.facts.servers.common import ConfigError
from tuneup.model import Fact, Snapshot

from .conftest import tuneup_cmd

RELEASE_SYS_CONFIG = """%% sys.config of a release built with relx
[{kernel, [{logger_level, info}]},
 {myapp, [
   {http, #{max_connections => 4096, num_acceptors => 16,
            socket_opts => [{port, 8080}, {backlog, 2048}]}},
   {admin, [{port, 8081}, {num_acceptors, 2}]}
 ]}].
"""


def release(root: Path, ranch: str = "2.1.0") -> Path:
    rel = root / "opt" / "myapp" / "releases" / "1.0.0"
    rel.mkdir(parents=True)
    (root / "opt" / "myapp" / "lib" / f"ranch-{ranch}").mkdir(parents=True)
    (rel / "sys.config").write_text(RELEASE_SYS_CONFIG)
    (rel / "vm.args").write_text("-name myapp@127.0.0.1\n-setcookie x\n+P 262144\n+K true\n+IOt 2 +IOp 2\n")
    return rel


def test_nginx_parser_follows_includes_and_keeps_lines(tmp_path):
    (tmp_path / "sites").mkdir()
    (tmp_path / "nginx.conf").write_text("worker_processes auto;\nworker_rlimit_nofile 4096;\n"
                                         "events { worker_connections 1024; }\n"
                                         "http {\n  include sites/*.conf; # comment ; {\n}\n")
    (tmp_path / "sites" / "a.conf").write_text('server {\n  listen 80 reuseport backlog=4k;\n'
                                               '  location / { return 200 "a;b{"; }\n}\n'
                                               'upstream u { server 127.0.0.1:9; keepalive 8; }\n')
    f = nginx.offline(tmp_path / "nginx.conf", cpus=4)
    assert f["app.nginx.worker_processes"].value == 4 and "auto" in f["app.nginx.worker_processes"].source
    assert f["app.nginx.backlog"] == Fact("app.nginx.backlog", 4096, f"{tmp_path}/sites/a.conf:2")
    assert f["app.nginx.nofile"].value == 4096
    assert f["app.nginx.reuseport"].value == 1 and f["app.nginx.upstream_keepalive"].value == 8
    assert f["app.nginx.max_clients"].value == 4 * (1024 - 64 - 1 - 1)


@pytest.mark.parametrize("text,where", [
    ("events { worker_connections 10 }\n", ":1"),
    ("events {\n worker_connections 10;\n", "nginx.conf"),
    ("}\n", ":1"),
    ('x "unterminated;\n', ":1"),
])
def test_nginx_bad_config_names_file_and_line(tmp_path, text, where):
    p = tmp_path / "nginx.conf"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        nginx.offline(p, 2)
    assert exc.value.where.startswith(str(p)) and exc.value.where.endswith(where)


def test_nginx_dump_matches_files(tmp_path):
    """`nginx -T` output and the file parser agree (the dump is what a live audit reads)."""
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    (tmp_path / "inc.conf").write_text("server { listen 127.0.0.1:18999 backlog=77; }\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"pid {tmp_path}/p;\nerror_log {tmp_path}/e;\nevents {{ worker_connections 99; }}\n"
                    f"http {{ include {tmp_path}/inc.conf; }}\n")
    dumped = nginx.dump("nginx", str(conf), None, [])
    assert dumped is not None
    assert nginx.facts(dumped, "d", 2) == {k: v for k, v in nginx.facts(nginx.read_files(conf), "d", 2).items()}


def test_haproxy_defaults_and_frontends(tmp_path):
    p = tmp_path / "h.cfg"
    p.write_text("global\n  maxconn 50000\n  ulimit-n 30000\ndefaults\n  maxconn 3000\n  timeout client 1m\n"
                 "frontend a\n  bind :80\n  bind :81 backlog 100\nfrontend b\n  bind :82\n  maxconn 2000\n"
                 "  timeout tunnel 1h\n")
    f = haproxy.facts(p.read_text(), str(p), 2)
    assert f["app.haproxy.maxconn"].value == 50000 and f["app.haproxy.ulimit_n"].value == 30000
    assert f["app.haproxy.frontend_maxconn"] == Fact("app.haproxy.frontend_maxconn", 2000, f"{p}:12")
    assert f["app.haproxy.backlog"].value == 100
    assert f["app.haproxy.timeout_client"].value == 60 and f["app.haproxy.timeout_tunnel"].value == 3600


def test_redis_conf_defaults(tmp_path):
    p = tmp_path / "redis.conf"
    p.write_text("# comment\nmaxclients 20000\ntcp-backlog 1024\n")
    f = redis.offline(p)
    assert f["app.redis.maxclients"] == Fact("app.redis.maxclients", 20000, f"{p}:2")
    assert f["app.redis.tcp_keepalive"].value == 300 and "default" in f["app.redis.tcp_keepalive"].source


ERL_TERMS = """[{a, 16#1F}, {b, "x" "y"}, {c, <<"bin">>}, {d, 'Quoted atom'}, {e, [1, 2 | 3]},
 {f, #{k => [{x, 1.5}]}}, {g, -7}, {h, {}}, {i, []}].
{second, term}.
"""


def test_term_reader():
    t = erlterm.consult(ERL_TERMS, "t")
    assert t[0][0] == ("a", 31) and t[0][1] == ("b", "xy") and t[0][2] == ("c", "bin")
    assert t[0][4] == ("e", [1, 2, 3]) and t[0][5] == ("f", {"k": [("x", 1.5)]}) and t[1] == ("second", "term")
    with pytest.raises(ConfigError) as exc:
        erlterm.consult("[{a, 1}\n,\n", "f.config")
    assert exc.value.where.startswith("f.config:")


def test_term_reader_agrees_with_erl(tmp_path):
    """erl's own file:consult/1, printed back as JSON-ish text, equals the reader's values."""
    if shutil.which("erl") is None:
        pytest.skip("erl is not installed")
    p = tmp_path / "t.config"
    p.write_text(RELEASE_SYS_CONFIG)
    expr = (f'{{ok, [T]}} = file:consult("{p}"), [{{myapp, L}}] = [X || {{myapp, _}} = X <- T], '
            '#{max_connections := M, num_acceptors := N, socket_opts := S} = proplists:get_value(http, L), '
            'io:format("~p ~p ~p~n", [M, N, proplists:get_value(backlog, S)]), halt().')
    out = subprocess.run(["erl", "-noshell", "-eval", expr], capture_output=True, text=True, timeout=60).stdout
    terms = erlterm.consult(RELEASE_SYS_CONFIG, str(p))
    http = dict(dict(terms[0])["myapp"])["http"]
    assert out.split() == [str(http["max_connections"]), str(http["num_acceptors"]),
                           str(dict(http["socket_opts"])["backlog"])]


def test_release_under_root_cli(tmp_path):
    """A relx release layout under --root: Ranch listeners from sys.config, +P from vm.args, file:line."""
    rel = release(tmp_path)
    r = subprocess.run([*tuneup_cmd(), "audit", "--root", str(tmp_path), "-p", "erlang", "--set", "connections=10000",
                        "-f", "json", "--fail-on", "never"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    f = next(x for x in rep["findings"] if x["rule"] == "RANCH-MAX-CONNECTIONS")
    # the admin listener: default max_connections 1024 x 2 connection supervisors (= its num_acceptors)
    assert f["status"] == "fail" and f["actual"] == 2048
    assert f["source"].startswith(f"{rel}/sys.config:6")
    p = next(x for x in rep["findings"] if x["rule"] == "BEAM-VMARGS-MAX-PROCESSES")
    assert p["status"] == "pass" and p["actual"] == 262144 and p["source"] == f"{rel}/vm.args:3"


def test_vm_args_flags(tmp_path):
    rel = release(tmp_path)
    f = beam_config.release_facts(rel / "vm.args", None)
    assert f["app.beam.io_pollsets"] == Fact("app.beam.io_pollsets", 2, f"{rel}/vm.args:5")
    assert f["app.beam.kernel_poll"].value == "true" and f["app.beam.max_ports"].value == 65536
    assert "default" in f["app.beam.max_ports"].source


def test_ranch_1x_limit_is_total(tmp_path):
    rel = release(tmp_path, ranch="1.8.0")
    f = beam_config.release_facts(None, rel / "sys.config")
    assert f["app.ranch.capacity"].value == 1024 and f["app.ranch.version"].value == "1.8.0"


def test_bad_app_config_is_exit_2(tmp_path):
    p = tmp_path / "nginx.conf"
    p.write_text("events {\n")
    r = subprocess.run([*tuneup_cmd(), "audit", "--app-config", f"nginx={p}"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and str(p) in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*tuneup_cmd(), "audit", "--app-config", "apache=/x"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "unknown server" in r.stderr


def test_capacity_names_the_server_as_binding():
    facts = {k: Fact(k, v, f"t:{k}") for k, v in {
        "fs.nr_open": 1048576, "app.nginx.max_clients": 1534, "app.nginx.worker_connections": 768,
        "app.nginx.worker_processes": 2, "app.nginx.proxy": 0, "app.redis.maxclients": 10000,
        "app.redis.nofile": 1024}.items()}
    snap = Snapshot(host={"cpus": 2}, facts=facts)
    cap = capacity.model(snap, {"connections": 10000})
    assert cap.binding.name == "redis.maxclients" and cap.binding.ceiling == 1024 - 32
    names = [lim.name for lim in cap.limits]
    assert names.index("nginx.worker_connections") < names.index("nr_open")


def test_a_process_name_that_is_not_utf8_does_not_break_process_lookup():
    """--process walks every /proc/PID/comm: a name with a byte like 0xff (PR_SET_NAME allows any
    bytes) must not end the run with an internal error."""
    import sys

    from tuneup.facts import processes

    code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b'\\xfftH-odd'), 0, 0, 0); "
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        assert Path(f"/proc/{p.pid}/comm").read_bytes().startswith(b"\xff")
        assert processes.find_by_name("\ufffdtH-odd") == [p.pid]
        assert processes.find_by_name("no-such-process-tH") == []
    finally:
        p.kill()
        p.wait()


def test_a_fake_nginx_cannot_make_root_read_or_run_its_files(tmp_path):
    """Any user can start a process called nginx whose command line names a file it cannot read
    (or a binary of its own): tuneup, running as root, neither runs that binary (`nginx -T`) nor
    reads the file, and the file's content never reaches the output."""
    import os

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv")
    secret = tmp_path / "secret.conf"
    secret.write_text("s3cr3t-token-tH;\n")
    secret.chmod(0o600)
    tmp_path.chmod(0o755)
    code = ("import ctypes, sys, time; ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b'nginx'), 0, 0, 0); "
            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)")
    py = "/usr/bin/python3"       # the unprivileged user cannot run an interpreter under /root (pyenv)
    if not os.access(py, os.X_OK):
        pytest.skip("no /usr/bin/python3 for the unprivileged process")
    p = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", py, "-c", code,
                          "-c", str(secret)], stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        # the title nginx would set: "nginx: master process nginx -c FILE"
        r = subprocess.run([*tuneup_cmd(), "audit", "--pid", str(p.pid), "-f", "json"], capture_output=True,
                           text=True, timeout=120)
        assert "s3cr3t" not in r.stdout + r.stderr
        assert r.returncode == 2 and "not readable by the user of pid" in r.stderr, r.stderr
    finally:
        p.kill()
        p.wait()


def test_control_characters_from_a_config_are_escaped(tmp_path):
    """A file name or word with an escape sequence or a newline stays one escaped line, in a fact's
    source and in an error."""
    d = tmp_path / "a\x1b[2Jb"
    d.mkdir()
    (d / "inc.conf").write_text("server { listen 80 backlog=100; }\n")
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"events {{ }}\nhttp {{ include {d}/inc.conf; }}\n")
    f = nginx.offline(conf, 2)
    assert "\x1b" not in f["app.nginx.backlog"].source and "\\x1b[2Jb/inc.conf:1" in f["app.nginx.backlog"].source
    (d / "inc.conf").write_text("server { listen 80\x07 backlog=100 }\n")
    with pytest.raises(ConfigError) as exc:
        nginx.offline(conf, 2)
    assert "\x1b" not in str(exc.value) and "\x07" not in str(exc.value)
