"""`tuneup sockets` and the socket rules of `tuneup audit`, run as the installed CLI inside the
scene's throwaway namespace (see conftest.py), and the fast path's options kept equal to typer's."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import typer.main
from conftest import tuneup_cmd   # tests/conftest.py: the installed console script

from tuneup.cli import app
from tuneup.sockets_cmd import _Parser

from .sockets_scene import SCENE


def test_fast_path_parser_knows_exactly_the_typer_commands_options():
    cmd = typer.main.get_command(app).commands["sockets"]
    typer_opts = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} - {"--help"}
    fast_opts = {o for a in _Parser()._actions for o in a.option_strings}
    assert fast_opts == typer_opts


def test_sockets_command_agrees_with_the_census_and_ss(scene):
    p = scene.run(*tuneup_cmd(), "sockets", "-f", "json", "--sample", "0.1")
    d = json.loads(p.stdout)
    nl = scene.census_json("netlink")
    assert d["states"] == nl["states"] and d["source"] == "netlink"
    assert [(x["local"], x["backlog"], x["queue"]) for x in d["listeners"]] == \
        [(x["local"], x["backlog"], x["queue"]) for x in nl["listeners"]]
    assert {x["pid"] for x in d["listeners"]} == {scene.pid}
    assert d["ephemeral"]["range"] == [20000, 29999] and d["ephemeral"]["in_use"] == nl["ephemeral"]["in_use"]
    assert {"states", "listeners", "ephemeral", "counters", "sockstat", "conntrack"} <= set(d)
    assert d["counters"]["sample"]["seconds"] >= 0.1
    # ss, read independently: established sockets and listeners exactly
    ss_est = scene.run("ss", "-Htan", "state", "established").stdout.strip().splitlines()
    assert d["states"]["ESTABLISHED"] == len(ss_est)
    ss_listen = sorted(ln.split()[3] for ln in scene.run("ss", "-Hltn").stdout.strip().splitlines())
    assert sorted(x["local"] for x in d["listeners"]) == ss_listen
    table = scene.run(*tuneup_cmd(), "sockets").stdout
    assert "127.0.0.1:5001" in table and "TIME_WAIT" in table


def test_sockets_command_rejects_bad_options_in_one_line(scene):
    for args, text in ((["--format", "xml"], "--format"), (["--sample", "0"], "--sample"),
                       (["--top", "0"], "--top"), (["--bogus"], "unrecognized")):
        p = scene.run(*tuneup_cmd(), "sockets", *args, check=False)
        assert p.returncode == 2 and text in p.stderr and p.stderr.count("\n") == 1, p.stderr


def test_audit_judges_the_scenes_listeners(scene):
    p = scene.run(*tuneup_cmd(), "audit", "-f", "json", "--pid", str(scene.pid), check=False)
    assert p.returncode == 1, p.stderr
    data = json.loads(p.stdout)
    by = {(f["rule"], f["key"]): f for f in data["findings"]}
    small = by[("LISTEN-BACKLOG", f"listener.127.0.0.1:{SCENE['estab_port']}.server_backlog")]
    assert small["status"] == "fail" and small["actual"] == 100
    assert f"pid {scene.pid}" in small["message"] and "listen()" in small["message"]
    capped = by[("LISTEN-BACKLOG", f"listener.127.0.0.1:{SCENE['tw_port']}.server_backlog")]
    assert capped["status"] == "pass" and capped["actual"] == 4096          # min(100000, somaxconn)
    in_range = by[("LISTEN-IN-EPHEMERAL-RANGE", f"listener.127.0.0.1:{SCENE['range_port']}.ephemeral_unreserved")]
    assert in_range["status"] == "fail"
    queue = by[("LISTEN-QUEUE-FULL", f"listener.127.0.0.1:{SCENE['queue_port']}.queue")]
    assert queue["status"] == "pass" and queue["actual"] == SCENE["queued"]
    assert by[("SOCK-LISTEN-OVERFLOWS", "sample.TcpExt.ListenOverflows.delta")]["status"] == "skip"
    # the snapshot keeps the listeners, and auditing it gives the same listener findings
    snap = json.loads(scene.run(*tuneup_cmd(), "collect", "--pid", str(scene.pid)).stdout)
    assert {x["local"] for x in snap["listeners"]} == {x["local"] for x in json.loads(
        scene.run(*tuneup_cmd(), "sockets", "-f", "json").stdout)["listeners"]}


FLOOD = """
import socket, sys, time
l = socket.socket(); l.bind(("127.0.0.1", 6100)); l.listen(0)
print("ready", flush=True)
cs = []
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    c = socket.socket(); c.setblocking(False); c.connect_ex(("127.0.0.1", 6100)); cs.append(c)
    time.sleep(0.05)
"""


def test_audit_sample_sees_overflows_as_they_happen(empty_netns):
    flood = subprocess.Popen(["ip", "netns", "exec", empty_netns.name, sys.executable, "-c", FLOOD, "6"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert flood.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        p = empty_netns.run(*tuneup_cmd(), "audit", "-p", "baseline", "-f", "json", "--sample", "1", check=False)
        by = {f["rule"]: f for f in json.loads(p.stdout)["findings"]}
        assert by["SOCK-LISTEN-OVERFLOWS"]["status"] == "fail" and by["SOCK-LISTEN-OVERFLOWS"]["actual"] >= 1
        assert by["LISTEN-QUEUE-FULL"]["status"] == "fail"     # queue 1 on a listen(0) socket
        assert p.returncode == 1
    finally:
        flood.kill()
        flood.wait()


def test_sample_needs_a_live_host(tmp_path):
    from conftest import make_snapshot

    from tuneup import snapshot
    snap = tmp_path / "s.json"
    snap.write_text(snapshot.dumps(make_snapshot({"net.core.somaxconn": 4096})))
    p = subprocess.run([*tuneup_cmd(), "audit", "--snapshot", str(snap), "--sample", "1"], capture_output=True,
                       text=True)
    assert p.returncode == 2 and "--sample" in p.stderr


@pytest.mark.parametrize("args", [["sockets", "--help"], ["sockets", "-h"]])
def test_help_goes_through_typer(args):
    p = subprocess.run([*tuneup_cmd(), *args], capture_output=True, text=True)
    assert p.returncode == 0 and "--sample" in p.stdout and "--method" in p.stdout
