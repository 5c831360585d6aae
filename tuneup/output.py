"""The one place that writes command output: stdout, or a file replaced atomically."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tuneup.errors import UsageError


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


class open_output:
    """Like write_output, for text written piece by piece (a streamed fleet): stdout, or a temp
    file beside the output renamed over it only when everything was written."""

    def __init__(self, output: Path | None, force: bool) -> None:
        self.output = None if output is None or str(output) == "-" else output
        self.force = force
        self.fh = None
        self.tmp: Path | None = None

    def __enter__(self):
        if self.output is None:
            return sys.stdout
        out = self.output
        if out.exists() and not self.force:
            raise UsageError("file exists; pass --force to overwrite it", str(out))
        if out.parent and not out.parent.is_dir():
            raise UsageError("directory does not exist", str(out.parent))
        self.tmp = out.with_name(f".{out.name}.tuneup-tmp")
        try:
            self.fh = open(self.tmp, "w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write: {exc.strerror}", str(out)) from None
        return self.fh

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.output is None:
            sys.stdout.flush()
            return
        try:
            self.fh.close()
            if exc_type is None:
                os.replace(self.tmp, self.output)
        except OSError as err:
            self.tmp.unlink(missing_ok=True)
            raise UsageError(f"cannot write: {err.strerror}", str(self.output)) from None
        finally:
            if exc_type is not None:
                self.tmp.unlink(missing_ok=True)
