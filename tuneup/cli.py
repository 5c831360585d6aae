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
from tuneup.formats import CapacityFormat, OutputFormat
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


app = typer.Typer(
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


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", "-V", help="Print the version and exit.",
                                          callback=_version, is_eager=True)] = False,
) -> None:
    """Global options (the app's help text is given to typer.Typer above)."""
app.add_typer(rules_app, name="rules")


def app_for(args: list[str]) -> typer.Typer:
    """The app to build for a command line: when its first argument names a command (or the
    `rules` group), the app with only that one, so typer does not build every other command's
    parameters (about 3 ms of each run); the whole app for a bare `tuneup`, global options, shell
    completion or anything that is no command name (click then says what it says for those)."""
    if not args or "_TUNEUP_COMPLETE" in os.environ:
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


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


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
@app.command()
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


@app.command()
def collect(
    output: OutputOpt = None,
    force: ForceOpt = False,
    pid: Annotated[Optional[list[int]], typer.Option("--pid", help="Also record this running process's limits (repeatable).")] = None,
    process: Annotated[Optional[list[str]], typer.Option("--process", help="Also record the limits of running processes with this name (repeatable).")] = None,
    rules_dir: RulesDirOpt = None,
    sample: SampleOpt = None,
    app_config: AppConfigOpt = None,
) -> None:
    """Write a snapshot of this host (JSON) that `audit --snapshot` can audit anywhere.

    Example: tuneup collect --process nginx -o $(hostname).json
    """
    from tuneup import snapshot as snapmod
    from tuneup.facts.collect import collect as do_collect
    from tuneup.facts.collect import resolve_targets

    book = _book(rules_dir)
    _check_sample(sample, live=True)
    from tuneup.facts.servers import parse_app_configs

    snap = do_collect(book.fact_keys(), resolve_targets(pid or (), process or ()), sample=sample,
                      app_configs=parse_app_configs(app_config))
    write_output(snapmod.dumps(snap), output, force)


@app.command()
def diff(
    a: Annotated[Path, typer.Argument(metavar="A", help="Snapshot file.")],
    b: Annotated[Optional[Path], typer.Argument(metavar="B", help="Snapshot file (default: the live host).")] = None,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    rules_dir: RulesDirOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="Output format: table, json or markdown.")] = "table",
    output: OutputOpt = None,
    force: ForceOpt = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Defaults file (default: ./tuneup.toml if present).")] = None,
) -> None:
    """Compare two snapshots (or a snapshot with the live host): differing facts and findings.

    Exit code 0 when nothing differs, 1 when something does (like diff(1)), 2 on bad input.

    Example: tuneup diff before.json after.json
    """
    from tuneup import config as configmod
    from tuneup import diff as diffmod
    from tuneup import run
    from tuneup.formats.diff_view import DiffFormat, format_diff

    try:
        dfmt = DiffFormat(fmt)
    except ValueError:
        raise UsageError(f"unknown format {fmt!r} (choose: {', '.join(DiffFormat)})", "--format") from None
    cfg = configmod.load(config)
    plan = run.plan(profile or cfg.profile, parse_sets(set_), rules_dir or [],
                    config_params=cfg.params, config_where=cfg.path)
    sa = run.obtain_snapshot(plan, a)
    sb = run.obtain_snapshot(plan, b)
    d = diffmod.compare(sa, sb, plan.audit(sa), plan.audit(sb), str(a), str(b) if b else "live host")
    write_output(format_diff(d, dfmt), output, force)
    if not d.empty:
        raise typer.Exit(EXIT_FINDINGS)


@rules_app.command("list")
def rules_list(
    profile: Annotated[Optional[str], typer.Option("--profile", "-p", help="List only the rules this profile audits (default: every rule).")] = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.TABLE,
    rules_dir: RulesDirOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """List rules (of one profile, or all).

    Example: tuneup rules list -p proxy
    """
    from tuneup.formats import catalogue

    book = _book(rules_dir)
    rules = book.rules_for(profile) if profile else list(book.rules.values())
    write_output(catalogue.rules_list(book, rules, fmt.value), output, force)


@rules_app.command("show")
def rules_show(
    rule_id: Annotated[str, typer.Argument(metavar="ID", help="Rule id, e.g. NET-SOMAXCONN.")],
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    rules_dir: RulesDirOpt = None,
) -> None:
    """Everything about one rule, with its threshold evaluated for the profile's parameters.

    Example: tuneup rules show NET-SOMAXCONN --set connections=500000
    """
    from tuneup.formats import catalogue

    book = _book(rules_dir)
    rule = book.rules.get(rule_id.upper())
    if rule is None:
        raise UsageError(f"no rule {rule_id!r} (see `tuneup rules list`)", "ID")
    prof = book.profile(profile or book.default_profile, parse_sets(set_))
    write_output(catalogue.rule_show(book, rule, prof), None, False)


@app.command()
def profiles(
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.TABLE,
    rules_dir: RulesDirOpt = None,
) -> None:
    """List profiles with what they extend and their parameters.

    Example: tuneup profiles -f json
    """
    from tuneup.formats import catalogue

    write_output(catalogue.profiles_list(_book(rules_dir), fmt.value), None, False)


class SocketsFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class SocketsMethod(StrEnum):
    AUTO = "auto"
    NETLINK = "netlink"
    PROC = "proc"


@app.command()
def sockets(
    fmt: Annotated[SocketsFormat, typer.Option("--format", "-f", help="Output format.")] = SocketsFormat.TABLE,
    sample: SampleOpt = None,
    top: Annotated[int, typer.Option("--top", help="How many ephemeral-port destinations to list.")] = 20,
    method: Annotated[SocketsMethod, typer.Option("--method", help="netlink (sock_diag), proc (/proc/net/tcp*, no backlogs) or auto: netlink, else proc.")] = SocketsMethod.AUTO,
    owners: Annotated[bool, typer.Option("--owners/--no-owners", help="Find the pid and name of each listener.")] = True,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Live TCP sockets: states, listeners with their real backlog and queue, ephemeral ports, counters.

    Example: tuneup sockets --sample 5 --top 10
    """
    from tuneup import sockets_cmd

    write_output(sockets_cmd.run(fmt.value, sample, top, method.value, owners), output, force)


@app.command()
def capacity(
    pid: Annotated[Optional[int], typer.Option("--pid", help="The server process whose limits count (default: tuneup's own).")] = None,
    process: Annotated[Optional[str], typer.Option("--process", help="The server process, by name.")] = None,
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    fmt: Annotated[CapacityFormat, typer.Option("--format", "-f", help="Output format.")] = CapacityFormat.TABLE,
    output: OutputOpt = None,
    force: ForceOpt = False,
    rules_dir: RulesDirOpt = None,
    app_config: AppConfigOpt = None,
    connections: Annotated[Optional[int], typer.Option("--connections", "-n", help="Target number of concurrent connections (default: the profile's `connections` parameter); exit code 1 when the binding limit allows fewer.", min=0)] = None,
) -> None:
    """How many concurrent connections each limit allows, and which one binds first.

    Exit code 1 when the binding limit allows fewer connections than the target (--connections,
    else the profile's `connections` parameter), so it can gate a pipeline.

    Example: tuneup capacity --process nginx --connections 200000
    """
    from tuneup import capacity as capmod
    from tuneup.facts import usage
    from tuneup.formats.capacity import render_capacity, short_of_target

    if pid is not None and process is not None:
        raise UsageError("give --pid or --process, not both", "--process")
    book = _book(rules_dir)
    sets = parse_sets(set_)
    if connections is not None:
        sets["connections"] = connections
    prof = book.profile(profile or book.default_profile, sets)
    note = ""
    if process is not None:
        pid, note = usage.find_process(process)
    from tuneup.facts import servers

    app_configs = servers.parse_app_configs(app_config)
    snap = usage.capacity_snapshot(pid)
    if app_configs:
        servers.add_facts(snap, app_configs)
    cap = capmod.model(snap, prof.params, pid, note)
    write_output(render_capacity(cap, fmt), output, force)
    if short_of_target(cap):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def probe(
    connections: Annotated[int, typer.Option("--connections", "-n", help="Connections to open at most.")] = 10000,
    target: Annotated[Optional[str], typer.Option("--target", help="HOST:PORT of your own server on a loopback address (default: a stand-in listener).")] = None,
    rate: Annotated[float, typer.Option("--rate", help="New connections per second.")] = 5000.0,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds a connection attempt may take before it counts as ETIMEDOUT.")] = 5.0,
    fmt: Annotated[CapacityFormat, typer.Option("--format", "-f", help="Output format.")] = CapacityFormat.TABLE,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Open real loopback connections until N or the first failure; compare with the prediction.

    Exit code 1 when fewer than N connections could be opened.

    Example: tuneup probe -n 20000 --rate 2000
    """
    from tuneup import probe as probemod
    from tuneup.formats.capacity import render_probe

    dest = probemod.parse_target(target) if target is not None else None
    probemod.validate(connections, rate, timeout)
    if output is not None and str(output) != "-" and output.exists() and not force:
        raise UsageError("file exists; pass --force to overwrite it", str(output))
    show = _progress_bar("probing")
    try:
        result = probemod.run(connections, dest, rate, timeout, show)
    finally:
        if show is not None:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
    write_output(render_probe(result, fmt), output, force)
    if result.achieved < result.requested:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def fix(
    profile: ProfileOpt = None,
    set_: SetOpt = None,
    service: ServiceOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out-dir", help="Write the config as a root overlay (etc/...) plus apply.sh under this directory.")] = None,
    apply_: Annotated[bool, typer.Option("--apply", help="As root: install the files and load the sysctls, verifying each; with --root, write the files under that tree and load nothing. `tuneup rollback` undoes it.")] = False,
    root: Annotated[Optional[Path], typer.Option("--root", help="Plan from the config files of this filesystem tree (an image, a config repository); with --apply, install the files under it and load nothing into the running kernel.")] = None,
    snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="Plan the fix from this snapshot instead of the live host.")] = None,
    force: ForceOpt = False,
    rules_dir: RulesDirOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Defaults file (default: ./tuneup.toml if present).")] = None,
    kernel: KernelOpt = None,
    ram: RamOpt = None,
    app_config: AppConfigOpt = None,
) -> None:
    """Render (and optionally apply) the config that fixes the failing rules.

    Without --out-dir or --apply the files are printed. Failures that no config can fix are listed
    at the end. Exit code 1 when a sysctl could not be verified after --apply.

    Example: tuneup fix -p web --service nginx.service --out-dir ./tuneup-fix
    """
    from tuneup import config as configmod
    from tuneup import run
    from tuneup.fixes import plan_fixes
    from tuneup.fixes.render import render_files, summary

    cfg = configmod.load(config)
    sets = parse_sets(set_)
    kernel, ram_bytes = _tree_options(root, kernel, ram, sets)
    plan = run.plan(profile or cfg.profile, sets, rules_dir or [], cfg.waivers,
                    config_params=cfg.params, config_where=cfg.path)
    if apply_:
        from tuneup.fixes.apply import require_root

        require_root("fix --apply")
        if snapshot is not None:
            raise UsageError("--apply changes this host; it cannot use a snapshot of another", "--snapshot")
    from tuneup.facts.servers import parse_app_configs
    from tuneup.fixes import servers as server_fixes

    snap = run.obtain_snapshot(plan, snapshot, root=root, service=service, kernel=kernel, ram_bytes=ram_bytes,
                               app_configs=parse_app_configs(app_config))
    report = plan.audit(snap)
    fixplan = plan_fixes(list(plan.book.rules.values()), plan.rules, snap, plan.profile.params, report, service)
    files = render_files(fixplan)
    # the servers' own settings: snippets to review, never part of what --apply installs
    changes = server_fixes.plan(report, snap, plan.profile.params)
    review = server_fixes.render(changes, str(snap.host.get("hostname", "?")), plan.profile.name)
    reviewed = {r for c in changes for r in c.rule.split(", ")}
    if out_dir is not None:
        write_tree({**files, **review}, out_dir, force)
    write_output(_fit(summary(fixplan, files, str(out_dir) if out_dir else None) + server_fixes.summary(review)
                      + _cannot_fix(report, fixplan, reviewed)), None, False)
    if out_dir is None and not apply_:
        from tuneup.textsafe import printable_block

        write_output(printable_block("".join(f"==> {p} <==\n{t}\n" for p, t in sorted({**files, **review}.items()))),
                     None, False)
    if apply_:
        from tuneup.fixes import apply as applymod

        result = applymod.apply(fixplan, files, root or Path("/"), force)
        write_output(applymod.summary(result, "applied"), None, False)
        if not result.ok:
            raise typer.Exit(EXIT_FINDINGS)


@app.command()
def rollback(
    root: Annotated[Optional[Path], typer.Option("--root", help="Undo a `fix --apply --root DIR`: restore the files it changed under this tree (default: /; nothing is loaded into the running kernel for a tree).")] = None,
    rules_dir: RulesDirOpt = None,
) -> None:
    """Undo `tuneup fix --apply`: restore the files and sysctl values it replaced, remove what it created.

    Example: tuneup rollback
    """
    from tuneup.fixes import apply as applymod

    result = applymod.rollback(root or Path("/"), rules_dirs=rules_dir or [])
    write_output(applymod.summary(result, "rolled back"), None, False)
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)


def _cannot_fix(report, fixplan, reviewed: set[str] = frozenset()) -> str:
    """The failures the rendered config does not fix (no config can: MEM-LOAD-FITS-RAM), named;
    `reviewed`: rules a server snippet to review covers."""
    from tuneup.model import Status

    covered = {r for item in fixplan.items for r in item.rules} | {s.rule for s in fixplan.skipped} | set(reviewed)
    left = [f for f in report.findings if f.status is Status.FAIL and f.rule not in covered]
    if not left:
        return ""
    lines = [f"not fixed by this config ({len(left)}): " + ", ".join(sorted({f.rule for f in left}))]
    for f in sorted(left, key=lambda f: (-f.severity, f.rule)):
        lines.append(f"  {f.rule} ({f.severity}): {f.message}"
                     + (f" -- {f.how}" if f.how else " -- no config can fix this; see `tuneup rules show "
                                                      f"{f.rule}`"))
    return "\n".join(lines) + "\n"


def _fit(text: str) -> str:
    """Lines of a text block wrapped to the terminal (continuations indented)."""
    from tuneup.formats.termfit import fit_block, terminal_width
    from tuneup.textsafe import printable_block

    return fit_block(printable_block(text.rstrip("\n")), terminal_width()) + "\n"


def write_tree(files: dict[str, str], out_dir: Path, force: bool) -> None:
    """Files under out_dir by relative path, through the write primitive and confined under out_dir
    (no `..`, no absolute path, no symlinked component); never clobber without --force; scripts 0755."""
    import stat

    from tuneup import safefs

    for rel in files:            # refuse before writing anything
        st = safefs.probe(out_dir, rel).st if out_dir.is_dir() else None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise UsageError("not a regular file (a symbolic link, directory or device); refusing to replace it",
                             str(out_dir / rel))
        if st is not None and not force:
            raise UsageError("file exists; pass --force to overwrite it", str(out_dir / rel))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create directory: {exc.strerror}", str(out_dir)) from None
    for rel, text in sorted(files.items()):
        safefs.write_under(out_dir, rel, text.encode("utf-8"), force=force,
                           mode=0o755 if rel.endswith(".sh") else None)


# -- entry point ---------------------------------------------------------------------------------
