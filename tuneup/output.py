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
