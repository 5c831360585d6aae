"""The commands other than `audit`: declared here, and registered on the app in tuneup.cli when
this module is first imported (tuneup.cli imports it for any command line but `tuneup audit ...`,
and for `tuneup.cli.app`), so an audit neither imports nor declares their options.

No "from __future__ import annotations" here, as in tuneup.cli: typer reads these annotations.
"""

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tuneup.cli import (AppConfigOpt, ForceOpt, KernelOpt, OutputOpt, ProfileOpt, RamOpt, RulesDirOpt, SampleOpt,
                        ServiceOpt, SetOpt, _book, _check_sample, _progress_bar, _tree_options, parse_sets,
                        rules_app)
from tuneup.cli import _app as app
from tuneup.compat import StrEnum
from tuneup.entry import EXIT_FINDINGS
from tuneup.errors import UsageError
from tuneup.formats import CapacityFormat
from tuneup.output import write_output


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


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
