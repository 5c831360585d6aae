"""Command line: parse -> call -> render -> write -> exit code. No /proc, no jinja here.

Deep layers raise TuneupError (bad input, exit 2); anything else is an internal error (exit 3).
Imports of heavy modules happen inside commands so each command pays only for what it uses.
"""

# No "from __future__ import annotations" here: typer reads these annotations at run time, and
# on Python 3.9 it drops the Annotated metadata of postponed ones.
import os
import sys
from pathlib import Path
from typing import Annotated, Optional, Union

import typer

from tuneup.compat import StrEnum
from tuneup.entry import EXIT_FINDINGS, EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, main  # noqa: F401 (re-exported)
from tuneup.errors import UsageError
from tuneup.formats import OutputFormat
from tuneup.output import write_output
from typer.core import TyperGroup

# Metavars shown in --help instead of Python type names (<str>, <list[Path]>, <bool>).
_METAVARS = {"--set": "NAME=VALUE", "--output": "FILE", "--snapshot": "FILE|DIR|GLOB", "--rules-dir": "DIR",
             "--root": "DIR", "--out-dir": "DIR", "--waivers": "FILE", "--config": "FILE", "--service": "UNIT",
             "--process": "NAME", "--pid": "PID", "--profile": "NAME", "--target": "HOST:PORT",
             "--connections": "N", "--top": "N", "--rate": "PER_S", "--timeout": "SECONDS", "--max-age": "DURATION"}


def _conventional(params) -> None:
    """Help that reads like a Unix tool: flags show no type, values a NAME, choices are listed in
    the help text (where they wrap between words) instead of a <a|b|c> column that breaks mid-word."""
    for p in params:
        if getattr(p, "param_type_name", "") == "argument" and hasattr(p, "display_type_rich"):
            p.display_type_rich = lambda ctx: None     # the metavar (A, ID) names it; no <path> column
        if getattr(p, "param_type_name", "") != "option" or p.metavar is not None:
            continue
        long = next((o for o in p.opts if o.startswith("--")), p.opts[0])
        desc = getattr(p, "type_descriptor", None)    # typer >= 0.24; older typer: click's p.type
        choices = desc.choices if desc is not None else getattr(getattr(p, "type", None), "choices", None)
        kind = getattr(desc, "annotation", None) if desc is not None else None
        if desc is not None and getattr(desc, "is_list", False):
            kind = (getattr(kind, "__args__", None) or (None,))[0]
        kind_name = getattr(kind, "__name__", "") or getattr(getattr(p, "type", None), "name", "")
        if p.is_flag or kind_name in ("bool", "boolean"):
            p.metavar = ""
        elif choices:
            p.metavar = long.lstrip("-").upper()
            listed = ", ".join(str(getattr(c, "value", c)) for c in choices)
            if p.help and listed not in p.help:
                p.help = f"{p.help.rstrip('.')}: {listed}."
        else:
            p.metavar = _METAVARS.get(long, "N" if kind_name in ("int", "integer") else
                                     "SECONDS" if kind_name == "float" else long.lstrip("-").upper())


def _conventional_help(cmd) -> None:
    """A command's --help gets the same treatment (its -h/--help option exists only per context)."""
    plain = cmd.format_help

    def format_help(ctx, formatter) -> None:
        _conventional(cmd.get_params(ctx))
        plain(ctx, formatter)

    cmd.format_help = format_help


class Group(TyperGroup):
    """The app and `rules`: conventional help for their own options and every subcommand's."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _conventional(self.params)
        for cmd in self.commands.values():
            _conventional(cmd.params)
            if not isinstance(cmd, TyperGroup):
                _conventional_help(cmd)

    def format_help(self, ctx, formatter) -> None:
        _conventional(self.get_params(ctx))
        super().format_help(ctx, formatter)


_app = typer.Typer(
    name="tuneup",
    help="Audit a Linux host for the limits that decide how many TCP connections it can hold.\n\n"
         "Start with `tuneup audit`; `tuneup COMMAND --help` shows each command's options and an example. "
         "Shell completion: `tuneup --install-completion` (bash, zsh, fish, PowerShell).",
    cls=Group,
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="List and explain rules.", no_args_is_help=True, cls=Group)


def _version(value: bool) -> None:
    if value:
        from tuneup import __version__

        typer.echo(f"tuneup {__version__}")
        raise typer.Exit(EXIT_OK)


@_app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit.",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    """Global options (the app's help text is given to typer.Typer above)."""
_app.add_typer(rules_app, name="rules")


def _whole() -> typer.Typer:
    """The app with every command: `audit` is declared here, the others in tuneup.commands, which
    registers them on this app when it is first imported."""
    import tuneup.commands  # noqa: F401 (registers its commands on _app)

    return _app


def __getattr__(name: str) -> object:
    """`app` (the whole app), and what tuneup.commands declares, imported on first use (PEP 562):
    `tuneup audit` neither imports nor declares the other commands and their options."""
    if name == "app":
        return _whole()
    if not name.startswith("__"):
        _whole()
        from tuneup import commands

        if hasattr(commands, name):
            return getattr(commands, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def app_for(args: list[str]) -> typer.Typer:
    """The app to build for a command line: when its first argument names a command (or the
    `rules` group), the app with only that one, so typer does not build every other command's
    parameters (about 3 ms of each run); the whole app for a bare `tuneup`, global options, shell
    completion or anything that is no command name (click then says what it says for those).
    `audit` is declared in this module; any other command line imports tuneup.commands first."""
    completing = "_TUNEUP_COMPLETE" in os.environ
    app = _app if args and args[0] == "audit" and not completing else _whole()
    if not args or completing:
        return app
    import copy

    from typer.main import get_command_name

    name = args[0]
    commands = [c for c in app.registered_commands
                if (c.name or get_command_name(c.callback.__name__)) == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if len(commands) + len(groups) != 1:
        return app
    only = copy.copy(app)
    only.registered_commands = commands
    only.registered_groups = groups
    return only


class FailOn(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    NEVER = "never"


# -- shared options ------------------------------------------------------------------------------
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="Profile to audit against (default: web).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a profile parameter: NAME=VALUE (repeatable).")]
RulesDirOpt = Annotated[Optional[list[Path]], typer.Option("--rules-dir", help="Extra directory of rule files (repeatable).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
SampleOpt = Annotated[Optional[float], typer.Option("--sample", help="Read the kernel counters twice, SECONDS apart, and report deltas and rates.", metavar="SECONDS")]
PidOpt = Annotated[Optional[list[int]], typer.Option("--pid", help="Also audit this running process (repeatable).")]
ProcessOpt = Annotated[Optional[list[str]], typer.Option("--process", help="Also audit running processes with this name (repeatable).")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Audit the config files of this filesystem tree (an image, a config repository) instead of the live host.")]
AppConfigOpt = Annotated[Optional[list[str]], typer.Option("--app-config", help="A server's config file: NAME=PATH with NAME nginx, haproxy, redis or beam (vm.args, sys.config or a release directory); repeatable.")]
ServiceOpt = Annotated[Optional[str], typer.Option("--service", help="Audit the open-file limits systemd gives this unit (from its unit files and drop-ins).")]
KernelOpt = Annotated[Optional[str], typer.Option("--kernel", help="With --root: the kernel version X.Y[.Z] the tree boots (default: found in the tree).", metavar="X.Y[.Z]")]
RamOpt = Annotated[Optional[str], typer.Option("--ram", help="With --root: the RAM of the machine the tree boots on (bytes, or 8G, 8GiB, 512M); also --set ram_bytes=N.", metavar="SIZE")]


def _tree_options(root: Optional[Path], kernel: Optional[str], ram: Optional[str],
                  sets: dict[str, Union[int, float]]) -> tuple[Optional[str], Optional[int]]:
    """--kernel and --ram (or --set ram_bytes=) for a tree audit; they mean nothing without --root."""
    ram_set = sets.pop("ram_bytes", None) if root is not None else None
    if root is None and (kernel or ram):
        raise UsageError("describes the machine a tree boots on: give --root DIR", "--kernel" if kernel else "--ram")
    if ram:
        from tuneup.kdefaults import parse_size

    ram_bytes = parse_size(ram, "--ram") if ram else (int(ram_set) if ram_set else None)
    if ram_bytes is not None and ram_bytes <= 0:
        raise UsageError("must be a positive size", "--ram")
    return kernel, ram_bytes


def parse_sets(items: Optional[list[str]]) -> dict[str, Union[int, float]]:
    out: dict[str, int | float] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name, raw = name.strip(), raw.strip().replace("_", "")
        if not sep or not name:
            raise UsageError(f"{item!r}: expected NAME=VALUE", "--set")
        try:
            value: int | float = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                raise UsageError(f"{item!r}: value {raw!r} is not a number", "--set") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise UsageError(f"{item!r}: value must be finite", "--set")
        if value < 0:
            raise UsageError(f"{item!r}: value must not be negative", "--set")
        from tuneup.rulebook.loader import MAX_PARAM

        if value > MAX_PARAM:
            raise UsageError(f"{name}: value must be at most {MAX_PARAM}", "--set")
        out[name] = value
    return out


def _book(rules_dir: Optional[list[Path]]):
    from tuneup.rulebook import loader

    return loader.load(list(rules_dir or []))


# -- commands ------------------------------------------------------------------------------------
@_app.command()
def audit(
    profile: ProfileOpt = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format (default: from the -o file's extension, else table).", show_default=False)] = OutputFormat.TABLE,
    output: OutputOpt = None,
    force: ForceOpt = False,
    fail_on: Annotated[Optional[FailOn], typer.Option("--fail-on", help="Lowest severity that makes the exit code 1 (default: warning, or fail_on from tuneup.toml).", show_default=False)] = None,
    set_: SetOpt = None,
    snapshot: Annotated[Optional[list[Path]], typer.Option("--snapshot", help="Audit this snapshot instead of the live host; repeat it, or give a directory or glob, to audit a fleet.")] = None,
    rules_dir: RulesDirOpt = None,
    pid: PidOpt = None,
    process: ProcessOpt = None,
    include_host: Annotated[bool, typer.Option("--include-host", help="In a child network namespace, count failing host-global keys too.")] = False,
    waivers: Annotated[Optional[list[Path]], typer.Option("--waivers", help="TOML file of waiver entries (rule, reason, expires, hosts); repeatable.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Defaults file with profile, params, fail_on, waivers (default: ./tuneup.toml if present).")] = None,
    root: RootOpt = None,
    service: ServiceOpt = None,
    sample: SampleOpt = None,
    kernel: KernelOpt = None,
    ram: RamOpt = None,
    app_config: AppConfigOpt = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", help="Worker processes for a fleet of snapshots (default: one per idle core, from 200 snapshots).", min=1, max=64, metavar="N")] = None,
    show_all: Annotated[bool, typer.Option("--all", "-a", help="Table: also list the passing and skipped rules (summarized by default).")] = False,
    only_failures: Annotated[bool, typer.Option("--only-failures", help="Table: list only the failures (fail and error), not unknown or waived findings.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Table: print only the failures, one line each, and nothing when all is well; the exit code tells the rest.")] = False,
    max_age: Annotated[Optional[str], typer.Option("--max-age", help="Fail (finding SNAPSHOT-AGE, severity warning) when a snapshot's facts are older than this: 30m, 12h, 7d, 2w.")] = None,
) -> None:
    """Audit the live host, a snapshot, a fleet of snapshots, or a filesystem tree against a profile.

    Exit code 0 when nothing fails at or above --fail-on, 1 when something does, 2 on bad input.
    The table lists the problems (severity first) with how to fix each, then the next commands to run.

    Example: tuneup audit -p web --set connections=200000 --pid $(pidof -s nginx)
    """
    from tuneup import config as configmod
    from tuneup import engine, freshness, run
    from tuneup import waivers as waivermod
    from tuneup.formats import render
    from tuneup.model import Severity

    fmt_given = _given("fmt")
    cfg = configmod.load(config)
    waived = list(cfg.waivers) + [w for path in waivers or [] for w in waivermod.load(path)]
    sets = parse_sets(set_)
    kernel, ram_bytes = _tree_options(root, kernel, ram, sets)
    plan = run.plan(profile or cfg.profile, sets, rules_dir or [], waived,
                    config_params=cfg.params, config_where=cfg.path)
    paths, is_fleet = run.expand_snapshots(snapshot or [])
    _check_sample(sample, live=not paths and root is None)
    fmt = _infer_format(fmt, fmt_given, output)
    age_limit = freshness.parse_duration(max_age) if max_age is not None else None
    if (show_all or only_failures or quiet) and fmt != OutputFormat.TABLE:
        raise UsageError("--all, --only-failures and --quiet shape the table; other formats carry every finding",
                         "--all" if show_all else "--only-failures" if only_failures else "--quiet")
    if is_fleet:
        if root is not None or service:
            raise UsageError("a fleet of snapshots cannot be combined with --root or --service", "--snapshot")
        if pid or process:
            raise UsageError("--pid/--process read live processes; they cannot be combined with --snapshot",
                             "--pid" if pid else "--process")
        level = fail_on.value if fail_on is not None else (cfg.fail_on or FailOn.WARNING.value)
        threshold = None if level == FailOn.NEVER.value else Severity.parse(level)
        from tuneup.formats import module
        from tuneup.output import open_output

        used: set[int] = set()

        def each(report):
            """Per host, as it streams by: the snapshot-age check, and which waivers matched."""
            report = freshness.check_age(report, age_limit) if age_limit is not None else report
            used.update(_waivers_matching(waived, report))
            return report

        sink = module(fmt).fleet_sink(color=_color(output), fail_on=threshold)
        try:
            with open_output(output, force) as out:
                summary = run.audit_fleet_stream(plan, paths, sink, threshold, include_host, _progress(len(paths)),
                                                 jobs, each=each)
                sink.finish(summary, out)
        finally:
            sink.close()
        _warn_unused_waivers(waived, used)
        if summary.gate:
            raise typer.Exit(EXIT_FINDINGS)
        return
    from tuneup.facts.servers import parse_app_configs

    with _countdown(sample):
        snap = run.obtain_snapshot(plan, paths[0] if paths else None, pid or (), process or (),
                                   root, service, sample, kernel=kernel, ram_bytes=ram_bytes,
                                   app_configs=parse_app_configs(app_config))
    result = plan.audit(snap)
    result = freshness.check_age(result, age_limit)
    reports = [result]
    level = fail_on.value if fail_on is not None else (cfg.fail_on or FailOn.WARNING.value)
    threshold = None if level == FailOn.NEVER.value else Severity.parse(level)
    _warn_unused_waivers(waived, _waivers_matching(waived, result))
    # JUnit and SARIF: a failure below --fail-on is not a failure. `never` only keeps the exit code
    # at 0 (pipelines upload the report and decide later), so the reports keep every failure then.
    opts = dict(color=_color(output), fail_on=threshold)
    if fmt == OutputFormat.TABLE and not is_fleet:
        opts.update(show_all=show_all, failures_only=only_failures, quiet=quiet, config=cfg.path,
                    defaults=dict(plan.book.profile(plan.profile.name, {}).params), pid_named=bool(pid or process),
                    fix_command=_fix_command(profile or cfg.profile, set_, paths, root, service, config),
                    width=None if output is None or str(output) == "-" else 100)
    if fmt == OutputFormat.HTML and not is_fleet:
        from tuneup import capacity as capmod

        target_pid = (pid or [None])[0]
        if snap.origin == "live":    # the capacity model's own facts (open fds, memory in use), read now
            from tuneup.facts import usage

            snap = usage.capacity_snapshot(target_pid)
        opts.update(config=cfg.path, defaults=dict(plan.book.profile(plan.profile.name, {}).params),
                    pid_named=bool(pid or process), capacity=capmod.model(snap, plan.profile.params, target_pid),
                    fix_command=_fix_command(profile or cfg.profile, set_, paths, root, service, config))
    write_output(render(result, fmt, **opts), output, force)
    if any(engine.failing(r, threshold, include_host) for r in reports):
        raise typer.Exit(EXIT_FINDINGS)


_EXTENSIONS = {".json": OutputFormat.JSON, ".md": OutputFormat.MARKDOWN, ".markdown": OutputFormat.MARKDOWN,
               ".html": OutputFormat.HTML, ".htm": OutputFormat.HTML, ".xml": OutputFormat.JUNIT,
               ".sarif": OutputFormat.SARIF, ".prom": OutputFormat.PROMETHEUS, ".txt": OutputFormat.TABLE}


def _infer_format(fmt: OutputFormat, given: bool, output: Optional[Path]) -> OutputFormat:
    """-o x.html without -f writes HTML; -f json -o x.html is refused (a file that lies about its
    type breaks whatever opens it). Unknown extensions keep -f (default table)."""
    if output is None or str(output) == "-":
        return fmt
    name = output.name.lower()
    ext = ".sarif" if name.endswith((".sarif", ".sarif.json")) else output.suffix.lower()
    implied = _EXTENSIONS.get(ext)
    if implied is None:
        return fmt
    if not given:
        return implied
    if fmt != implied and not (ext == ".json" and fmt == OutputFormat.SARIF):
        raise UsageError(f"--format {fmt.value} does not match the file name (it says {implied.value}); "
                         "change one of them", str(output))
    return fmt


def _fix_command(profile: Optional[str], sets: Optional[list[str]], paths: list, root: Optional[Path],
                 service: Optional[str], config: Optional[Path]) -> str:
    """The `tuneup fix` command line that plans the fix for what this audit looked at."""
    import shlex

    parts = ["tuneup", "fix"]
    if profile:
        parts += ["-p", profile]
    for item in sets or []:
        parts += ["--set", item]
    if paths:
        parts += ["--snapshot", str(paths[0])]
    if root is not None:
        parts += ["--root", str(root)]
    if service:
        parts += ["--service", service]
    if config is not None:
        parts += ["--config", str(config)]
    return " ".join(shlex.quote(p) for p in parts)


def _waivers_matching(waived, report) -> set[int]:
    """Indexes of the waivers that match a problem finding of this report."""
    host = str(report.host.get("hostname", ""))
    problems = [f.rule for f in report.findings if f.status.value in ("fail", "error", "waived")]
    return {i for i, w in enumerate(waived) if any(w.matches(rule, host) for rule in problems)}


def _warn_unused_waivers(waived, used: set[int]) -> None:
    """A waiver that waives nothing (its rule passes, or its hosts match no audited host) is stale
    or a typo: say so on stderr, once per waiver."""
    from tuneup.textsafe import printable

    for i, w in enumerate(waived):
        if i not in used:
            hosts = f" on hosts {', '.join(w.hosts)}" if w.hosts else ""
            sys.stderr.write(printable(f"tuneup: warning: {w.origin}: waiver for {w.rule}{hosts} matches no "
                                       "failing finding (fixed, or a typo in its rule or hosts?)") + "\n")


class _countdown:
    """`--sample N` on a terminal: "sampling counters: 4 s left" on stderr, once a second, while
    the collection (which waits N seconds between its two reads) runs; erased when it ends."""

    def __init__(self, sample: Optional[float]) -> None:
        import threading

        self.sample = sample if sample and sys.stderr.isatty() else None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True)

    def _tick(self) -> None:
        import time

        end = time.monotonic() + (self.sample or 0)
        while not self.done.is_set():
            left = max(0.0, end - time.monotonic())
            sys.stderr.write(f"\rsampling counters: {left:.0f} s left\x1b[K" if left >= 0.5
                             else "\rsampling counters: reading\x1b[K")
            sys.stderr.flush()
            self.done.wait(min(1.0, left - int(left)) if left >= 1 else 0.5)

    def __enter__(self) -> "_countdown":
        if self.sample:
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.sample:
            self.done.set()
            self.thread.join()
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _check_sample(sample: Optional[float], live: bool) -> None:
    if sample is None:
        return
    from tuneup.sockets_cmd import MAX_SAMPLE_S

    if not live:
        raise UsageError("samples the live host's counters; it cannot be combined with --snapshot or --root",
                         "--sample")
    if not 0 < sample <= MAX_SAMPLE_S:
        raise UsageError(f"must be more than 0 and at most {MAX_SAMPLE_S:g} seconds", "--sample")


def _given(param: str) -> bool:
    """Whether an option was given on the command line (not its default)."""
    try:   # typer >= 0.24 vendors click as typer._click; older typer depends on click
        from typer._click.core import ParameterSource
        from typer._click.globals import get_current_context
    except ImportError:
        from click.core import ParameterSource
        from click.globals import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return True
    return ctx.get_parameter_source(param) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def _color(output: Optional[Path]) -> bool:
    """ANSI colour only for a terminal on stdout, and never when NO_COLOR is set (no-color.org)."""
    if output is not None and str(output) != "-":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"


def _progress(total: int, threshold: int = 20):
    """The fleet's bar: only for many snapshots."""
    return _progress_bar("auditing snapshots") if total >= threshold else None


def _progress_bar(label: str):
    """A one-line progress bar on stderr when it is a terminal; None otherwise (never in the output)."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, n: int) -> None:
        width = 30
        fill = width * min(done, n) // max(n, 1)
        sys.stderr.write(f"\r{label} [{'#' * fill}{'.' * (width - fill)}] {done}/{n}\x1b[K")
        if done >= n:
            sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    return show
