"""Hostile and broken input through the real CLI (issue 10, input half): every case exits 2 with one
line on stderr that names the file (or option) and place, never 3 and never a hang; every control
character from a host, a file or a snapshot reaches the terminal escaped.

In-process runs go through tuneup.entry.main (the console script's own function: the same
dispatch, error printing and exit codes); the hostile process name needs a real process, so that
case runs the installed CLI as a subprocess against a child that renamed itself with prctl.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import STOCK, make_snapshot, tuneup_cmd

from tuneup import snapshot
from tuneup.entry import main

ESC_NAME = "\x1b]0;pwn\x07\x1b[2J"          # retitles the terminal, then clears it
ESC_SHOWN = "\\x1b]0;pwn\\x07\\x1b[2J"
FUTURE = "2099-01-01"


def run(args, capsys, cwd: Path | None = None, monkeypatch=None):
    if cwd is not None:
        monkeypatch.chdir(cwd)
    started = time.monotonic()
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    assert time.monotonic() - started < 30, "took too long"
    return info.value.code, out.out, out.err


def assert_refused(code, err, *words):
    """Exit 2, exactly one line on stderr, no traceback, no raw control character, the words in it."""
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("tuneup: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in err[:-1]), repr(err)
    for w in words:
        assert w in err, (w, err)


def no_raw_controls(text: str) -> bool:
    return not any((ord(c) < 0x20 and c not in "\n") or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029"
                   for c in text)


@pytest.fixture
def good_snap_dict():
    return json.loads(snapshot.dumps(make_snapshot(STOCK)))


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    return p


# -- snapshots ----------------------------------------------------------------------------------------
def _deep(d):
    return "[" * 100_000 + "]" * 100_000


def _bigint(d):
    return json.dumps(d).replace('"net.core.somaxconn": {"value": 128', '"net.core.somaxconn": {"value": ' + "9" * 4301)


def _inf(d):
    return json.dumps(d).replace('"net.core.somaxconn": {"value": 128', '"net.core.somaxconn": {"value": 1e400')


def _nan(d):
    return json.dumps(d).replace('"net.core.somaxconn": {"value": 128', '"net.core.somaxconn": {"value": NaN')


def _host(**kw):
    def make(d):
        d["host"].update(kw)
        return json.dumps(d)
    return make


def _field(path, value):
    def make(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
        return json.dumps(d)
    return make


SNAPSHOT_CASES = {
    "nested 100,000 deep": (_deep, ["snap.json:1:", "nested"]),
    "integer of 4301 digits": (_bigint, ["snap.json:", "digits"]),
    "1e400": (_inf, ["snap.json:", "1e400"]),
    "NaN": (_nan, ["snap.json:", "NaN"]),
    "kernel_version 5": (_host(kernel_version=5), ["$.host.kernel_version"]),
    "kernel_version strings": (_host(kernel_version=["6", "1"]), ["$.host.kernel_version"]),
    "kernel_version huge": (_host(kernel_version=[2**40]), ["$.host.kernel_version"]),
    "lone surrogate hostname": (_host(hostname="web\ud800"), ["$.host.hostname", "surrogate"]),
    "cpus true": (_host(cpus=True), ["$.host.cpus"]),
    "distro a list": (_host(distro=["debian"]), ["$.host.distro"]),
    "netns a number": (_host(netns=1), ["$.host.netns"]),
    "process pid a string": (_field(["processes"], [{"pid": "1"}]), ["$.processes[0]"]),
    "process name a number": (_field(["processes"], [{"pid": 1, "name": 5}]), ["$.processes[0].name"]),
    "listener port a string": (_field(["listeners"], [{"local": "0.0.0.0:80", "port": "80"}]),
                               ["$.listeners[0].port"]),
    "fact source a number": (_field(["facts", "net.core.somaxconn", "source"], 5), ["source"]),
    "fact tuple of 100,000": (_field(["facts", "net.core.somaxconn", "value"], [1] * 100_000), ["value"]),
    "collected_at an object": (_field(["collected_at"], {}), ["$.collected_at"]),
}


@pytest.mark.parametrize("case", sorted(SNAPSHOT_CASES))
def test_bad_snapshot_is_one_line_exit_2(case, tmp_path, capsys, good_snap_dict):
    make, words = SNAPSHOT_CASES[case]
    snap = _write(tmp_path, "snap.json", make(good_snap_dict))
    out_file = tmp_path / "out" / "report.txt"
    out_file.parent.mkdir()
    code, out, err = run(["audit", "--snapshot", snap, "-o", out_file], capsys)
    assert_refused(code, err, *words)
    assert os.listdir(out_file.parent) == [], "nothing may be created next to -o"   # no 0-byte temp file


def test_every_snapshot_case_also_refused_by_diff(tmp_path, capsys, good_snap_dict):
    snap = _write(tmp_path, "snap.json", _deep(good_snap_dict))
    code, _, err = run(["diff", snap, snap], capsys)
    assert_refused(code, err, "nested")


# -- hostile text shown escaped ----------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_hostile_hostname_is_escaped_in_every_text_format(fmt, tmp_path, capsys, good_snap_dict):
    good_snap_dict["host"]["hostname"] = ESC_NAME + "\u2028\x9b2J\x7f"
    good_snap_dict["host"]["distro"] = "deb\nian"
    snap = _write(tmp_path, "snap.json", json.dumps(good_snap_dict))
    code, out, err = run(["audit", "--snapshot", snap, "-f", fmt], capsys)
    assert code == 1, err
    assert no_raw_controls(out), [c for c in out if ord(c) < 0x20 and c != "\n"][:5]
    # shown as text (markdown and HTML escape the backslashes and brackets once more)
    assert all(w in out for w in ("x1b", "0;pwn", "x07", "u2028", "x9b2J", "x7f")), out[:300]


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_hostile_hostname_in_a_streamed_fleet(fmt, tmp_path, capsys, good_snap_dict):
    """A fleet is streamed host by host (tuneup.formats.fleetsink): each report is escaped before
    the sink sees it, on stdout and in a file written through the spool."""
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    good_snap_dict["host"]["hostname"] = ESC_NAME
    good_snap_dict["collected_at"] = "2026-01-01\x1b[2J"       # shown in the fleet's COLLECTED column
    _write(snaps, "a.json", json.dumps(good_snap_dict))
    good_snap_dict["host"]["hostname"] = "plain"
    _write(snaps, "b.json", json.dumps(good_snap_dict))
    code, out, err = run(["audit", "--snapshot", snaps, "-f", fmt], capsys)
    assert code == 1 and no_raw_controls(out) and "0;pwn" in out and "x1b" in out, err
    target = tmp_path / "fleet.out"
    code, out, err = run(["audit", "--snapshot", snaps, "-f", fmt, "-o", target], capsys)
    text = target.read_text(encoding="utf-8")
    assert code == 1 and out == "" and no_raw_controls(text) and "0;pwn" in text, err


def test_json_keeps_the_raw_value_escaped_by_json(tmp_path, capsys, good_snap_dict):
    good_snap_dict["host"]["hostname"] = ESC_NAME
    snap = _write(tmp_path, "snap.json", json.dumps(good_snap_dict))
    code, out, _ = run(["audit", "--snapshot", snap, "-f", "json"], capsys)
    assert no_raw_controls(out) and json.loads(out)["host"]["hostname"] == ESC_NAME


def test_waiver_with_hostile_rule_id_is_refused_escaped(tmp_path, capsys):
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    w = _write(tmp_path, "w.toml", f'[[waiver]]\nrule = "NET-\\u001b]0;pwn\\u0007\\u001b[2J"\nreason = "r"\n'
                                   f"expires = {FUTURE}\n")
    code, out, err = run(["audit", "--snapshot", snap, "--waivers", w], capsys)
    assert_refused(code, err, "w.toml:1", "\\x1b]0;pwn")


def test_waiver_with_a_huge_hosts_glob_is_refused(tmp_path, capsys):
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    w = _write(tmp_path, "w.toml", f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "r"\nexpires = {FUTURE}\n'
                                   f'hosts = ["{"[" * 100_000}"]\n')
    code, out, err = run(["audit", "--snapshot", snap, "--waivers", w], capsys)
    assert_refused(code, err, "w.toml:1", "hosts")


def test_waiver_with_hostile_reason_is_shown_escaped(tmp_path, capsys):
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    w = _write(tmp_path, "w.toml", f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "ok\\u001b[2J\\u2029"\n'
                                   f"expires = {FUTURE}\n")
    code, out, err = run(["audit", "--snapshot", snap, "--waivers", w], capsys)
    assert code == 1 and no_raw_controls(out) and "ok\\x1b[2J" in out


def test_rules_show_and_list_escape_a_hostile_rule_file(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.toml").write_text(
        '[[rule]]\nid = "X-EVIL"\ntitle = "t\\u001b]0;pwn\\u0007"\nseverity = "info"\nfact = "net.core.somaxconn"\n'
        'op = ">="\nexpected = "1"\nscope = "netns"\nrationale = "r\\u009b2J\\nline"\nrefs = ["x\\u001b"]\n')
    for args in (["rules", "show", "X-EVIL"], ["rules", "list"], ["rules", "list", "-f", "markdown"]):
        code, out, err = run([*args, "--rules-dir", rules], capsys)
        assert code == 0, err
        assert no_raw_controls(out) and "\\x1b]0;pwn\\x07" in out, args


def test_error_messages_are_one_line_whatever_the_input(tmp_path, capsys):
    code, _, err = run(["audit", "--snapshot", tmp_path / "a\nb\x1b[2J\u2028.json"], capsys)
    assert_refused(code, err, "\\x0a", "\\x1b[2J", "\\u2028")
    code, _, err = run(["audit", "--snapshot", tmp_path / "x.json", "-p", "web\nINJECTED"], capsys)
    assert code == 2 and err.count("\n") == 1


@pytest.fixture
def evil_process():
    """A real process whose name (comm) is set with prctl(PR_SET_NAME) to an escape sequence, and
    that listens on a loopback port, so the name shows up in process and listener findings."""
    code = (
        "import ctypes, socket, sys, time\n"
        "ctypes.CDLL(None).prctl(15, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(5)\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code, ESC_NAME], stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        assert Path(f"/proc/{p.pid}/comm").read_text() == ESC_NAME + "\n"
        yield p.pid
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("args", [
    ["audit", "--pid", "{pid}"],
    ["audit", "--process", ESC_NAME],
    ["audit", "--pid", "{pid}", "-f", "markdown"],
    ["capacity", "--pid", "{pid}"],
    ["sockets"],
])
def test_process_named_with_prctl_reaches_the_terminal_escaped(args, evil_process):
    cmd = [*tuneup_cmd(), *(a.format(pid=evil_process) for a in args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stderr
    assert no_raw_controls(p.stdout) and no_raw_controls(p.stderr)
    assert ESC_SHOWN in p.stdout.replace("\\[", "[").replace("\\]", "]").replace("\\\\", "\\")   # markdown


# -- expressions and probe parameters: bounded ---------------------------------------------------------
RULE = ('[[rule]]\nid = "X-POW"\ntitle = "t"\nseverity = "warning"\nfact = "net.core.somaxconn"\nop = ">="\n'
        'expected = "{expr}"\nscope = "netns"\nrationale = "r"\nrefs = ["x"]\n')


@pytest.mark.parametrize("expr", ["(((((9**64)**64)**64)**64)**64) > 1", "(2**5000) * (2**5001)",
                                  "round(1, -10**30)", "'%0999999999d' % 1"])
@pytest.mark.parametrize("command", ["audit", "rules show"])
def test_hostile_expression_is_a_load_error(expr, command, tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.toml").write_text(RULE.format(expr=expr))
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    args = ["audit", "--snapshot", snap, "-f", "json"] if command == "audit" else ["rules", "show", "X-POW"]
    code, out, err = run([*args, "--rules-dir", rules], capsys)
    if "round" in expr or "%" in expr:   # not a size error: refused when evaluated, at once
        why = "round() digits" if "round" in expr else "no string formatting"
        if command == "audit":
            f = next(f for f in json.loads(out)["findings"] if f["rule"] == "X-POW")
            assert code == 1 and f["status"] == "error" and why in f["message"]
        else:
            assert code == 0 and why in out, out
        return
    assert_refused(code, err, "x.toml:2", "X-POW", "too large" if "5000" in expr else "exceed")


def test_expression_with_huge_parameters_ends(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "x.toml").write_text(RULE.format(expr="(connections ** 64) ** 64"))
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    code, out, err = run(["audit", "--snapshot", snap, "--rules-dir", rules, "--set", f"connections={2**53}",
                          "-f", "json"], capsys)
    assert code == 1
    f = next(f for f in json.loads(out)["findings"] if f["rule"] == "X-POW")
    assert f["status"] == "error" and "exceed" in f["message"]


@pytest.mark.parametrize("args,where", [
    (["--rate", "1e-300"], "--rate"), (["--rate", "nan"], "--rate"), (["--rate", "inf"], "--rate"),
    (["--rate", "-5"], "--rate"), (["--rate", "1e308"], "--rate"),
    (["--connections", "10000000", "--rate", "1"], "--rate"),
    (["--connections", "0"], "--connections"), (["--connections", "-1"], "--connections"),
    (["--connections", str(10**30)], "--connections"),
    (["--timeout", "1e-300"], "--timeout"), (["--timeout", "nan"], "--timeout"), (["--timeout", "1e9"], "--timeout"),
])
def test_probe_parameters_bounded(args, where, capsys):
    code, out, err = run(["probe", *args], capsys)
    assert_refused(code, err, where)


# -- options and TOML inputs -----------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["1e308", "1e400", "nan", "-1", "9" * 5000, "x"])
def test_set_values_bounded(value, tmp_path, capsys):
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    code, out, err = run(["audit", "--snapshot", snap, "--set", f"connections={value}"], capsys)
    assert_refused(code, err, "--set")


def test_service_name_longer_than_systemd_allows(capsys, tmp_path):
    code, _, err = run(["audit", "--root", tmp_path, "--service", "a" * 300], capsys)
    assert_refused(code, err, "--service", "255")


PROFILE_CASES = {
    "extends a list": ('extends = ["web"]', "extends"),
    "params a string": ('params = "x"', "params"),
    "exclude a number": ("exclude = 5", "exclude"),
    "exclude a string": ('exclude = "CT-*"', "exclude"),
    "exclude with a number": ('exclude = ["CT-*", 5]', "exclude"),
    "description a table": ("description = {a = 1}", "description"),
    "exclude a 100,000-character glob": ('exclude = ["' + "[" * 100_000 + 'CT-*"]', "exclude"),   # found by fuzzing
    "exclude lower case": ('exclude = ["ct-*"]', "exclude"),
    "param value too large": ("params = { connections = 1e300 }", "parameter value"),
    "param value inf": ("params = { connections = inf }", "not finite"),
    "param value 5000 digits": ("params = { connections = " + "9" * 5000 + " }", "digits"),
}


@pytest.mark.parametrize("case", sorted(PROFILE_CASES))
def test_profiles_toml_fields_of_wrong_type(case, tmp_path, capsys):
    line, words = PROFILE_CASES[case]
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "profiles.toml").write_text(f'# mine\n[profile.mine]\n{line}\n')
    code, _, err = run(["rules", "list", "--rules-dir", rules], capsys)
    assert_refused(code, err, "profiles.toml:", words)


@pytest.mark.parametrize("text,words", [
    ("default_profile = 5\n", "default_profile"),
    ("param = 5\n", "'param'"),
    ("profile = []\n", "'profile'"),
    ("[param.x]\ndefault = 1\ndescription = 5\n", "description"),
    ("x = " + "[" * 100_000 + "]" * 100_000 + "\n", "nested"),
])
def test_profiles_toml_top_level_of_wrong_type(text, words, tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "profiles.toml").write_text(text)
    code, _, err = run(["rules", "list", "--rules-dir", rules], capsys)
    assert_refused(code, err, "profiles.toml", words)


def test_exclude_as_a_list_of_one_glob_still_works(tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "profiles.toml").write_text('[profile.mine]\nextends = "web"\nexclude = ["CT-*"]\n')
    code, out, err = run(["rules", "list", "-p", "mine", "-f", "json", "--rules-dir", rules], capsys)
    ids = [r["id"] for r in json.loads(out)]
    assert code == 0 and ids and not any(i.startswith("CT-") for i in ids)


@pytest.mark.parametrize("text,words", [
    ("[params]\nconnections = inf\n", "not finite"),
    ("[params]\nconnections = 1e300\n", "params.connections"),
    ("[params]\nconnections = " + "9" * 5000 + "\n", "digits"),
    ("waivers = " + "[" * 50_000 + "]" * 50_000 + "\n", "tuneup.toml:1"),
    ('fail_on = "never\\u001b[2J"\n', "\\x1b[2J"),
])
def test_bad_tuneup_toml(text, words, tmp_path, capsys):
    cfg = _write(tmp_path, "tuneup.toml", text)
    snap = _write(tmp_path, "snap.json", snapshot.dumps(make_snapshot(STOCK)))
    code, _, err = run(["audit", "--snapshot", snap, "--config", cfg], capsys)
    assert_refused(code, err, "tuneup.toml", words)


# -- ./tuneup.toml is read only when it can be trusted ------------------------------------------------------
@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "snap.json").write_text(snapshot.dumps(make_snapshot(STOCK)))
    (tmp_path / "tuneup.toml").write_text('fail_on = "never"\n')   # would turn a failing audit into exit 0
    return tmp_path


def test_implicit_tuneup_toml_of_another_user_is_refused(workdir, capsys, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    os.chown(workdir / "tuneup.toml", 65534, 65534)
    code, _, err = run(["audit", "--snapshot", "snap.json"], capsys, workdir, monkeypatch)
    assert_refused(code, err, "tuneup.toml", "uid 65534", "--config")
    # given explicitly, it is the user's decision: read
    code, _, err = run(["audit", "--snapshot", "snap.json", "--config", "tuneup.toml"], capsys, workdir, monkeypatch)
    assert code == 0, err


def test_implicit_symlink_planted_by_another_user_is_refused(workdir, capsys, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the link to another user")
    (workdir / "real.toml").write_text('fail_on = "never"\n')
    (workdir / "tuneup.toml").unlink()
    (workdir / "tuneup.toml").symlink_to(workdir / "real.toml")
    os.chown(workdir / "tuneup.toml", 65534, 65534, follow_symlinks=False)
    code, _, err = run(["audit", "--snapshot", "snap.json"], capsys, workdir, monkeypatch)
    assert_refused(code, err, "symlink", "--config")


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_implicit_tuneup_toml_writable_by_others_is_refused(mode, workdir, capsys, monkeypatch):
    os.chmod(workdir / "tuneup.toml", mode)
    code, _, err = run(["audit", "--snapshot", "snap.json"], capsys, workdir, monkeypatch)
    assert_refused(code, err, "writable by group or others", "--config")


def test_implicit_fifo_is_refused_without_blocking(tmp_path, capsys, monkeypatch):
    (tmp_path / "snap.json").write_text(snapshot.dumps(make_snapshot(STOCK)))
    os.mkfifo(tmp_path / "tuneup.toml")
    code, _, err = run(["audit", "--snapshot", "snap.json"], capsys, tmp_path, monkeypatch)
    assert_refused(code, err, "not a regular file")


def test_implicit_tuneup_toml_of_mine_is_read(workdir, capsys, monkeypatch):
    os.chmod(workdir / "tuneup.toml", 0o644)
    code, _, err = run(["audit", "--snapshot", "snap.json"], capsys, workdir, monkeypatch)
    assert code == 0, err



def test_process_with_a_non_utf8_name_does_not_break_live_commands():
    """prctl takes any bytes: a name that is not UTF-8 is shown with U+FFFD, never exit 3."""
    code = (
        "import ctypes, socket, time\n"
        "ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b'\\xff\\xfebad\\xc3'), 0, 0, 0)\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(5)\n"
        "print(s.getsockname()[1], flush=True)\n"
        "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()
        for args in (["audit", "--pid", str(p.pid)], ["audit", "--pid", str(p.pid), "-f", "json"],
                     ["sockets", "-f", "json"], ["capacity", "--pid", str(p.pid)]):
            r = subprocess.run([*tuneup_cmd(), *args], capture_output=True, text=True, timeout=120)
            assert r.returncode in (0, 1), (args, r.stderr)
            assert "\ufffd\ufffdbad\ufffd" in r.stdout or "\\ufffd\\ufffdbad\\ufffd" in r.stdout, args
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("rel,text,words", [
    ("etc/security/limits.d/x.conf", "* soft nofile " + "9" * 5000 + "\n", ["limits.d/x.conf:1", "2**64-1"]),
    ("etc/security/limits.d/x.conf", "* hard nofile 99999999999999999999999\n", ["limits.d/x.conf:1"]),
    ("etc/systemd/system.conf.d/a.conf", "[Manager]\nDefaultLimitNOFILE=" + "9" * 5000 + "\n",
     ["system.conf.d/a.conf:2", "bad limit value"]),
    ("etc/systemd/system.conf.d/a.conf", "[Manager]\nDefaultLimitNOFILE=1:99999999999999999999999\n",
     ["system.conf.d/a.conf:2", "2**64-1"]),
])
def test_hostile_config_tree_is_refused(rel, text, words, tmp_path, capsys):
    f = tmp_path / rel
    f.parent.mkdir(parents=True)
    f.write_text(text)
    code, _, err = run(["audit", "--root", tmp_path], capsys)
    assert_refused(code, err, *words)


def test_hostile_config_tree_values_and_hostname_are_shown_escaped(tmp_path, capsys):
    (tmp_path / "etc/sysctl.d").mkdir(parents=True)
    (tmp_path / "etc/sysctl.d/99-x.conf").write_text(
        "net.core.somaxconn = " + "9" * 5000 + "\nnet.ipv4.tcp_mem = 1e400 2 3\n"
        "net.core.netdev_max_backlog = \x1b]0;pwn\x07\n")
    (tmp_path / "etc/hostname").write_bytes(b"\xff\xfe\x1b[2J\n")
    for fmt in ("table", "json"):
        code, out, err = run(["audit", "--root", tmp_path, "-f", fmt], capsys)
        assert code == 1, err
        assert no_raw_controls(out)


def test_listener_with_a_pid_and_no_process_name(tmp_path, capsys, good_snap_dict):
    """Found by the fuzz test: a listener entry with a pid but no "process" was a KeyError (exit 3)."""
    good_snap_dict["listeners"] = [{"local": "0.0.0.0:80", "port": 80, "backlog": 511, "queue": 0, "pid": 42}]
    snap = _write(tmp_path, "snap.json", json.dumps(good_snap_dict))
    code, out, err = run(["audit", "--snapshot", snap, "--all"], capsys)
    assert code == 1 and "listener 0.0.0.0:80 (? pid 42)" in out, err


def test_the_fast_clean_pass_never_lets_through_what_the_full_check_refuses():
    """inputs.check_tree runs a path-free pass first (_clean) and builds paths only when it says
    no: every tree it calls clean must pass the full check, and every refused tree must fail it."""
    import datetime
    import random

    from tuneup.errors import SnapshotError
    from tuneup.inputs import _clean, check_tree

    rng = random.Random(11)
    leaves = [1, -5, 2**133, 2**140, 1.5, float("inf"), float("nan"), "ok", "x\ud800", True, None,
              datetime.date(2099, 1, 1), "é日本", "é\udfff", "\u2028"]   # non-ASCII with and without a surrogate

    def tree(depth):
        r = rng.random()
        if depth > 36 or r < 0.4:
            return rng.choice(leaves)
        if r < 0.7:
            return [tree(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["a", "b-c", "k\udc00", "1x", "ключ", "ü\ud900"]): tree(depth + 1)
                for _ in range(rng.randint(0, 3))}

    for _ in range(3000):
        t = tree(0)
        try:
            check_tree(t, "t.json", SnapshotError)
            refused = False
        except SnapshotError:
            refused = True
        if _clean(t):
            assert not refused, t
        # _clean may say no to what the full check accepts (a date), never the other way round
        if refused:
            assert not _clean(t)
