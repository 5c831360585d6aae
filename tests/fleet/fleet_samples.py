"""Snapshot files for the fleet tests, and a runner for the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

from typer.testing import CliRunner

from conftest import STOCK  # noqa: F401 (re-exported to the fleet tests)

from tuneup import snapshot as snapmod
from tuneup.model import Fact, Snapshot

REPO = Path(__file__).resolve().parents[2]
# Everything the web profile wants for 100000 connections, so only chosen keys fail.
GOOD = {**STOCK, "net.core.somaxconn": 65535, "net.ipv4.tcp_max_syn_backlog": 65535,
        "net.core.netdev_max_backlog": 16384, "rlimit.nofile.soft": 1048576, "rlimit.nofile.hard": 1048576,
        "net.netfilter.nf_conntrack_max": 1048576}


def snap(hostname: str, **values) -> Snapshot:
    vals = {**GOOD, **{k.replace("__", "."): v for k, v in values.items()}}
    facts = {k: Fact(k, v, "/proc/sys/" + k.replace(".", "/")) for k, v in vals.items()}
    host = {"hostname": hostname, "kernel": "6.1.0-13-amd64", "kernel_version": [6, 1, 0], "arch": "x86_64",
            "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096, "netns": "initial"}
    return Snapshot(host=host, facts=facts, collected_at="2025-01-01T00:00:00+00:00", origin="test")


def write(path: Path, s: Snapshot) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(snapmod.dumps(s))
    return path


def cli(args: list[str], **kw):
    from tuneup.cli import app

    import inspect

    # click < 8.2 (what pip picks on Python 3.9) mixes stderr into stdout unless told not to
    opts = {"mix_stderr": False} if "mix_stderr" in inspect.signature(CliRunner).parameters else {}
    return CliRunner(**opts).invoke(app, args, catch_exceptions=False, **kw)


def main(args: list[str], capsys) -> tuple[int, str, str]:
    """Through tuneup.cli.main, which turns errors into one line and an exit code."""
    import pytest

    from tuneup.cli import main as entry

    with pytest.raises(SystemExit) as info:
        entry(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


PY = sys.executable
