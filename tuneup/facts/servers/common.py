"""Shared pieces of the server config readers: the Fact builder, process command lines, running tools.

Every fact a server module returns is keyed ``app.<server>.<name>`` and its source names the file
and line that set it ("/etc/nginx/nginx.conf:12"), or "default (...)" when nothing did.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tuneup.errors import UsageError
from tuneup.model import Fact, Value
from tuneup.textsafe import printable

TOOL_TIMEOUT_S = 10
MAX_CONFIG_BYTES = 8 * 2**20     # a config file bigger than this is not a config file


class ConfigError(UsageError):
    """A server's config file could not be read or parsed (bad input: exit 2, file:line).
    Paths and words from the file are escaped: the message is one safe line."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(printable(message), printable(where) if where is not None else None)


def fact(server: str, name: str, value: Value, source: str, error: str | None = None) -> Fact:
    """An app.* fact; text that came from a config file or a process (paths, words) is escaped."""
    key = f"app.{server}.{name}"
    return Fact(key, printable(value) if isinstance(value, str) else value, printable(source), error)


def read_text(path: Path, as_pid: int | None = None, proc: str = "/proc") -> str:
    """A config file's text; not a regular file, too big or unreadable is bad input.

    as_pid: the path came from that process (its command line, its answer): read it only if the
    process's own user could (tuneup runs as root, and any process can name a file it cannot read,
    such as /etc/shadow, hoping for its first line in an error message)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", str(path)) from None
    if as_pid is not None and not readable_by(st, *credentials(as_pid, proc)):
        raise ConfigError(f"not readable by the user of pid {as_pid}: not read", str(path))
    if not path.is_file():
        raise ConfigError("not a regular file", str(path))
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES} bytes: not a config file", str(path))
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", str(path)) from None


def credentials(pid: int, proc: str = "/proc") -> tuple[int | None, set[int]]:
    """(real uid, gids) of a process from /proc/PID/status; (None, set()) if unreadable."""
    uid: int | None = None
    gids: set[int] = set()
    try:
        with open(f"{proc}/{pid}/status", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    uid = int(line.split()[1])
                elif line.startswith("Gid:"):
                    gids.add(int(line.split()[1]))
                elif line.startswith("Groups:"):
                    gids.update(int(g) for g in line.split()[1:])
    except (OSError, ValueError, IndexError):
        return None, set()
    return uid, gids


def readable_by(st: os.stat_result, uid: int | None, gids: set[int]) -> bool:
    """The kernel's permission bits check for reading (ACLs and capabilities other than root's aside)."""
    import stat

    if uid is None:
        return False
    if uid == 0:
        return True
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IRUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IRGRP)
    return bool(st.st_mode & stat.S_IROTH)


def cmdline(pid: int, proc: str = "/proc") -> list[str]:
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as fh:
            raw = fh.read(65536)
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")] if raw else []


def exe(pid: int, proc: str = "/proc") -> str | None:
    """The process's executable (for running the same binary's dump), if it still exists."""
    try:
        path = os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return None
    return path if os.path.isfile(path) else None


def cwd(pid: int, proc: str = "/proc") -> str | None:
    try:
        return os.readlink(f"{proc}/{pid}/cwd")
    except OSError:
        return None


def run_tool(argv: list[str], timeout: float = TOOL_TIMEOUT_S) -> tuple[int, str, str] | None:
    """(exit code, stdout, stderr) of a server's own tool, or None when it cannot run."""
    if not argv or (os.sep not in argv[0] and shutil.which(argv[0]) is None):
        return None
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                            stdin=subprocess.DEVNULL, errors="replace")
    except (OSError, subprocess.SubprocessError):
        return None
    return cp.returncode, cp.stdout, cp.stderr


def nofile_soft(pid: int, proc: str = "/proc") -> int | None:
    """RLIMIT_NOFILE soft of a process (/proc/PID/limits), None if unreadable or unlimited."""
    try:
        with open(f"{proc}/{pid}/limits") as fh:
            for line in fh:
                if line.startswith("Max open files"):
                    soft = line[len("Max open files"):].split()[0]
                    return int(soft) if soft.isdigit() else None
    except OSError:
        return None
    return None


def parse_size(text: str) -> int | None:
    """nginx/haproxy style numbers: 512, 4k, 1m (k/m/g powers of 1024)."""
    t = text.strip().lower()
    mult = {"k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}.get(t[-1:], 1)
    if mult != 1:
        t = t[:-1]
    return int(t) * mult if t.isdigit() else None
