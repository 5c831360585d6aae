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
from tuneup.formats.capacity import CapacityFormat
from tuneup.output import write_output

app = typer.Typer(
    name="tuneup",
    help="Audit a Linux host for the limits that decide how many TCP connections it can hold.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="List and explain rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


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
    from tuneup.kdefaults import parse_size

    ram_set = sets.pop("ram_bytes", None) if root is not None else None
    if root is None and (kernel or ram):
        raise UsageError("describes the machine a tree boots on: give --root DIR", "--kernel" if kernel else "--ram")
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
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.TABLE,
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
    jobs: Annotated[Optional[int], typer.Option("--jobs", help="Worker processes for a fleet of snapshots (default: one per idle core, from 200 snapshots).", min=1, max=64)] = None,
) -> None:
    """Audit the live host, a snapshot, a fleet of snapshots, or a filesystem tree against a profile."""
    from tuneup import config as configmod
    from tuneup import engine, run
    from tuneup import waivers as waivermod
    from tuneup.formats import render
    from tuneup.model import Severity

    cfg = configmod.load(config)
    waived = list(cfg.waivers) + [w for path in waivers or [] for w in waivermod.load(path)]
    sets = parse_sets(set_)
    kernel, ram_bytes = _tree_options(root, kernel, ram, sets)
    plan = run.plan(profile or cfg.profile, sets, rules_dir or [], waived,
                    config_params=cfg.params, config_where=cfg.path)
    paths, is_fleet = run.expand_snapshots(snapshot or [])
    _check_sample(sample, live=not paths and root is None)
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

        sink = module(fmt).fleet_sink(color=_color(output), fail_on=threshold)
        try:
            with open_output(output, force) as out:
                summary = run.audit_fleet_stream(plan, paths, sink, threshold, include_host, _progress(len(paths)),
                                                 jobs)
                sink.finish(summary, out)
        finally:
            sink.close()
        if summary.gate:
            raise typer.Exit(EXIT_FINDINGS)
        return
    from tuneup.facts.servers import parse_app_configs

    result = plan.audit(run.obtain_snapshot(plan, paths[0] if paths else None, pid or (), process or (),
                                            root, service, sample, kernel=kernel, ram_bytes=ram_bytes,
                                            app_configs=parse_app_configs(app_config)))
    reports = [result]
    write_output(render(result, fmt, color=_color(output)), output, force)
    level = fail_on.value if fail_on is not None else (cfg.fail_on or FailOn.WARNING.value)
    threshold = None if level == FailOn.NEVER.value else Severity.parse(level)
    if any(engine.failing(r, threshold, include_host) for r in reports):
        raise typer.Exit(EXIT_FINDINGS)


def _check_sample(sample: Optional[float], live: bool) -> None:
    if sample is None:
        return
    from tuneup.sockets_cmd import MAX_SAMPLE_S

    if not live:
        raise UsageError("samples the live host's counters; it cannot be combined with --snapshot or --root",
                         "--sample")
    if not 0 < sample <= MAX_SAMPLE_S:
        raise UsageError(f"must be more than 0 and at most {MAX_SAMPLE_S:g} seconds", "--sample")


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
    pid: PidOpt = None,
    process: ProcessOpt = None,
    rules_dir: RulesDirOpt = None,
    sample: SampleOpt = None,
    app_config: AppConfigOpt = None,
) -> None:
    """Write a snapshot of this host (JSON) that `audit --snapshot` can audit anywhere."""
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
    profile: ProfileOpt = None,
    fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="Output format.")] = ListFormat.TABLE,
    rules_dir: RulesDirOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """List rules (of one profile, or all)."""
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
    """Everything about one rule, with its threshold evaluated for the profile's parameters."""
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
    """List profiles with what they extend and their parameters."""
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
    """Live TCP sockets: states, listeners with their real backlog and queue, ephemeral ports, counters."""
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
) -> None:
    """How many concurrent connections each limit allows, and which one binds first."""
    from tuneup import capacity as capmod
    from tuneup.facts import usage
    from tuneup.formats.capacity import render_capacity

    if pid is not None and process is not None:
        raise UsageError("give --pid or --process, not both", "--process")
    book = _book(rules_dir)
    prof = book.profile(profile or book.default_profile, parse_sets(set_))
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
    """Open real loopback connections until N or the first failure; compare with the prediction."""
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
    root: RootOpt = None,
    snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="Plan the fix from this snapshot instead of the live host.")] = None,
    force: ForceOpt = False,
    rules_dir: RulesDirOpt = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="Defaults file (default: ./tuneup.toml if present).")] = None,
    kernel: KernelOpt = None,
    ram: RamOpt = None,
    app_config: AppConfigOpt = None,
) -> None:
    """Render (and optionally apply) the config that fixes the failing rules.

    Without --out-dir or --apply the files are printed. Exit code 1 when a sysctl could not be verified after --apply.
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
    review = server_fixes.render(server_fixes.plan(report, snap, plan.profile.params),
                                 str(snap.host.get("hostname", "?")), plan.profile.name)
    if out_dir is not None:
        write_tree({**files, **review}, out_dir, force)
    write_output(summary(fixplan, files, str(out_dir) if out_dir else None) + server_fixes.summary(review), None, False)
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
    root: RootOpt = None,
    rules_dir: RulesDirOpt = None,
) -> None:
    """Undo `tuneup fix --apply`: restore the files and sysctl values it replaced, remove what it created."""
    from tuneup.fixes import apply as applymod

    result = applymod.rollback(root or Path("/"), rules_dirs=rules_dir or [])
    write_output(applymod.summary(result, "rolled back"), None, False)
    if not result.ok:
        raise typer.Exit(EXIT_FINDINGS)


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
