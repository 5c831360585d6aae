"""`tuneup sockets`: the live socket census and kernel counters, as a table or JSON.

`run()` does the work for both parsers: the typer command in tuneup.cli and `fast_main()`, which
tuneup.entry uses so that the command does not pay for importing typer (see tuneup.entry).
"""

from __future__ import annotations

from pathlib import Path

from tuneup.errors import UsageError

FORMATS = ("table", "json")
METHODS = ("auto", "netlink", "proc")
MAX_SAMPLE_S = 3600.0


def check(fmt: str, sample: float | None, top: int, method: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}", "--format")
    if method not in METHODS:
        raise UsageError(f"method must be one of {', '.join(METHODS)}, not {method!r}", "--method")
    if sample is not None and not (0 < sample <= MAX_SAMPLE_S):
        raise UsageError(f"must be more than 0 and at most {MAX_SAMPLE_S:g} seconds", "--sample")
    if top < 1:
        raise UsageError("must be at least 1", "--top")


def run(fmt: str = "table", sample: float | None = None, top: int = 20, method: str = "auto",
        owners: bool = True) -> str:
    check(fmt, sample, top, method)
    from tuneup.facts import counters
    from tuneup.facts import sockets_render as render
    from tuneup.facts.sockets import NetlinkUnavailable, census

    first = counters.read_counters() if sample else None
    try:
        c = census(method, top=top, owners=owners)
    except NetlinkUnavailable as exc:
        raise UsageError(f"netlink sock_diag is not available here ({exc}); use --method auto or proc",
                         "--method") from None
    smp = counters.sample(sample, first=first) if sample else None
    cnt = smp.after if smp else counters.read_counters()
    if fmt == "json":
        import json

        return json.dumps(render.to_json_dict(c, cnt, smp), indent=2) + "\n"
    from tuneup.formats.termfit import fit_block, terminal_width

    return fit_block(render.to_table(c, cnt, smp), terminal_width())


class _Parser:
    """argparse with one-line errors (UsageError, exit 2) instead of usage text and exit 2."""

    def __new__(cls):
        import argparse

        class P(argparse.ArgumentParser):
            def error(self, message: str):   # type: ignore[override]
                raise UsageError(message, "sockets")

        p = P(prog="tuneup sockets", add_help=False)
        p.add_argument("--format", "-f", default="table")
        p.add_argument("--sample", type=float, default=None)
        p.add_argument("--top", type=int, default=20)
        p.add_argument("--method", default="auto")
        p.add_argument("--owners", dest="owners", action="store_true", default=True)
        p.add_argument("--no-owners", dest="owners", action="store_false")
        p.add_argument("--output", "-o", type=Path, default=None)
        p.add_argument("--force", action="store_true")
        return p


def fast_main(args: list[str]) -> int:
    ns = _Parser().parse_args(args)
    from tuneup.output import write_output

    write_output(run(ns.format, ns.sample, ns.top, ns.method, ns.owners), ns.output, ns.force)
    return 0
