#!/usr/bin/env python3
"""Start-up: `tuneup audit` on this (idle) host against a typer "floor" application.

The floor is generated from the audit command's own signature (every option, its declarations,
type, enum choices and help text) with a body that does nothing, plus the same app settings; it
is what any typer CLI with audit's options pays before doing work: the interpreter, typer's import,
building the command, parsing. tuneup's own work is everything after that (its imports,
collection, rules, evaluation, rendering): whole audit minus the floor.

Targets (issue 15): tuneup's own work <= 0.2x the floor, i.e. the whole `tuneup audit` <= 1.2x.

    python benchmarks/startup_bench.py [--runs 21] [--show-floor] [--instructions]

Commands run alternating, stdout to /dev/null; medians. Other work on the machine shows up as
spread between runs: the script prints the inter-quartile range too. --instructions also counts
the instructions of one run of each under valgrind's callgrind (when valgrind is installed): the
same ratios without the noise of a shared VM (user-space work only; system calls are not counted).
"""

from __future__ import annotations

import argparse
import enum
import inspect
import os
import statistics
import subprocess
import sys
import tempfile
import time
import typing
from pathlib import Path

TARGET_OWN = 0.2
TARGET_WHOLE = 1.2
OPTION_FIELDS = ("help", "show_default", "min", "max", "metavar", "hidden", "case_sensitive")
OPTION_DEFAULTS = {"show_default": True, "case_sensitive": True, "hidden": False, "min": None, "max": None,
                   "metavar": None, "help": None}


def tuneup_cmd() -> list[str]:
    script = Path(sys.executable).parent / "tuneup"
    return [str(script)] if script.exists() else [sys.executable, "-m", "tuneup"]


def _type_src(tp, enums: dict[str, type]) -> str:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return f"Optional[{_type_src(args[0], enums)}]"
    if origin is list:
        return f"list[{_type_src(typing.get_args(tp)[0], enums)}]"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        enums[tp.__name__] = tp
        return tp.__name__
    return tp.__name__


def floor_source(func) -> str:
    """A standalone typer app whose one real command has func's options and does nothing."""
    enums: dict[str, type] = {}
    params = []
    for name, p in inspect.signature(func).parameters.items():
        base, info = typing.get_args(p.annotation)[:2]
        kwargs = [f"{k}={getattr(info, k)!r}" for k in OPTION_FIELDS
                  if getattr(info, k, None) != OPTION_DEFAULTS.get(k)]
        # typer.Option("--long", "-s"): with Annotated the first declaration lands in `default`
        first = [info.default] if isinstance(info.default, str) and info.default.startswith("-") else []
        decls = ", ".join(repr(d) for d in [*first, *info.param_decls])
        default = p.default
        default_src = f"{type(default).__name__}.{default.name}" if isinstance(default, enum.Enum) else repr(default)
        params.append(f"    {name}: Annotated[{_type_src(base, enums)}, typer.Option({decls}, "
                      f"{', '.join(kwargs)})] = {default_src},")
    enum_src = "".join(
        f"class {n}(str, enum.Enum):\n" + "".join(f"    {m.name} = {m.value!r}\n" for m in e) + "\n\n"
        for n, e in enums.items())
    return f'''import enum
from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(name="tuneup", no_args_is_help=True, add_completion=False,
                  context_settings={{"help_option_names": ["-h", "--help"]}}, pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """The floor: typer with audit's options, no work."""


{enum_src}
@app.command()
def audit(
{chr(10).join(params)}
) -> None:
    """Does nothing."""


@app.command()
def other() -> None:
    """A second command, so that audit is a subcommand as in tuneup."""


if __name__ == "__main__":
    import typer.main

    typer.main.get_command(app).main(args=__import__("sys").argv[1:], prog_name="tuneup", standalone_mode=False)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--show-floor", action="store_true")
    ap.add_argument("--instructions", action="store_true", help="also count instructions (callgrind)")
    args = ap.parse_args()
    from tuneup.cli import audit

    src = floor_source(audit)
    if args.show_floor:
        print(src)
        return
    import compileall

    # byte-compile tuneup as an installed wheel has it (PYTHONDONTWRITEBYTECODE may be set in the
    # environment: then every run would compile tuneup's modules from source)
    compileall.compile_dir(str(Path(__file__).resolve().parent.parent / "tuneup"), quiet=1)
    py = sys.executable
    tu = tuneup_cmd()
    with tempfile.TemporaryDirectory(prefix="tuneup-startup-") as tmp:
        floor = Path(tmp) / "floor.py"
        floor.write_text(src)
        opts = ["audit", "-f", "json", "--fail-on", "never"]
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "typer floor (audit's options)": [py, str(floor), *opts],
            "tuneup audit -f json": [*tu, *opts],
            "tuneup audit (table)": [*tu, "audit", "--fail-on", "never"],
        }
        env = dict(os.environ, NO_COLOR="1")
        for cmd in cases.values():              # warm caches; the floor must parse what audit parses
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
            if r.returncode not in (0, 1):
                sys.exit(f"{cmd}: exit {r.returncode}: {r.stderr[-500:]}")
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
                times[name].append(time.perf_counter() - t0)
        counted = _instructions(cases, env) if args.instructions else None
    floor_ms = statistics.median(times["typer floor (audit's options)"])
    print(f"python {sys.version.split()[0]}, {args.runs} alternating runs, load average "
          f"{open('/proc/loadavg').read().split()[0]}")
    print(f"{'command':32} {'median ms':>10} {'IQR ms':>8} {'x floor':>8}")
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=4)
        print(f"{name:32} {statistics.median(ts) * 1000:10.1f} {(q[2] - q[0]) * 1000:8.1f} "
              f"{statistics.median(ts) / floor_ms:8.2f}")
    for name in ("tuneup audit -f json", "tuneup audit (table)"):
        whole = statistics.median(times[name])
        own = whole - floor_ms
        print(f"\n{name}: whole {whole / floor_ms:.2f}x the floor (target <= {TARGET_WHOLE}: "
              f"{'met' if whole / floor_ms <= TARGET_WHOLE else 'NOT met'}); tuneup's own work "
              f"{own * 1000:.1f} ms = {own / floor_ms:.2f}x the floor (target <= {TARGET_OWN}: "
              f"{'met' if own / floor_ms <= TARGET_OWN else 'NOT met'})")

    if counted:
        floor_n = counted["typer floor (audit's options)"]
        print(f"\ninstructions (callgrind, one run each): floor {floor_n / 1e6:.0f}M")
        for name in ("tuneup audit -f json", "tuneup audit (table)"):
            whole = counted[name]
            print(f"{name}: {whole / 1e6:.0f}M, whole {whole / floor_n:.3f}x, tuneup's own work "
                  f"{(whole - floor_n) / 1e6:.0f}M = {(whole - floor_n) / floor_n:.3f}x the floor")


def _instructions(cases: dict[str, list[str]], env: dict[str, str]) -> dict[str, int] | None:
    """Instructions of one run of each case but `python -c pass`, under callgrind."""
    import re
    import shutil

    if shutil.which("valgrind") is None:
        print("valgrind not found: no instruction counts", file=sys.stderr)
        return None
    out = {}
    for name, cmd in cases.items():
        if name == "python -c pass":
            continue
        r = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        m = re.search(r"Collected : (\d+)", r.stderr)
        if m is None:
            sys.exit(f"callgrind gave no count for {name}: {r.stderr[-500:]}")
        out[name] = int(m.group(1))
    return out


if __name__ == "__main__":
    main()
