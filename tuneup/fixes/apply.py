"""`tuneup fix --apply` and `tuneup rollback`: the only code that changes the system. The CLI calls
it; nothing else does.

apply: write the overlay's etc/ files under root, load the sysctls into the running kernel through
/proc/sys, read each back (verified or not), and record in ROOT/var/lib/tuneup/state.json what was
there before: previous file contents (or that a file was created), directories created, and the
previous value of every sysctl written. rollback restores exactly that and removes the record.

In a child network namespace only per-namespace sysctls are loaded: a key must come from a
netns-scoped rule AND be a net.* key (fs.*, vm.*, kernel.* are global even when visible in a
container). Everything else is reported as needing the host and left alone.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from tuneup.errors import UsageError
from tuneup.facts.sysctl import key_to_path, parse_value
from tuneup.fixes import FixPlan
from tuneup.fixes.values import SYSCTL_KEY, check, text_of
from tuneup.model import Scope

STATE = "var/lib/tuneup/state.json"
MARKER = "Written by tuneup"
STATE_SCHEMA = "tuneup.applied/1"


@dataclass
class Outcome:
    key: str
    value: str
    status: str          # verified | not verified | needs the host | failed
    detail: str = ""


@dataclass
class ApplyResult:
    files: list[tuple[str, str]] = field(default_factory=list)   # (path, "created" | "replaced" | "removed" | "restored")
    sysctls: list[Outcome] = field(default_factory=list)
    state: str = ""

    @property
    def ok(self) -> bool:
        return all(o.status in ("verified", "needs the host") for o in self.sysctls)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise UsageError(f"{what} changes system files and kernel settings: run it as root (sudo tuneup ...)",
                         "--apply" if what.startswith("fix") else "rollback")


def _state_path(root: Path) -> Path:
    return root / STATE


def load_state(root: Path) -> dict | None:
    p = _state_path(root)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the apply record: {exc}", str(p)) from None
    if not isinstance(data, dict) or data.get("schema") != STATE_SCHEMA:
        raise UsageError("not a tuneup apply record", str(p))
    return data


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tuneup-tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _mkdirs(path: Path, root: Path) -> list[str]:
    created = []
    missing = []
    p = path
    while not p.exists() and p != root and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
        created.append(str(d.relative_to(root)))
    return created


def loadable(plan: FixPlan, key: str, netns: str) -> bool:
    """May this sysctl be written to the running kernel from the network namespace tuneup runs in
    ("initial", "child" or "unknown")? Outside the initial namespace (or when that is unknown) only
    per-namespace keys: from a netns-scoped rule and under net.* (the plan may come from --root,
    whose own netns says nothing about where tuneup runs)."""
    if netns == "initial":
        return True
    item = next((i for i in plan.of_kind("sysctl") if i.key == key), None)
    return item is not None and item.scope is Scope.NETNS and not item.host_only and key.startswith("net.")


def _read_sysctl(key: str, proc: str) -> str | None:
    try:
        with open(key_to_path(key, proc), encoding="ascii") as fh:
            return " ".join(fh.read().split())
    except OSError:
        return None


def _write_sysctl(key: str, text: str, proc: str) -> str | None:
    try:
        with open(key_to_path(key, proc), "w", encoding="ascii") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def apply(plan: FixPlan, files: dict[str, str], root: Path, force: bool = False, proc: str = "/proc") -> ApplyResult:
    from tuneup.facts.host import netns_state

    require_root("fix --apply")
    netns = netns_state(proc)[0]
    root = root.resolve()
    if not root.is_dir():
        raise UsageError("not a directory", str(root))
    state = load_state(root) or {"schema": STATE_SCHEMA, "files": {}, "dirs": [], "sysctls": {}}
    state["applied_at"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    state.setdefault("netns_inode", _netns_inode(proc))
    overlay = {p: t for p, t in files.items() if p.startswith("etc/")}

    # refuse before changing anything
    for rel in sorted(overlay):
        dest = root / rel
        if dest.exists() and rel not in state["files"] and not force:
            raise UsageError("exists and was not written by tuneup; pass --force to replace it "
                             "(rollback restores it)", str(dest))
        if dest.is_symlink() or (dest.exists() and not dest.is_file()):
            raise UsageError("not a regular file; refusing to replace it", str(dest))

    result = ApplyResult()
    for rel in sorted(overlay):
        dest = root / rel
        if rel not in state["files"]:
            if dest.exists():
                st = dest.stat()
                state["files"][rel] = {"created": False, "previous": dest.read_text(encoding="utf-8", errors="surrogateescape"),
                                       "mode": st.st_mode & 0o7777}
            else:
                state["files"][rel] = {"created": True}
        state["dirs"] += [d for d in _mkdirs(dest.parent, root) if d not in state["dirs"]]
        existed = dest.exists()
        _write(dest, overlay[rel])
        result.files.append((str(dest), "replaced" if existed else "created"))

    for item in plan.of_kind("sysctl"):
        value = text_of(item.value)
        key = check(SYSCTL_KEY, item.key, "sysctl key")
        if not loadable(plan, key, netns):
            why = ("host-global: set it on the host (tuneup fix there, or container/host-only.txt)" if netns == "child" else
                   "host-global, and tuneup cannot tell whether it runs in the host's network namespace")
            result.sysctls.append(Outcome(key, value, "needs the host", why))
            continue
        before = _read_sysctl(key, proc)
        if before is None:
            result.sysctls.append(Outcome(key, value, "failed", f"{key_to_path(key, proc)} cannot be read"))
            continue
        state["sysctls"].setdefault(key, before)
        err = _write_sysctl(key, value, proc)
        after = _read_sysctl(key, proc)
        if err:
            result.sysctls.append(Outcome(key, value, "failed", err))
        elif after is not None and parse_value(after) == parse_value(value):
            result.sysctls.append(Outcome(key, value, "verified", f"was {before}"))
        else:
            result.sysctls.append(Outcome(key, value, "not verified", f"reads back {after!r}"))

    sp = _state_path(root)
    state["dirs"] += [d for d in _mkdirs(sp.parent, root) if d not in state["dirs"]]
    _write(sp, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o600)
    result.state = str(sp)
    return result


def _netns_inode(proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/self/ns/net").st_ino
    except OSError:
        return None


def rollback(root: Path, proc: str = "/proc") -> ApplyResult:
    from tuneup.facts.host import netns_state

    require_root("rollback")
    netns = netns_state(proc)[0]
    root = root.resolve()
    state = load_state(root)
    if state is None:
        raise UsageError("nothing to roll back: no record of an apply", str(_state_path(root)))
    result = ApplyResult()
    for rel, entry in sorted(state.get("files", {}).items()):
        dest = root / rel
        if entry.get("created"):
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            result.files.append((str(dest), "removed"))
        else:
            dest.parent.mkdir(parents=True, exist_ok=True)
            _write(dest, entry["previous"], int(entry.get("mode", 0o644)))
            result.files.append((str(dest), "restored"))
    same_ns = state.get("netns_inode") in (None, _netns_inode(proc))
    for key, before in sorted(state.get("sysctls", {}).items()):
        check(SYSCTL_KEY, key, "sysctl key")
        if not same_ns:
            result.sysctls.append(Outcome(key, before, "failed", "applied in another network namespace: "
                                          "run rollback there"))
            continue
        if netns != "initial" and not key.startswith("net."):
            result.sysctls.append(Outcome(key, before, "needs the host", "not restored from a child namespace"))
            continue
        err = _write_sysctl(key, before, proc)
        after = _read_sysctl(key, proc)
        if err:
            result.sysctls.append(Outcome(key, before, "failed", err))
        elif after is not None and parse_value(after) == parse_value(before):
            result.sysctls.append(Outcome(key, before, "verified", "restored"))
        else:
            result.sysctls.append(Outcome(key, before, "not verified", f"reads back {after!r}"))
    _state_path(root).unlink()
    for d in sorted(state.get("dirs", []), key=lambda x: -x.count("/")):
        try:
            (root / d).rmdir()
        except OSError:
            pass
    result.state = str(_state_path(root))
    return result


def summary(result: ApplyResult, verb: str) -> str:
    lines = [f"{what:9} {path}" for path, what in result.files]
    for o in result.sysctls:
        lines.append(f"{o.status:15} {o.key} = {o.value}" + (f"  ({o.detail})" if o.detail else ""))
    lines.append(f"{verb}: record {result.state}")
    return "\n".join(lines) + "\n"
