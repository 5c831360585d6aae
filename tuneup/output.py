"""The one place that writes command output: stdout, or a file through tuneup.safefs.

`-o -`, `-o /dev/stdout` and `-o /dev/stderr` mean this process's own output and are written to its
open descriptors: they are the only symlinks tuneup writes through. Any other path goes through the
write primitive: a regular file is replaced atomically (only with --force when it exists, keeping
its owner and mode), a device or FIFO is written in place, and a symlink, a directory or a missing
parent directory is a one-line error (exit 2).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

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
    from tuneup import safefs     # only when a file is written: stdout needs none of it

    safefs.write_file(output, data, force)


class open_output:
    """Like write_output, for text written piece by piece (a streamed fleet): stdout, or an
    anonymous spool file written to the target with the same primitive once everything was
    written (memory stays bounded; a failure midway leaves the target untouched)."""

    def __init__(self, output: Path | None, force: bool) -> None:
        self.output = output
        self.force = force
        self.stream = None if output is None else OWN_STREAMS.get(str(output), "")
        self.spool: io.TextIOWrapper | None = None

    def __enter__(self):
        if self.output is None or self.stream == "stdout":
            return sys.stdout
        if self.stream == "stderr":
            return sys.stderr
        _precheck(self.output, self.force)   # refuse before the work, not after it
        import tempfile

        self.spool = io.TextIOWrapper(tempfile.TemporaryFile(), encoding="utf-8", errors="strict")
        return self.spool

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.spool is None:
            (sys.stderr if self.stream == "stderr" else sys.stdout).flush()
            return
        try:
            if exc_type is not None and issubclass(exc_type, UnicodeEncodeError):
                raise exc
            if exc_type is None:
                self.spool.flush()
                raw = self.spool.buffer
                raw.seek(0)
                from tuneup import safefs

                safefs.write_file(self.output, raw, self.force)
        except UnicodeEncodeError as err:
            raise UsageError(f"the output holds text that cannot be written as UTF-8 ({err.reason})",
                             printable(str(self.output))) from None
        finally:
            self.spool.close()


def _precheck(output: Path, force: bool) -> None:
    """The refusals write_file would give at the end (missing directory, existing file without
    --force, a symlink), given before a long streamed run."""
    import os
    import stat

    try:
        st = os.lstat(output)
    except FileNotFoundError:
        if not output.parent.is_dir():
            raise UsageError("directory does not exist", printable(str(output.parent))) from None
        return
    except OSError:
        return   # write_file gives the precise error
    if stat.S_ISLNK(st.st_mode):
        raise UsageError("is a symbolic link; tuneup neither replaces nor follows one (name its target instead)",
                         printable(str(output)))
    if stat.S_ISREG(st.st_mode) and not force:
        raise UsageError("file exists; pass --force to overwrite it", printable(str(output)))
