"""The dispatch builds only the command a command line runs (cli.app_for); what it prints and
exits with is what the whole app gives for the same arguments: every command's help, usage errors,
unknown commands, global options."""

from __future__ import annotations

import pytest

from tuneup import cli
from tuneup.entry import main


def _names() -> list[str]:
    from typer.main import get_command_name

    return [c.name or get_command_name(c.callback.__name__) for c in cli.app.registered_commands] + \
        [g.name for g in cli.app.registered_groups]


COMMANDS = _names()
RULES = ["list", "show"]
CASES = [[c, opt] for c in COMMANDS for opt in ("--help", "-h", "--bogus")] + \
    [["rules", sub, "--help"] for sub in RULES] + \
    [["rules"], ["rules", "nope"], ["rules", "list", "--bogus"], ["rules", "show"], ["audi"], ["--version"], ["-h"],
     ["--help"], [], ["audit", "--format", "nope"], ["audit", "--jobs", "0"], ["fix", "--apply", "--bogus"],
     ["capacity", "--connections"], ["--bogus", "audit"]]


def _run(args, capsys):
    try:
        main(list(args))
        code = None
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_list_is_complete():
    assert {"audit", "collect", "sockets", "fix", "rules", "profiles", "capacity"} <= set(COMMANDS)


@pytest.mark.parametrize("args", CASES, ids=lambda a: " ".join(a) or "(none)")
def test_same_output_as_the_whole_app(args, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    got = _run(args, capsys)
    monkeypatch.setattr(cli, "app_for", lambda _args: cli.app)
    want = _run(args, capsys)
    assert got == want
    assert got[0] in (0, 2, None) and (got[1] or got[2])


def test_only_the_command_is_built():
    import typer.main

    one = typer.main.get_command(cli.app_for(["audit", "-f", "json"]))
    assert list(one.commands) == ["audit"]
    assert list(typer.main.get_command(cli.app_for(["rules", "list"])).commands) == ["rules"]
    for args in ([], ["--version"], ["audi"], ["-h", "audit"]):
        assert cli.app_for(args) is cli.app
    assert set(typer.main.get_command(cli.app).commands) == set(COMMANDS)   # the app itself is untouched


def test_completion_gets_the_whole_app(monkeypatch):
    monkeypatch.setenv("_TUNEUP_COMPLETE", "complete_bash")
    assert cli.app_for(["audit"]) is cli.app


def test_python_dash_m_runs_every_command_help():
    """`python -m tuneup CMD --help` in a fresh interpreter: the lazy imports and the one-command
    app hold together outside the test process too."""
    import subprocess
    import sys

    for cmd in COMMANDS:
        r = subprocess.run([sys.executable, "-m", "tuneup", cmd, "--help"], capture_output=True, text=True,
                           timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "NO_COLOR": "1"})
        assert r.returncode == 0 and f"Usage: tuneup {cmd} [OPTIONS]" in r.stdout, (cmd, r.stderr)
