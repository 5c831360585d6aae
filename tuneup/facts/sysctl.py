"""Kernel sysctls from /proc/sys, typed.

A value of whitespace-separated integers becomes an int (one) or a tuple of ints (several:
ip_local_port_range, tcp_rmem, tcp_mem, file-nr); anything else stays a string. A key that does not
exist on this kernel is absent (value None, no error); a key that exists but cannot be read carries
the error instead, so "absent" and "unreadable" never look alike.
"""

from __future__ import annotations

import errno
import os

from tuneup.inputs import read_upto
from tuneup.model import Fact, Value

SYSCTL_PREFIXES = ("net.", "fs.", "kernel.", "vm.", "user.", "abi.", "dev.", "debug.", "crypto.")


def is_sysctl(key: str) -> bool:
    return key.startswith(SYSCTL_PREFIXES)


def key_to_path(key: str, proc: str = "/proc") -> str:
    return f"{proc}/sys/{key.replace('.', '/')}"


def parse_value(text: str) -> Value:
    parts = text.split()
    if not parts:
        return ""
    if any(len(p) > 21 for p in parts):   # no kernel value has more digits than -(2**63)
        return " ".join(parts)
    try:
        nums = tuple(int(p) for p in parts)
    except ValueError:
        return " ".join(parts)
    return nums[0] if len(nums) == 1 else nums


def _read_file(path: str, limit: int = 65536) -> bytes:
    """At most limit bytes of a /proc file (inputs.read_upto: three system calls, not seven)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_upto(fd, limit)
    finally:
        os.close(fd)


def read(key: str, proc: str = "/proc") -> Fact:
    path = key_to_path(key, proc)
    try:
        raw = _read_file(path)
    except FileNotFoundError:
        return Fact(key, None, path)
    except NotADirectoryError:
        return Fact(key, None, path)
    except PermissionError:
        return Fact(key, None, path, error="permission denied")
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return Fact(key, None, path)
        return Fact(key, None, path, error=exc.strerror or str(exc))
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return Fact(key, None, path, error="not ASCII text")
    return Fact(key, parse_value(text), path)


def read_many(keys: list[str] | set[str], proc: str = "/proc") -> dict[str, Fact]:
    return {k: read(k, proc) for k in sorted(keys)}
