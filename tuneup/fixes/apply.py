"""`tuneup fix --apply` and `tuneup rollback`: the only code that changes the system. The CLI calls
it; nothing else does.

apply is a journal. Before the first change it writes (and syncs) ROOT/var/lib/tuneup/state.json
with everything it is about to change and what was there before: each file's previous bytes
(base64: any encoding, binary included), owner, group and permission bits, or that it will be
created; the directories it will create; and, only when ROOT is `/`, the previous value of every
sysctl it will load. Then each step (a file write, a sysctl write) is followed by a record update.
A crash at any point therefore leaves a record from which `rollback` restores exactly what was
there. Every file is written with tuneup.safefs (atomic, confined under ROOT, no symlinks).

`--root DIR` means the tree: files are written under DIR and nothing is loaded into the running
kernel. Only a plain apply (root `/`) loads sysctls, and in a child network namespace only
per-namespace keys (a netns-scoped rule AND a net.* key).

rollback treats the record as untrusted input: it must be a regular file owned by root and not
writable by group or others; its schema and types are checked; every path must lie in an area
tuneup writes (etc/sysctl.d, etc/security/limits.d, etc/systemd, etc/modprobe.d,
etc/modules-load.d) and is opened confined under ROOT; every sysctl must be a key some rule's fix
writes, with numeric values, and only in a record of a live apply; modes are permission bits only
(no setuid, setgid or sticky).
The record is kept until every step succeeded, so rollback can be re-run; in another network
namespace than the apply's it refuses (exit 2) and keeps the record.

Test hook: TUNEUP_FAULT_STEP=N makes step N (1 = the first record write, then each file write,
sysctl write and record update in order) fail; TUNEUP_FAULT_MODE=raise (default: an I/O error),
enospc (ENOSPC) or kill (SIGKILL of the process).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import errno
import json
import os
import re
import signal
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tuneup import safefs
from tuneup.errors import UsageError
from tuneup.facts.sysctl import key_to_path, parse_value
from tuneup.fixes import FixPlan
from tuneup.fixes.values import SYSCTL_KEY, check, text_of
from tuneup.model import Scope
from tuneup.textsafe import printable

STATE = "var/lib/tuneup/state.json"
MARKER = "Written by tuneup"
STATE_SCHEMA = "tuneup.applied/2"
WRITE_AREAS = ("etc/sysctl.d/", "etc/security/limits.d/", "etc/systemd/", "etc/modprobe.d/", "etc/modules-load.d/")
MAX_RECORD = 64 * 2**20
NUMERIC = re.compile(r"^-?[0-9]{1,20}(?:[ \t]+-?[0-9]{1,20}){0,7}$")
NEVER_KEYS = ("kernel.core_pattern", "kernel.modprobe", "kernel.hotplug", "kernel.poweroff_cmd",
              "kernel.usermodehelper")
FAULT_ENV = "TUNEUP_FAULT_STEP"


@dataclass
class Outcome:
    key: str
    value: str
    status: str          # verified | not verified | needs the host | not loaded | failed
    detail: str = ""


@dataclass
class ApplyResult:
    files: list[tuple[str, str]] = field(default_factory=list)   # (path, "created" | "replaced" | "removed" | "restored" | "failed: ...")
    sysctls: list[Outcome] = field(default_factory=list)
    state: str = ""

    @property
    def ok(self) -> bool:
        return (all(o.status in ("verified", "needs the host", "not loaded") for o in self.sysctls)
                and not any(what.startswith("failed") for _, what in self.files))


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise UsageError(f"{what} changes system files and kernel settings: run it as root (sudo tuneup ...)",
                         "--apply" if what.startswith("fix") else "rollback")


def _state_path(root: Path) -> Path:
    return root / STATE


def _is_live(root: Path) -> bool:
    return root == Path("/")


# -- the record ------------------------------------------------------------------------------------
def sysctl_keys(rules_dirs: Iterable[Path] = ()) -> frozenset[str]:
    """Sysctl keys tuneup may write: those of the rulebook's sysctl fixes, never a command path."""
    from tuneup.rulebook import loader

    book = loader.load(list(rules_dirs))
    return frozenset(r.fix.key for r in book.rules.values()
                     if r.fix and r.fix.kind == "sysctl" and not r.fix.key.startswith(NEVER_KEYS))


def _bad(where: str, what: str) -> UsageError:
    return UsageError(printable(f"invalid apply record: {what}"), printable(where))


def _int(v: object, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def validate_record(data: object, where: str, live: bool, keys: frozenset[str]) -> dict:
    """The record, checked field by field; anything unexpected is a one-line UsageError."""
    if not isinstance(data, dict):
        raise _bad(where, "not a JSON object")
    fields = {"schema", "applied_at", "live", "netns_inode", "complete", "dirs", "files", "sysctls"}
    if set(data) != fields:
        raise _bad(where, "fields must be exactly " + ", ".join(sorted(fields)))
    if data["schema"] != STATE_SCHEMA:
        raise _bad(where, f"$.schema: not {STATE_SCHEMA}")
    if not isinstance(data["applied_at"], str) or len(data["applied_at"]) > 64:
        raise _bad(where, "$.applied_at: not a time")
    if not isinstance(data["live"], bool) or not isinstance(data["complete"], bool):
        raise _bad(where, "$.live and $.complete must be true or false")
    if data["live"] != live:
        raise _bad(where, "$.live: the record is of an apply " + ("to /" if data["live"] else "under --root") +
                   ", not to this root")
    files, dirs, sysctls = data["files"], data["dirs"], data["sysctls"]
    if not isinstance(files, list) or not isinstance(dirs, list) or not isinstance(sysctls, list):
        raise _bad(where, "$.files, $.dirs and $.sysctls must be lists")
    paths = []
    for i, f in enumerate(files):
        at = f"$.files[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("created"), bool) or not isinstance(f.get("done"), bool):
            raise _bad(where, f"{at}: not a file entry")
        want = {"path", "created", "done"} if f["created"] else {"path", "created", "done", "data", "uid", "gid", "mode"}
        if set(f) != want:
            raise _bad(where, f"{at}: fields must be exactly " + ", ".join(sorted(want)))
        _check_path(f["path"], where, f"{at}.path")
        if f["path"] in paths:
            raise _bad(where, f"{at}.path: listed twice")
        paths.append(f["path"])
        if not f["created"]:
            if not isinstance(f["data"], str) or len(f["data"]) > MAX_RECORD:
                raise _bad(where, f"{at}.data: not base64 text")
            try:
                base64.b64decode(f["data"].encode("ascii"), validate=True)
            except (UnicodeEncodeError, binascii.Error, ValueError):
                raise _bad(where, f"{at}.data: not base64 text") from None
            if not _int(f["uid"], 0, 2**32 - 2) or not _int(f["gid"], 0, 2**32 - 2):
                raise _bad(where, f"{at}.uid/gid: not a user/group id")
            if not _int(f["mode"], 0, 0o777):
                raise _bad(where, f"{at}.mode: only permission bits (0..0777, no setuid/setgid/sticky)")
    parents = {"/".join(p.split("/")[:n]) for p in [*paths, STATE] for n in range(1, p.count("/") + 1)}
    for i, d in enumerate(dirs):
        if not isinstance(d, str) or d not in parents:
            raise _bad(where, f"$.dirs[{i}]: not a directory of a path tuneup writes")
        safefs.split_rel(d, where)
    if sysctls and not live:
        raise _bad(where, "$.sysctls: an apply under --root loads no sysctls")
    seen = set()
    for i, s in enumerate(sysctls):
        at = f"$.sysctls[{i}]"
        if not isinstance(s, dict) or set(s) != {"key", "before", "value", "done"}:
            raise _bad(where, f"{at}: fields must be exactly before, done, key, value")
        if not isinstance(s["key"], str) or not SYSCTL_KEY.match(s["key"]) or s["key"] not in keys or s["key"] in seen:
            raise _bad(where, f"{at}.key: {s['key']!r} is not a sysctl tuneup writes")
        seen.add(s["key"])
        for k in ("before", "value"):
            if not isinstance(s[k], str) or not NUMERIC.match(s[k]):
                raise _bad(where, f"{at}.{k}: not a numeric sysctl value")
        if not isinstance(s["done"], bool):
            raise _bad(where, f"{at}.done: not true or false")
    ino = data["netns_inode"]
    if not (_int(ino, 1, 2**64) or (ino is None and not sysctls)):
        raise _bad(where, "$.netns_inode: not a network namespace inode")
    return data


def _check_path(p: object, where: str, at: str) -> None:
    if not isinstance(p, str) or not p.startswith(WRITE_AREAS):
        raise _bad(where, f"{at}: not a path under " + ", ".join(WRITE_AREAS))
    try:
        safefs.split_rel(p, where)
    except UsageError:
        raise _bad(where, f"{at}: {p!r} could leave the root") from None


def _parse_json(raw: bytes, where: str) -> object:
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(where, f"not JSON ({type(exc).__name__})") from None


def _no_constant(name: str) -> object:
    raise ValueError(name)


def load_state(root: Path, keys: frozenset[str] | None = None) -> dict | None:
    """The validated record under root, or None when there is none."""
    where = str(_state_path(root))
    got = safefs.read_under(root, STATE, MAX_RECORD)
    if got is None:
        return None
    raw, st = got
    if st.st_uid != 0:
        raise _bad(where, "not owned by root")
    if st.st_mode & 0o022:
        raise _bad(where, "writable by group or others")
    return validate_record(_parse_json(raw, where), where, _is_live(root), keys if keys is not None else sysctl_keys())


def _write_record(root: Path, state: dict, created: list[str] | None = None) -> None:
    safefs.write_under(root, STATE, (json.dumps(state, indent=1, sort_keys=True) + "\n").encode("utf-8"),
                       force=True, mode=0o600, owner=(0, 0), created=created)


# -- the fault hook (tests) ------------------------------------------------------------------------
class _Steps:
    def __init__(self) -> None:
        self.n = 0
        raw = os.environ.get(FAULT_ENV, "")
        self.fault = int(raw) if raw.isdigit() else 0
        self.mode = os.environ.get("TUNEUP_FAULT_MODE", "raise")

    def next(self) -> int:
        self.n += 1
        if self.n == self.fault:
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "enospc":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise OSError(errno.EIO, f"injected fault at step {self.n}")
        return self.n


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
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise UsageError("not a directory", str(root))
    live = _is_live(root)
    netns = netns_state(proc)[0]
    sp = str(_state_path(root))
    if safefs.probe(root, STATE).st is not None:
        raise UsageError("an earlier apply has not been rolled back (its record is here): run `tuneup rollback"
                         + ("" if live else f" --root {printable(root)}") + "` first", sp)
    overlay = {p: t for p, t in files.items() if p.startswith("etc/")}

    # refuse before changing anything; read what is there now
    entries, dirs = [], []
    for rel in sorted(overlay):
        if not rel.startswith(WRITE_AREAS):
            raise UsageError("not a path tuneup writes", str(root / rel))
        pr = safefs.probe(root, rel)
        dirs += [d for d in pr.missing_dirs if d not in dirs]
        if pr.st is None:
            entries.append({"path": rel, "created": True, "done": False})
            continue
        if not stat.S_ISREG(pr.st.st_mode):
            raise UsageError("not a regular file; refusing to replace it", str(root / rel))
        if not force:
            raise UsageError("exists and was not written by tuneup; pass --force to replace it "
                             "(rollback restores it)", str(root / rel))
        got = safefs.read_under(root, rel)
        if got is None:
            raise UsageError("disappeared while being read; try again", str(root / rel))
        raw, st = got
        if st.st_mode & 0o7000:
            raise UsageError("is setuid, setgid or sticky; refusing to replace it", str(root / rel))
        entries.append({"path": rel, "created": False, "done": False, "data": base64.b64encode(raw).decode("ascii"),
                        "uid": st.st_uid, "gid": st.st_gid, "mode": st.st_mode & 0o777})
    state_dirs = safefs.probe(root, STATE).missing_dirs

    result = ApplyResult(state=sp)
    sysctls = []
    for item in plan.of_kind("sysctl"):
        value = text_of(item.value)
        key = check(SYSCTL_KEY, item.key, "sysctl key")
        if not live:
            result.sysctls.append(Outcome(key, value, "not loaded", "--root: written to the tree only, "
                                          "nothing is loaded into the running kernel"))
            continue
        if not loadable(plan, key, netns):
            why = ("host-global: set it on the host (tuneup fix there, or container/host-only.txt)" if netns == "child" else
                   "host-global, and tuneup cannot tell whether it runs in the host's network namespace")
            result.sysctls.append(Outcome(key, value, "needs the host", why))
            continue
        before = _read_sysctl(key, proc)
        if before is None or not NUMERIC.match(before) or not NUMERIC.match(value):
            result.sysctls.append(Outcome(key, value, "failed", f"{key_to_path(key, proc)} cannot be read as a number"))
            continue
        sysctls.append({"key": key, "before": before, "value": value, "done": False})
    ino = _netns_inode(proc)
    if sysctls and ino is None:
        raise UsageError("cannot tell which network namespace this is; refusing to load sysctls", f"{proc}/self/ns/net")

    state = {"schema": STATE_SCHEMA, "applied_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "live": live, "netns_inode": ino, "complete": False, "dirs": [*state_dirs, *dirs], "files": entries,
             "sysctls": sysctls}
    steps = _Steps()
    made: list[str] = []
    try:
        steps.next()
        _write_record(root, state, made)             # before the first change
    except (OSError, UsageError) as exc:
        for d in reversed(made):                     # the record's own directories, if it got that far
            safefs.rmdir_under(root, d)
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else getattr(exc, "message", str(exc))
        raise UsageError(printable(f"cannot write the apply record ({why}); nothing was changed"), sp) from None
    try:
        for entry in entries:
            rel = entry["path"]
            steps.next()
            what = safefs.write_under(root, rel, overlay[rel].encode("utf-8"), force=True,
                                      mode=0o644 if entry["created"] else None)
            result.files.append((str(root / rel), what))
            entry["done"] = True
            steps.next()
            _write_record(root, state)
        for entry in sysctls:
            steps.next()
            key, value = entry["key"], entry["value"]
            err = _write_sysctl(key, value, proc)
            after = _read_sysctl(key, proc)
            if err:
                result.sysctls.append(Outcome(key, value, "failed", err))
            elif after is not None and parse_value(after) == parse_value(value):
                result.sysctls.append(Outcome(key, value, "verified", f"was {entry['before']}"))
            else:
                result.sysctls.append(Outcome(key, value, "not verified", f"reads back {after!r}"))
            entry["done"] = True
            steps.next()
            _write_record(root, state)
        state["complete"] = True
        steps.next()
        _write_record(root, state)
    except (OSError, UsageError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(printable(f"stopped at step {steps.n}: {why}; what was done is in the record: "
                                   "`tuneup rollback" + ("" if live else f" --root {root}") + "` undoes it"), sp) from None
    return result


def _netns_inode(proc: str) -> int | None:
    try:
        return os.stat(f"{proc}/self/ns/net").st_ino
    except OSError:
        return None


def rollback(root: Path, proc: str = "/proc", rules_dirs: Iterable[Path] = ()) -> ApplyResult:
    from tuneup.facts.host import netns_state

    require_root("rollback")
    root = Path(os.path.abspath(root))
    live = _is_live(root)
    sp = str(_state_path(root))
    state = load_state(root, sysctl_keys(rules_dirs))
    if state is None:
        raise UsageError("nothing to roll back: no record of an apply", sp)
    netns = netns_state(proc)[0]
    if state["sysctls"]:
        here = _netns_inode(proc)
        if here is None or here != state["netns_inode"]:
            raise UsageError("the apply was made in another network namespace: run rollback there "
                             "(the record is kept)", sp)
        if netns != "initial" and any(not s["key"].startswith("net.") for s in state["sysctls"]):
            raise UsageError("the record holds host-global sysctls and this is not the host's network namespace "
                             "(the record is kept)", sp)
    for f in state["files"]:                      # refuse before writing anything
        st = safefs.probe(root, f["path"]).st
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise UsageError("not a regular file any more; refusing to touch it (the record is kept)",
                             printable(str(root / f["path"])))

    result = ApplyResult(state=sp)
    for f in reversed(state["files"]):
        dest = str(root / f["path"])
        try:
            if f["created"]:
                if safefs.remove_under(root, f["path"]):
                    result.files.append((dest, "removed"))
            else:
                safefs.write_under(root, f["path"], base64.b64decode(f["data"]), force=True, mode=f["mode"],
                                   owner=(f["uid"], f["gid"]))
                result.files.append((dest, "restored"))
        except UsageError as exc:
            result.files.append((dest, f"failed: {exc.message}"))
    for s in reversed(state["sysctls"]):
        key, before = s["key"], s["before"]
        now = _read_sysctl(key, proc)
        if now is not None and parse_value(now) == parse_value(before):
            result.sysctls.append(Outcome(key, before, "verified", "unchanged"))
            continue
        err = _write_sysctl(key, before, proc)
        after = _read_sysctl(key, proc)
        if err:
            result.sysctls.append(Outcome(key, before, "failed", err))
        elif after is not None and parse_value(after) == parse_value(before):
            result.sysctls.append(Outcome(key, before, "verified", "restored"))
        else:
            result.sysctls.append(Outcome(key, before, "not verified", f"reads back {after!r}"))
    if not result.ok:
        result.state = sp + " (kept: run rollback again once the failures above are dealt with)"
        return result
    safefs.remove_under(root, STATE)
    for d in reversed(state["dirs"]):
        safefs.rmdir_under(root, d)
    return result


def summary(result: ApplyResult, verb: str) -> str:
    lines = [printable(f"{what:9} {path}") for path, what in result.files]
    for o in result.sysctls:
        lines.append(printable(f"{o.status:15} {o.key} = {o.value}" + (f"  ({o.detail})" if o.detail else "")))
    lines.append(printable(f"{verb}: record {result.state}"))
    return "\n".join(lines) + "\n"
