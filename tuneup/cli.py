"""Command line: parse -> call -> render -> write -> exit code. No /proc, no jinja here.

Deep layers raise TuneupError (bad input, exit 2); anything else is an internal error (exit 3).
Imports of heavy modules happen inside commands so each command pays only for what it uses.
"""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tuneup.errors import TuneupError, UsageError
from tuneup.formats import OutputFormat

EXIT_OK = 0          # nothing at or above --fail-on
EXIT_FINDINGS = 1    # findings at or above --fail-on
EXIT_USAGE = 2       # bad input: rule file, snapshot, option, profile
EXIT_INTERNAL = 3    # a bug in tuneup

app = typer.Typer(
    name="tuneup",
    help="Audit a Linux host for the limits that decide how many TCP connections it can hold.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
rules_app = typer.Typer(help="List and explain rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")


class FailOn(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"
    NEVER = "never"


class ListFormat(enum.StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


# -- shared options ------------------------------------------------------------------------------
ProfileOpt = Annotated[Optional[str], typer.Option("--profile", "-p", help="Profile to audit against (default: web).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a profile parameter: NAME=VALUE (repeatable).")]
RulesDirOpt = Annotated[Optional[list[Path]], typer.Option("--rules-dir", help="Extra directory of rule files (repeatable).")]
OutputOpt = Annotated[Optional[Path], typer.Option("--output", "-o", help="Write to this file instead of stdout.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")]
PidOpt = Annotated[Optional[list[int]], typer.Option("--pid", help="Also audit this running process (repeatable).")]


def parse_sets(items: list[str] | None) -> dict[str, int | float]:
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
        out[name] = value
    return out


def write_output(text: str, output: Path | None, force: bool) -> None:
    """stdout, or a file written atomically (temp file + rename); never clobber without --force."""
    if output is None or str(output) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if output.exists() and not force:
        raise UsageError("file exists; pass --force to overwrite it", str(output))
    if output.parent and not output.parent.is_dir():
        raise UsageError("directory does not exist", str(output.parent))
    tmp = output.with_name(f".{output.name}.tuneup-tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write: {exc.strerror}", str(output)) from None


def _book(rules_dir: list[Path] | None):
    from tuneup.rulebook import loader

    return loader.load(list(rules_dir or []))


# -- commands ------------------------------------------------------------------------------------
@app.command()
def audit(
    profile: ProfileOpt = None,
    fmt: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.TABLE,
    output: OutputOpt = None,
    force: ForceOpt = False,
    fail_on: Annotated[FailOn, typer.Option("--fail-on", help="Lowest severity that makes the exit code 1.")] = FailOn.WARNING,
    set_: SetOpt = None,
    snapshot: Annotated[Optional[Path], typer.Option("--snapshot", help="Audit this snapshot instead of the live host.")] = None,
    rules_dir: RulesDirOpt = None,
    pid: PidOpt = None,
    include_host: Annotated[bool, typer.Option("--include-host", help="In a child network namespace, count failing host-global keys too.")] = False,
) -> None:
    """Audit the live host (or a snapshot) against a profile."""
    from tuneup import engine
    from tuneup.formats import render
    from tuneup.model import Severity

    overrides = parse_sets(set_)
    book = _book(rules_dir)
    prof = book.profile(profile or book.default_profile, overrides)
    rules = book.rules_for(prof.name)
    if snapshot is not None:
        if pid:
            raise UsageError("--pid reads a live process; it cannot be combined with --snapshot", "--pid")
        from tuneup import snapshot as snapmod

        snap = snapmod.load(str(snapshot))
    else:
        from tuneup.facts.collect import collect

        snap = collect(book.fact_keys(), pid or ())
    report = engine.build_report(rules, snap, prof.name, prof.params)
    write_output(render(report, fmt), output, force)
    threshold = None if fail_on is FailOn.NEVER else Severity.parse(fail_on.value)
    if engine.failing(report, threshold, include_host):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def collect(
    output: OutputOpt = None,
    force: ForceOpt = False,
    pid: PidOpt = None,
    rules_dir: RulesDirOpt = None,
) -> None:
    """Write a snapshot of this host (JSON) that `audit --snapshot` can audit anywhere."""
    from tuneup import snapshot as snapmod
    from tuneup.facts.collect import collect as do_collect

    book = _book(rules_dir)
    write_output(snapmod.dumps(do_collect(book.fact_keys(), pid or ())), output, force)


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


# -- entry point ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line on stderr and a documented exit code."""
    args = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=args, prog_name="tuneup", standalone_mode=False)
    except TuneupError as exc:
        print(f"tuneup: error: {exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("tuneup: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into an exit code
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):   # click/typer usage error
            print(f"tuneup: usage: {exc.format_message()}", file=sys.stderr)
            sys.exit(EXIT_USAGE if exc.exit_code else EXIT_OK)
        if type(exc).__name__ == "Abort":
            print("tuneup: aborted", file=sys.stderr)
            sys.exit(130)
        if os.environ.get("TUNEUP_DEBUG"):
            raise
        print(f"tuneup: internal error: {type(exc).__name__}: {exc} (set TUNEUP_DEBUG=1 for a traceback)",
              file=sys.stderr)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
