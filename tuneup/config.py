"""Project defaults for `tuneup audit`: ./tuneup.toml (or --config FILE).

    profile = "proxy"               # default --profile
    fail_on = "critical"            # default --fail-on: info | warning | critical | never
    waivers = "ops/waivers.toml"    # waiver file(s), relative to this file (string or list)

    [params]                        # default --set values
    connections = 50000

    [[waiver]]                      # waivers may also live here
    rule = "NET-NETDEV-BACKLOG"
    reason = "10G NICs use RPS; tracked in OPS-77"
    expires = 2099-12-31

Options given on the command line win over the file; --set NAME=VALUE wins over [params].
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneup.errors import TuneupError
from tuneup.inputs import loads_toml, read_text
from tuneup.record import FRESH, Frozen
from tuneup.waivers import Waiver
from tuneup.waivers import load as load_waivers
from tuneup.waivers import parse as parse_waivers

DEFAULT_NAME = "tuneup.toml"
FAIL_ON = ("info", "warning", "critical", "never")
_KEYS = {"profile", "fail_on", "params", "waivers", "waiver"}
_set = object.__setattr__   # Config's written-out __init__


class ConfigError(TuneupError):
    kind = "config"


@dataclass(init=False, eq=False, repr=False)
class Config(Frozen):
    """A tuneup.toml: its profile, fail_on, params and waivers (None where it says nothing)."""

    path: str | None = None
    profile: str | None = None
    fail_on: str | None = None
    params: dict[str, int | float] = field(default_factory=dict)
    waivers: tuple[Waiver, ...] = ()

    def __init__(self, path=None, profile=None, fail_on=None, params=FRESH, waivers=()) -> None:
        _set(self, "path", path)
        _set(self, "profile", profile)
        _set(self, "fail_on", fail_on)
        _set(self, "params", {} if params is FRESH else params)
        _set(self, "waivers", waivers)


def _line(text: str, key: str) -> int:
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s.startswith(key) and s[len(key):].lstrip().startswith(("=", "]")) or s == f"[{key}]":
            return n
    return 1


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _read_implicit(cand: Path) -> str | None:
    """./tuneup.toml, read only if it is safe to trust (as git's safe.directory): a regular file
    (a symlink only if that link is ours too) owned by the invoking user or root, not writable by
    group or others. The file is checked through the descriptor it is read from, so it cannot be
    swapped between the check and the read. None when there is no such file."""
    where = str(cand)
    try:
        lst = os.lstat(cand)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where) from None
    how = f"pass it explicitly with --config {where} if you trust it"
    if stat.S_ISLNK(lst.st_mode) and not _trusted(lst.st_uid):
        raise ConfigError(f"not read: a symlink owned by uid {lst.st_uid} (neither you nor root); {how}", where)
    try:
        fd = os.open(cand, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", where) from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if stat.S_ISDIR(st.st_mode):
            return None
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"not read: not a regular file; {how}", where)
        if not _trusted(st.st_uid):
            raise ConfigError(f"not read: owned by uid {st.st_uid} (neither you nor root); {how}", where)
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise ConfigError(f"not read: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}); {how}",
                              where)
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", where) from None


def load(path: Path | None, cwd: Path | None = None) -> Config:
    """--config FILE (must exist, always read), else ./tuneup.toml if present and trusted, else defaults."""
    if path is None:
        cand = (cwd or Path.cwd()) / DEFAULT_NAME
        text = _read_implicit(cand)
        if text is None:
            return Config()
        path = cand
    else:
        text = read_text(path, ConfigError)
    where = str(path)
    data = loads_toml(text, where, ConfigError)
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(_KEYS))})", where)
    return Config(path=where, profile=_profile(data, text, where), fail_on=_fail_on(data, text, where),
                  params=_params(data, text, where), waivers=tuple(_waivers(data, text, where, Path(path))))


def _profile(data: dict[str, Any], text: str, where: str) -> str | None:
    v = data.get("profile")
    if v is not None and (not isinstance(v, str) or not v):
        raise ConfigError("profile must be a profile name", f"{where}:{_line(text, 'profile')}")
    return v


def _fail_on(data: dict[str, Any], text: str, where: str) -> str | None:
    v = data.get("fail_on")
    if v is not None and v not in FAIL_ON:
        raise ConfigError(f"fail_on must be one of {', '.join(FAIL_ON)}, not {v!r}",
                          f"{where}:{_line(text, 'fail_on')}")
    return v


def _params(data: dict[str, Any], text: str, where: str) -> dict[str, int | float]:
    params = data.get("params", {})
    loc = f"{where}:{_line(text, 'params')}"
    if not isinstance(params, dict):
        raise ConfigError("[params] must be a table of NAME = number", loc)
    from tuneup.rulebook.loader import MAX_PARAM

    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= MAX_PARAM:
            raise ConfigError(f"params.{k} must be a number from 0 to {MAX_PARAM}, got {v!r}"[:300], loc)
    return dict(params)


def _waivers(data: dict[str, Any], text: str, where: str, path: Path) -> list[Waiver]:
    out = parse_waivers({"waiver": data.get("waiver", [])}, text, where)
    files = data.get("waivers", [])
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        raise ConfigError("waivers must be a file name or a list of them", f"{where}:{_line(text, 'waivers')}")
    for f in files:
        out += load_waivers(path.parent / f)
    return out
