"""Console-script entry point: dispatch, and turn every failure into one line and an exit code.

Most commands go through the typer app in tuneup.cli. `tuneup sockets` has a promise to keep — a
whole process no slower than `ss -tan` on a host with 200K sockets — and importing typer (with
pydantic) and building the app costs more than the census itself, so that one command is parsed
here by a small argparse parser with exactly the typer command's options (a test keeps the two in
step; `tuneup sockets --help` still goes through typer).
"""

from __future__ import annotations

import os
import sys

from tuneup.errors import TuneupError
from tuneup.textsafe import printable

_MAX_MESSAGE = 2000   # characters of one error line; the rest is cut (a hostile value can be long)


def error_line(prefix: str, message: object) -> str:
    """One line whatever the message holds: control characters (newlines, ESC, U+2028, lone
    surrogates) escaped, and cut at a length a terminal can show."""
    text = printable(message)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return f"tuneup: {prefix}{text}"


def _say(line: str) -> None:
    print(line, file=sys.stderr)

EXIT_OK = 0          # nothing at or above --fail-on
EXIT_FINDINGS = 1    # findings at or above --fail-on
EXIT_USAGE = 2       # bad input: rule file, snapshot, option, profile
EXIT_INTERNAL = 3    # a bug in tuneup

FAST_COMMANDS = ("sockets",)


def _dispatch(args: list[str]) -> object:
    if args and args[0] in FAST_COMMANDS and not {"--help", "-h"} & set(args[1:]):
        from tuneup import sockets_cmd

        return sockets_cmd.fast_main(args[1:])
    import typer.main

    from tuneup.cli import app_for

    command = typer.main.get_command(app_for(args))
    # bare `tuneup`: the help, exit 2 (click 8.1 would exit 0, 8.2 raises NoArgsIsHelpError); not when
    # the shell's completion calls tuneup with no arguments and _TUNEUP_COMPLETE set
    if not args and "_TUNEUP_COMPLETE" not in os.environ:
        with command.make_context("tuneup", ["--help"], resilient_parsing=True) as ctx:
            text = command.get_help(ctx)     # typer's rich help prints itself and returns ""
        if text:
            print(text, file=sys.stderr)
        sys.exit(EXIT_USAGE)
    return command.main(args=args, prog_name="tuneup", standalone_mode=False)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line on stderr and a documented exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = _dispatch(args)
    except TuneupError as exc:
        _say(error_line("error: ", exc))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("tuneup: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_OK)
    except Exception as exc:  # noqa: BLE001 - the one place that turns any failure into an exit code
        if hasattr(exc, "exit_code") and hasattr(exc, "format_message"):   # click/typer usage error
            message = exc.format_message().strip()
            if type(exc).__name__ == "NoArgsIsHelpError":   # bare `tuneup`: the help is the message
                if message and "Usage:" not in message:
                    print(message, file=sys.stderr)
                sys.exit(EXIT_USAGE)
            _say(error_line("usage: ", message))
            sys.exit(EXIT_USAGE if exc.exit_code else EXIT_OK)
        if type(exc).__name__ == "Abort":
            print("tuneup: aborted", file=sys.stderr)
            sys.exit(130)
        if os.environ.get("TUNEUP_DEBUG"):
            raise
        _say(error_line("internal error: ", f"{type(exc).__name__}: {exc} (set TUNEUP_DEBUG=1 for a traceback)"))
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else EXIT_OK)
