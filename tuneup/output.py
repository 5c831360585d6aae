"""The one place that writes command output: stdout, or a file through tuneup.safefs.

`-o -`, `-o /dev/stdout` and `-o /dev/stderr` mean this process's own output and are written to its
open descriptors: they are the only symlinks tuneup writes through. Any other path goes through the
write primitive: a regular file is replaced atomically (only with --force when it exists, keeping
its owner and mode), a device or FIFO is written in place, and a symlink, a directory or a missing
parent directory is a one-line error (exit 2).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tuneup import safefs
from tuneup.errors import UsageError
from tuneup.textsafe import printable

OWN_STREAMS = {"-": "stdout", "/dev/stdout": "stdout", "/dev/stderr": "stderr"}


def write_output(text: str, output: Path | None, force: bool) -> None:
    """stdout, or a file written with the write primitive; never clobber a file without --force."""
    stream = None if output is None else OWN_STREAMS.get(str(output))
    if output is None or stream == "stdout":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if stream == "stderr":
        sys.stderr.write(text)
        sys.stderr.flush()
        return
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UsageError(f"the output holds text that cannot be written as UTF-8 ({exc.reason})",
                         printable(str(output))) from None
    safefs.write_file(output, data, force)
