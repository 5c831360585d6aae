"""Boot-time configuration as the tools that apply it at boot read it.

sysctl.d(5)   systemd-sysctl: /etc, /run, /usr/local/lib, /usr/lib, /lib sysctl.d/*.conf; a file name in
              an earlier directory masks the same name in a later one (a symlink to /dev/null masks it
              away); all files are applied in lexical order of their names; the last assignment of a
              key wins; "-key = v" ignores write errors; a glob key applies to every matching key that
              has no explicit assignment (explicit assignments win whatever the order), and "-key"
              without "=" excludes a key from globs. /etc/sysctl.conf is applied where a sysctl.d
              entry links to it (Debian's 99-sysctl.conf), otherwise after every sysctl.d file (as
              procps `sysctl --system` does).
limits.conf(5) pam_limits: /etc/security/limits.conf, then limits.d/*.conf in lexical order. Login
              sessions only: systemd services never see these.
systemd       system.conf + system.conf.d (DefaultLimitNOFILE=) and a service's unit file + drop-ins
              (LimitNOFILE=); without either, systemd >= 240 gives services 1024 soft / 524288 hard.

Parsers are pure functions over text; the readers take a root directory ("/" for the live host) and
name files relative to it when it is not "/". Every boot value keeps the file and line that set it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from tuneup.errors import TuneupError
from tuneup.model import RLIM_INFINITY, Fact, Value
from tuneup.record import Frozen
from tuneup.rx import lazy
from tuneup.textsafe import printable

_set = object.__setattr__   # the written-out __init__s of the Frozen classes

SYSCTL_DIRS = ("etc/sysctl.d", "run/sysctl.d", "usr/local/lib/sysctl.d", "usr/lib/sysctl.d", "lib/sysctl.d")
SYSCTL_CONF = "etc/sysctl.conf"
LIMITS_CONF = "etc/security/limits.conf"
LIMITS_DIR = "etc/security/limits.d"
SYSTEMD_CONF = "etc/systemd/system.conf"
SYSTEMD_CONF_DIRS = ("etc/systemd/system.conf.d", "run/systemd/system.conf.d",
                     "usr/local/lib/systemd/system.conf.d", "usr/lib/systemd/system.conf.d",
                     "lib/systemd/system.conf.d")
UNIT_DIRS = ("etc/systemd/system", "run/systemd/system", "usr/local/lib/systemd/system",
             "usr/lib/systemd/system", "lib/systemd/system")
SYSTEMD_DEFAULT_NOFILE = (1024, 524288)   # systemd >= 240, for services without LimitNOFILE=


class ConfigFileError(TuneupError):
    kind = "config file"


# ------------------------------------------------------------------------------------------------
# sysctl.d
#
# systemd-sysctl (v252, src/sysctl/sysctl.c, checked against the real binary in tests/offline):
#  - files: *.conf in /etc, /run, /usr/local/lib, /usr/lib, /lib sysctl.d; a name in an earlier
#    directory masks it in later ones, whatever the entry is (a symlink to /dev/null, a dangling
#    symlink); names starting with "." are skipped; sorted by name (strcmp), /etc/sysctl.conf only
#    where a sysctl.d entry links to it.
#  - keys: sysctl_normalize(): if the first separator is "." dots and slashes swap, then
#    path_simplify() and the leading slash dropped; so "/net/core/x" is net.core.x.
#  - one ordered table of keys: a later line with another value (or a "-key" without "=") removes
#    the earlier entry and is appended; a later "-key" therefore cancels an earlier assignment.
#  - apply: each entry in table order; a glob (* ? [) is glob(3) over /proc/sys, so "*" never
#    crosses a "/" (a "." of the dotted key) and never matches a leading "."; a key that has an
#    entry of its own (set or "-key") is never set by a glob.
# procps `sysctl --system` (4.0.2) differs: it reads dot-files too, applies every line in order
# (no cancelling "-key"), and applies /etc/sysctl.conf last even when 99-sysctl.conf links to it.

@dataclass(init=False, eq=False, repr=False)
class Assignment(Frozen):
    """One line of a sysctl.d file. value None: a "-key" line that only excludes key from globs."""

    key: str
    value: str | None
    source: str          # file as shown to the user: "etc/sysctl.d/99-x.conf" or "/etc/sysctl.d/99-x.conf"
    line: int
    ignore_failure: bool = False

    def __init__(self, key, value, source, line, ignore_failure=False) -> None:
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "source", source)
        _set(self, "line", line)
        _set(self, "ignore_failure", ignore_failure)

    @property
    def glob(self) -> bool:
        key = self.key   # a glob as systemd-sysctl reads one: any of * ? [ (as fnmatch)
        return "*" in key or "?" in key or "[" in key

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"

    @property
    def path(self) -> str:
        return sysctl_path(self.key)


def _swap(key: str) -> str:
    return key.translate(str.maketrans("./", "/."))


def _simplify(path: str) -> str:
    lead = path.startswith("/")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    out = ("/" if lead else "") + "/".join(parts)
    return out or ("/" if lead else "")


def sysctl_path(key: str) -> str:
    """systemd's sysctl_normalize(): the key as a path under /proc/sys ("net/core/somaxconn")."""
    key = key.strip()
    i = min((p for p in (key.find("."), key.find("/")) if p >= 0), default=-1)
    if i >= 0 and key[i] == ".":
        key = _swap(key)
    key = _simplify(key)
    if key.startswith("/") and len(key) > 1:
        key = key[1:]
    return key


def normalize_key(key: str) -> str:
    """A key as tuneup names it (dotted; a "." inside a path component shown as "/")."""
    return _swap(sysctl_path(key))


def glob_matches(pattern: str, key: str) -> bool:
    """glob(3) semantics over /proc/sys paths: component by component, "*" never crosses "/",
    and a component starting with "." must be matched by a pattern component starting with "."."""
    pp, kp = sysctl_path(pattern).split("/"), sysctl_path(key).split("/")
    if len(pp) != len(kp):
        return False
    for a, b in zip(pp, kp):
        if b.startswith(".") and not a.startswith("."):
            return False
        if not fnmatchcase(b, a):
            return False
    return True


def parse_sysctl(text: str, source: str) -> list[Assignment]:
    """Assignments of one sysctl.d file, in order. Lines systemd-sysctl ignores (comments, blank,
    malformed) are skipped, as it skips them."""
    out: list[Assignment] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        ignore = key.startswith("-")
        if ignore:
            key = key[1:]
        key = normalize_key(key)
        if not key:
            continue
        if not sep:
            if ignore:   # "-key": exclusion from glob assignments
                out.append(Assignment(key, None, source, n, True))
            continue
        out.append(Assignment(key, value.strip(), source, n, ignore))
    return out


@dataclass(init=False, eq=False, repr=False)
class BootValue(Frozen):
    """What the next boot writes to one key, and every assignment that was considered."""

    key: str
    value: str
    winner: Assignment
    assignments: tuple[Assignment, ...]   # every line that sets it, in file order

    def __init__(self, key, value, winner, assignments) -> None:
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "winner", winner)
        _set(self, "assignments", assignments)

    @property
    def conflict(self) -> bool:
        from tuneup.facts.sysctl import parse_value

        return len({parse_value(a.value or "") for a in self.assignments}) > 1


def table(assignments: list[Assignment]) -> dict[str, Assignment]:
    """systemd-sysctl's ordered option table: path -> the entry that stands, in application order."""
    out: dict[str, Assignment] = {}
    for a in assignments:
        p = a.path
        old = out.get(p)
        if old is not None:
            if old.value == a.value:
                if a.ignore_failure and not old.ignore_failure:
                    out[p] = Assignment(old.key, old.value, old.source, old.line, True)
                continue
            del out[p]
        out[p] = a
    return out


def resolve(assignments: list[Assignment], key: str, applier: str = "systemd",
            tab: dict[str, Assignment] | None = None) -> BootValue | None:
    """The value the next boot gives key, from assignments in file order (systemd-sysctl, or
    procps `sysctl --system` with applier "procps"). tab: table(assignments), when the caller
    resolves many keys over the same assignments."""
    path = sysctl_path(key)
    history = [a for a in assignments if a.value is not None
               and ((not a.glob and a.path == path) or (a.glob and glob_matches(a.key, key)))]
    if applier == "procps":
        if not history:
            return None
        return BootValue(key, history[-1].value or "", history[-1], tuple(history))
    if tab is None:
        tab = table(assignments)
    own = tab.get(path)
    if own is not None and not own.glob:
        if own.value is None:
            return None        # a later "-key" cancelled it, and it keeps globs away
        winner = own
    else:
        winner = None
        for a in tab.values():   # globs in table order: the last write wins
            if a.glob and a.value is not None and glob_matches(a.key, key):
                winner = a
        if winner is None:
            return None
    seen = [a for a in history if not a.glob or own is None]
    return BootValue(key, winner.value or "", winner, tuple(seen))


@dataclass(init=False, eq=False, repr=False)
class ConfFile(Frozen):
    """A config file of a drop-in directory: its basename, where it is read, how findings name it."""

    name: str       # basename: the sort key
    path: Path      # where it is read from (inside root)
    shown: str      # how findings name it

    def __init__(self, name, path, shown) -> None:
        _set(self, "name", name)
        _set(self, "path", path)
        _set(self, "shown", shown)


def _shown(root: Path, rel: str) -> str:
    return "/" + rel if str(root) == "/" else rel


def _inside(root: Path, link: Path) -> Path:
    """Resolve a symlink as if root were /: absolute targets are taken under root."""
    target = os.readlink(link)
    return (root / target.lstrip("/")) if target.startswith("/") else (link.parent / target)


def _name_key(name: str) -> bytes:
    return os.fsencode(name)


def conf_names(root: Path, dirs: tuple[str, ...], suffix: str = ".conf", hidden: bool = False) -> list[tuple[str, str, Path]]:
    """(name, dir, path) of every entry that takes a name in a drop-in directory set (first
    directory wins), whatever it is: a masking symlink, a dangling one, an unreadable file."""
    seen: dict[str, tuple[str, str, Path]] = {}
    for d in dirs:
        base = root / d
        try:
            entries = sorted(os.scandir(base), key=lambda e: _name_key(e.name))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise ConfigFileError("cannot list directory: permission denied", str(base)) from None
        for e in entries:
            if not e.name.endswith(suffix) or e.name in seen or (e.name.startswith(".") and not hidden):
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    continue
            except OSError:
                continue
            seen[e.name] = (e.name, d, Path(e.path))
    return sorted(seen.values(), key=lambda t: _name_key(t[0]))


def conf_files(root: Path, dirs: tuple[str, ...], suffix: str = ".conf", hidden: bool = False) -> list[ConfFile]:
    """Files of a systemd-style drop-in directory set: masking by name in directory order, sorted
    by name. A symlink to /dev/null, a dangling symlink or an empty file masks the name and is left out."""
    out = []
    for name, d, p in conf_names(root, dirs, suffix, hidden):
        if p.is_symlink():
            tgt = os.readlink(p)
            if tgt == "/dev/null":
                continue
            if not _inside(root, p).is_file():
                continue
        elif not p.is_file():
            continue
        out.append(ConfFile(name, p, _shown(root, f"{d}/{name}")))
    return out


def _read(path: Path, shown: str, root: Path) -> str:
    real = _inside(root, path) if path.is_symlink() else path
    try:
        return real.read_bytes().decode("utf-8", "replace")
    except PermissionError:
        raise ConfigFileError("cannot read: permission denied", shown) from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read: {exc.strerror}", shown) from None


def boot_applier(root: Path) -> tuple[str, str]:
    """Which program applies sysctl.d at boot: ("systemd" | "procps", evidence)."""
    for rel in ("lib/systemd/systemd-sysctl", "usr/lib/systemd/systemd-sysctl"):
        if (root / rel).exists() or (root / rel).is_symlink():
            return "systemd", f"{_shown(root, rel)} (systemd-sysctl.service)"
    if str(root) == "/" and Path("/run/systemd/system").is_dir():
        return "systemd", "/run/systemd/system (booted with systemd)"
    if (root / "etc/init.d/procps").is_file():
        return "procps", f"{_shown(root, 'etc/init.d/procps')} (sysctl --system)"
    return "systemd", "no systemd-sysctl and no procps init script found: systemd-sysctl assumed"


def sysctl_files(root: Path, applier: str = "systemd") -> list[ConfFile]:
    """sysctl.d files in application order. systemd: /etc/sysctl.conf only where a sysctl.d entry
    links to it. procps: dot-files too, and /etc/sysctl.conf last in any case."""
    files = conf_files(root, SYSCTL_DIRS, hidden=(applier == "procps"))
    conf = root / SYSCTL_CONF
    if applier == "procps" and conf.is_file():
        files.append(ConfFile("sysctl.conf", conf, _shown(root, SYSCTL_CONF)))
    return files


def sysctl_conf_unlinked(root: Path) -> bool:
    """/etc/sysctl.conf exists but no sysctl.d entry links to it: systemd-sysctl never reads it."""
    conf = root / SYSCTL_CONF
    if not conf.is_file():
        return False
    return not any(f.path.is_symlink() and _same(_inside(root, f.path), conf) for f in conf_files(root, SYSCTL_DIRS))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def sysctl_assignments(root: Path, applier: str = "systemd") -> list[Assignment]:
    out: list[Assignment] = []
    for f in sysctl_files(root, applier):
        out += parse_sysctl(_read(f.path, f.shown, root), f.shown)
    return out


def boot_sysctl(root: Path, keys: set[str] | None = None, applier: str | None = None) -> dict[str, BootValue]:
    """key -> BootValue for the given keys (or every explicit key set in a file), as the tree's
    boot applier (boot_applier()) computes it unless applier is given."""
    applier = applier or boot_applier(root)[0]
    assigns = sysctl_assignments(root, applier)
    if keys is None:
        keys = {a.key for a in assigns if not a.glob and a.value is not None}
    out = {}
    tab = table(assigns)         # the same for every key
    for k in sorted(keys):
        bv = resolve(assigns, k, applier, tab)
        if bv is not None:
            out[k] = bv
    return out


def sysctl_names(root: Path) -> str:
    """Every name in the sysctl.d directories, "/"-separated (a file name never holds "/")."""
    return "/".join(n for n, _, _ in conf_names(root, SYSCTL_DIRS, hidden=True))


# ------------------------------------------------------------------------------------------------
# module-owned keys: they exist only once their module is loaded

MODULE_KEYS = (("net.netfilter.nf_conntrack_", "nf_conntrack"), ("net.nf_conntrack_max", "nf_conntrack"),
               ("net.bridge.", "br_netfilter"), ("net.ipv4.vs.", "ip_vs"))
# modules that load nf_conntrack as a dependency
_PULLS = {"nf_conntrack": ("nf_conntrack", "nf_nat", "xt_conntrack", "xt_state", "nft_ct", "xt_MASQUERADE",
                           "iptable_nat", "nft_nat", "nft_chain_nat", "xt_nat", "nf_tables_inet")}
MODULES_LOAD_DIRS = ("etc/modules-load.d", "run/modules-load.d", "usr/local/lib/modules-load.d",
                     "usr/lib/modules-load.d", "lib/modules-load.d")
UDEV_DIRS = ("etc/udev/rules.d", "run/udev/rules.d", "usr/lib/udev/rules.d", "lib/udev/rules.d")
CONFIG_OPTION = {"nf_conntrack": "CONFIG_NF_CONNTRACK", "br_netfilter": "CONFIG_BRIDGE_NETFILTER", "ip_vs": "CONFIG_IP_VS"}


def module_of(key: str) -> str | None:
    for prefix, mod in MODULE_KEYS:
        if key.startswith(prefix):
            return mod
    return None


def _pulls(mod: str, name: str) -> bool:
    name = name.replace("-", "_")
    return name in _PULLS.get(mod, (mod,)) or (mod == "nf_conntrack" and name.startswith(("nf_conntrack", "nf_nat_")))


def module_at_boot(root: Path, mod: str, release: str | None = None) -> tuple[bool, str]:
    """Is mod loaded before (or re-applied after) systemd-sysctl at boot? (yes/no, where/why)."""
    if release:
        for rel in (f"boot/config-{release}", f"lib/modules/{release}/config", f"usr/lib/modules/{release}/config"):
            try:
                text = (root / rel).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            if re.search(rf"^{CONFIG_OPTION.get(mod, '-')}=y$", text, re.M):
                return True, f"built into the kernel ({_shown(root, rel)})"
            break
    files = conf_files(root, MODULES_LOAD_DIRS)
    modules = root / "etc/modules"
    if modules.is_file() and not any(f.path.is_symlink() and _same(_inside(root, f.path), modules) for f in files):
        files.append(ConfFile("modules", modules, _shown(root, "etc/modules")))
    for f in files:
        for n, line in enumerate(_read(f.path, f.shown, root).splitlines(), 1):
            name = line.split("#", 1)[0].strip()
            if name and not name.startswith(";") and _pulls(mod, name.split()[0]):
                return True, f"{f.shown}:{n} loads {name.split()[0]}"
    for f in conf_files(root, UDEV_DIRS, suffix=".rules"):
        for n, line in enumerate(_read(f.path, f.shown, root).splitlines(), 1):
            if 'SUBSYSTEM=="module"' in line and mod in line and "sysctl" in line:
                return True, f"{f.shown}:{n} re-applies sysctl.d when {mod} loads"
    return False, (f"nothing loads {mod} before systemd-sysctl runs (no modules-load.d entry, no udev rule "
                   f"re-running systemd-sysctl --prefix for it)")


# ------------------------------------------------------------------------------------------------
# tuned: a boot-value source over sysctl.d (tuned/plugins/plugin_sysctl.py, tuned 2.20)
#  tuned.service starts after systemd-sysctl and writes the active profile's [sysctl] values
#  (included profiles first, the profile itself last; "key=>N" sets N only where the value is
#  lower); with reapply_sysctl = 1 (the default, tuned-main.conf) it then re-applies every line of
#  /run/sysctl.d and /etc/sysctl.d (not /usr/lib) in name order and /etc/sysctl.conf, so those win.

TUNED_DIRS = ("etc/tuned", "usr/lib/tuned")


@dataclass(init=False, eq=False, repr=False)
class TunedValue(Frozen):
    """A sysctl key a tuned profile sets (at_least: written key=>N)."""

    key: str
    value: str
    where: str
    at_least: bool = False   # "key=>N"

    def __init__(self, key, value, where, at_least=False) -> None:
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "where", where)
        _set(self, "at_least", at_least)


def tuned_state(root: Path) -> tuple[list[str], str, bool]:
    """(active profiles, why, reapply_sysctl) when tuned runs at boot; ([], why, True) otherwise."""
    try:
        names = (root / "etc/tuned/active_profile").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return [], "no etc/tuned/active_profile", True
    if not names:
        return [], "etc/tuned/active_profile is empty", True
    wants = root / "etc/systemd/system"
    try:
        enabled = [d for d in os.listdir(wants) if d.endswith(".wants")
                   and os.path.lexists(wants / d / "tuned.service")]
    except OSError:
        enabled = []
    if not enabled:
        return [], "tuned.service is not enabled (no etc/systemd/system/*.wants/tuned.service)", True
    reapply = True
    try:
        for line in (root / "etc/tuned/tuned-main.conf").read_text(encoding="utf-8", errors="replace").splitlines():
            k, sep, v = line.split("#", 1)[0].partition("=")
            if sep and k.strip() == "reapply_sysctl":
                reapply = v.strip().lower() not in ("0", "false", "no", "off")
    except OSError:
        pass
    mode = ""
    try:
        mode = (root / "etc/tuned/profile_mode").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        pass
    return names, f"etc/tuned/active_profile ({' '.join(names)}{', ' + mode if mode else ''})", reapply


def _tuned_profile(root: Path, name: str) -> ConfFile | None:
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        return None
    for d in TUNED_DIRS:
        p = root / d / name / "tuned.conf"
        if p.is_file():
            return ConfFile(name, p, _shown(root, f"{d}/{name}/tuned.conf"))
    return None


def tuned_sysctl(root: Path, names: list[str], depth: int = 0, seen: set | None = None) -> list[TunedValue]:
    """[sysctl] values of the profiles in the order tuned applies them (includes first)."""
    seen = set() if seen is None else seen
    out: list[TunedValue] = []
    if depth > 10:
        return out
    for name in names:
        if name in seen:
            continue
        seen.add(name)
        f = _tuned_profile(root, name)
        if f is None:
            continue
        section = ""
        own: list[TunedValue] = []
        includes: list[str] = []
        for n, raw in enumerate(_read(f.path, f.shown, root).splitlines(), 1):
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                continue
            k, sep, v = line.partition("=")
            if not sep:
                continue
            k, v = k.strip(), v.strip()
            if section == "main" and k == "include":
                includes += [x for x in re.split(r"[\s,]+", v) if x and "$" not in x]
            elif section == "sysctl" and "$" not in v:
                at_least = v.startswith(">")
                out_v = v[1:].strip() if at_least else v
                own.append(TunedValue(normalize_key(k), out_v, f"{f.shown}:{n}", at_least))
        out += tuned_sysctl(root, includes, depth + 1, seen) + own
    return out


def tuned_overlay(root: Path, table_: dict[str, BootValue], keys: set[str]) -> tuple[dict[str, BootValue], str]:
    """table_ with tuned's boot writes on top (and the re-applied sysctl.d lines after them)."""
    from tuneup.facts.sysctl import parse_value

    names, why, reapply = tuned_state(root)
    if not names:
        return table_, ""
    values = tuned_sysctl(root, names)
    out = dict(table_)
    for tv in values:
        if tv.key not in keys:
            continue
        prev = out.get(tv.key)
        value = tv.value
        if tv.at_least and prev is not None:
            a, b = parse_value(prev.value), parse_value(tv.value)
            if isinstance(a, int) and isinstance(b, int) and a >= b:
                value = prev.value
        src = Assignment(tv.key, value, tv.where.rsplit(":", 1)[0], int(tv.where.rsplit(":", 1)[1]))
        if value == tv.value:
            out[tv.key] = BootValue(tv.key, value, src, ((prev.assignments if prev else ()) + (src,)))
    if reapply:
        files = conf_files(root, ("run/sysctl.d", "etc/sysctl.d"))
        conf = root / SYSCTL_CONF
        if conf.is_file():
            files.append(ConfFile("sysctl.conf", conf, _shown(root, SYSCTL_CONF)))
        for f in files:
            for a in parse_sysctl(_read(f.path, f.shown, root), f.shown):
                if a.value is None or a.glob or a.key not in keys:
                    continue
                prev = out.get(a.key)
                out[a.key] = BootValue(a.key, a.value, a, ((prev.assignments if prev else ()) + (a,)))
    return out, f"tuned ({why}, reapply_sysctl={'1' if reapply else '0'})"


# ------------------------------------------------------------------------------------------------
# lines the kernel rejects

def rejected(key: str, bv: BootValue, table_: dict[str, BootValue], kernel: tuple[int, ...] | None) -> str | None:
    """Why the kernel refuses the winning value of key with EINVAL, or None."""
    from tuneup.facts.sysctl import parse_value

    v = parse_value(bv.value)
    if key == "net.ipv4.ip_local_port_range":
        if not (isinstance(v, tuple) and len(v) == 2):
            return f"{bv.value!r} is not two port numbers"
        lo, hi = v
        if not (1 <= lo <= 65535 and 1 <= hi <= 65535) or hi < lo:
            return f"{lo} {hi} is not a range of ports (1 to 65535, low end first)"
        if kernel is None or tuple(kernel) >= (4, 11):
            up = table_.get("net.ipv4.ip_unprivileged_port_start")
            start = parse_value(up.value) if up is not None else 1024
            if isinstance(start, int) and lo < start:
                where = up.winner.where if up is not None else "the default 1024"
                return (f"the range starts at {lo}, below ip_unprivileged_port_start {start} ({where}): "
                        "the kernel refuses it with EINVAL since 4.11")
    if key == "net.ipv4.tcp_tw_reuse" and not (isinstance(v, int) and 0 <= v <= 2):
        return f"{bv.value!r} is outside 0..2"
    if key == "net.ipv4.tcp_syncookies" and not (isinstance(v, int) and 0 <= v <= 2):
        return f"{bv.value!r} is outside 0..2"
    if key in ("net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "net.netfilter.nf_conntrack_max") and not (
            isinstance(v, int) and 0 <= v <= 2**31 - 1):
        return f"{bv.value!r} is not an integer from 0 to 2147483647"
    return None


def boot_facts(keys: set[str], root: Path, *, rootfs: bool, kernel: tuple[int, ...] | None = None,
               release: str | None = None) -> dict[str, Fact]:
    """Facts for sysctl keys from the files under root.

    rootfs False (a live audit): boot.KEY = the value the next boot applies (absent when no file
    sets it), boot.conflict.KEY when files disagree. rootfs True (--root): KEY itself is the boot
    value, unknown when no file sets it (the caller fills in the kernel default).
    A line that never applies (a module key whose module is loaded after systemd-sysctl, a value
    the kernel rejects) does not count as the boot value: boot.module_key.KEY / boot.rejected.KEY
    say which line and why. boot.sysctl_names: every file name in the sysctl.d directories (for
    naming the fix file); boot.applier: which program applies them at boot.
    """
    from tuneup.facts.sysctl import parse_value

    applier, evidence = boot_applier(root)
    wanted = set(keys) | {"net.ipv4.ip_unprivileged_port_start"}
    table_ = boot_sysctl(root, wanted, applier)
    table_, tuned = tuned_overlay(root, table_, wanted)
    facts: dict[str, Fact] = {
        "boot.applier": Fact("boot.applier", applier, evidence),
        "boot.sysctl_names": Fact("boot.sysctl_names", sysctl_names(root), "sysctl.d directories"),
    }
    if tuned:
        facts["boot.tuned"] = Fact("boot.tuned", tuned_state(root)[0][-1], tuned)
    if applier == "systemd" and sysctl_conf_unlinked(root):
        conf = root / SYSCTL_CONF
        lines = parse_sysctl(_read(conf, _shown(root, SYSCTL_CONF), root), _shown(root, SYSCTL_CONF))
        sets = [a for a in lines if a.value is not None]
        if sets:
            facts["boot.sysctl_conf_unread"] = Fact(
                "boot.sysctl_conf_unread", printable("; ".join(f"{a.where} sets {a.key} = {a.value}" for a in sets[:5])
                                                     + (f"; and {len(sets) - 5} more" if len(sets) > 5 else "")),
                _shown(root, SYSCTL_CONF))
    modules: dict[str, tuple[bool, str]] = {}
    for k in sorted(keys):
        bv = table_.get(k)
        name = k if rootfs else f"boot.{k}"
        never = None
        if bv is not None:
            mod = module_of(k)
            if mod is not None and "/tuned/" not in bv.winner.source:   # tuned writes after the firewall loaded it
                if mod not in modules:
                    modules[mod] = module_at_boot(root, mod, release)
                ok, why = modules[mod]
                if not ok:
                    never = f"{bv.winner.where} sets {k} = {bv.value}, but {why}: the line is never applied at boot"
                    facts[f"boot.module_key.{k}"] = Fact(f"boot.module_key.{k}", printable(never), bv.winner.where)
            bad = rejected(k, bv, table_, kernel)
            if bad and never is None:
                never = f"this line never applies: {bv.winner.where} sets {k} = {bv.value}, but {bad}"
                facts[f"boot.rejected.{k}"] = Fact(f"boot.rejected.{k}", printable(never), bv.winner.where)
        if bv is None or never is not None:
            if rootfs:
                facts[name] = Fact(name, None, f"sysctl.d under {root}",
                                   error="no sysctl.d line that applies at boot sets it (the kernel default applies)")
            else:
                facts[name] = Fact(name, None, "no sysctl.d line that applies at boot sets it")
            continue
        facts[name] = Fact(name, parse_value(bv.value), bv.winner.where)
        if bv.conflict:
            ck = f"boot.conflict.{k}"
            facts[ck] = Fact(ck, printable("; ".join(f"{a.where} sets {a.value}" for a in bv.assignments)),
                             bv.winner.where)
    return facts


# ------------------------------------------------------------------------------------------------
# limits.conf / limits.d (pam_limits)

LIMIT_ITEMS = {"nofile": "NOFILE", "nproc": "NPROC", "memlock": "MEMLOCK", "stack": "STACK", "as": "AS",
               "core": "CORE", "fsize": "FSIZE", "data": "DATA", "rss": "RSS", "cpu": "CPU",
               "locks": "LOCKS", "sigpending": "SIGPENDING", "msgqueue": "MSGQUEUE", "nice": "NICE",
               "rtprio": "RTPRIO", "maxlogins": "", "maxsyslogins": "", "nonewprivs": "", "priority": "",
               "chroot": ""}
LIMIT_TYPES = ("soft", "hard", "-")
_DOMAIN = lazy(r"^(\*|%?@?[A-Za-z0-9_.][A-Za-z0-9_.$-]*|%|[0-9]*:[0-9]*|@?[0-9]+:?[0-9]*)$")
_LIMIT_VALUE = lazy(r"^(-?[0-9]+|unlimited|infinity|-1)$")


@dataclass(init=False, eq=False, repr=False)
class LimitEntry(Frozen):
    """One line of limits.conf or limits.d: domain, type, item, value, and where it is."""

    domain: str
    type: str       # soft | hard | -
    item: str
    value: str
    where: str

    def __init__(self, domain, type, item, value, where) -> None:
        _set(self, "domain", domain)
        _set(self, "type", type)
        _set(self, "item", item)
        _set(self, "value", value)
        _set(self, "where", where)


def parse_limits(text: str, source: str, strict: bool = False) -> list[LimitEntry]:
    """Entries of a limits.conf(5) file: <domain> <type> <item> <value>; '#' starts a comment.
    strict: a malformed line raises ConfigFileError (used to check what tuneup writes); otherwise it
    is skipped as pam_limits skips it."""
    out: list[LimitEntry] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source}:{n}"
        ok = (len(parts) == 4 and _DOMAIN.match(parts[0]) and parts[1] in LIMIT_TYPES
              and parts[2] in LIMIT_ITEMS and _LIMIT_VALUE.match(parts[3]))
        if not ok:
            if strict:
                raise ConfigFileError(f"not a limits.conf(5) line: {raw.strip()!r}", where)
            continue
        out.append(LimitEntry(parts[0], parts[1], parts[2], parts[3], where))
    return out


def limits_files(root: Path) -> list[ConfFile]:
    files = []
    conf = root / LIMITS_CONF
    if conf.is_file():
        files.append(ConfFile("limits.conf", conf, _shown(root, LIMITS_CONF)))
    return files + conf_files(root, (LIMITS_DIR,))


def _limit_int(text: str, where: str = "") -> int:
    if text in ("unlimited", "infinity", "-1"):
        return RLIM_INFINITY
    if len(text) > 20 or int(text) > RLIM_INFINITY:   # an rlimit is 64 bits
        raise ConfigFileError(f"limit {text[:30]!r} is larger than 2**64-1", where)
    return int(text)


def pam_facts(root: Path, item: str = "nofile") -> dict[str, Fact]:
    """pam.ITEM.soft / pam.ITEM.hard: what a login of an ordinary user gets from the wildcard
    domain (last entry wins), or the last entry for any domain when no wildcard entry sets it.
    Absent when nothing sets it."""
    entries: list[LimitEntry] = []
    for f in limits_files(root):
        entries += [e for e in parse_limits(_read(f.path, f.shown, root), f.shown) if e.item == item]
    facts = {}
    for which in ("soft", "hard"):
        key = f"pam.{item}.{which}"
        hits = [e for e in entries if e.type in (which, "-")]
        wild = [e for e in hits if e.domain == "*"]
        e = (wild or hits or [None])[-1]
        if e is None:
            facts[key] = Fact(key, None, "no limits.conf or limits.d entry")
        else:
            src = e.where if e.domain == "*" else f"{e.where} (domain {e.domain})"
            facts[key] = Fact(key, _limit_int(e.value, e.where), src)
    return facts


# ------------------------------------------------------------------------------------------------
# systemd: system.conf DefaultLimitNOFILE=, unit LimitNOFILE=

def parse_unit(text: str, source: str) -> list[tuple[str, str, str, str]]:
    """(section, key, value, where) of a systemd INI file; trailing backslash continues a line."""
    out = []
    section = ""
    lines = text.splitlines()
    n = 0
    while n < len(lines):
        start = n + 1
        line = lines[n].strip()
        n += 1
        while line.endswith("\\") and n < len(lines):
            line = line[:-1] + " " + lines[n].strip()
            n += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        key, sep, value = line.partition("=")
        if sep:
            out.append((section, key.strip(), value.strip(), f"{source}:{start}"))
    return out


def parse_rlimit(value: str, where: str) -> tuple[int, int] | None:
    """systemd.exec(5) LimitNOFILE=: "N", "soft:hard", "infinity"; "" resets (None)."""
    if value == "":
        return None
    parts = value.split(":")
    if len(parts) > 2:
        raise ConfigFileError(f"bad limit value {value!r}", where)
    try:
        nums = [RLIM_INFINITY if p.strip() == "infinity" else int(p.strip()) for p in parts]
    except ValueError:
        raise ConfigFileError(f"bad limit value {value[:60]!r}", where) from None
    if any(not 0 <= x <= RLIM_INFINITY for x in nums):
        raise ConfigFileError(f"bad limit value {value[:60]!r}: not from 0 to 2**64-1", where)
    return (nums[0], nums[-1])


def _last_setting(files: list[ConfFile], root: Path, section: str, key: str) -> tuple[tuple[int, int], str] | None:
    found: tuple[tuple[int, int], str] | None = None
    for f in files:
        for sec, k, v, where in parse_unit(_read(f.path, f.shown, root), f.shown):
            if sec == section and k == key:
                val = parse_rlimit(v, where)
                found = None if val is None else (val, where)
    return found


def _file(root: Path, rel: str) -> list[ConfFile]:
    p = root / rel
    return [ConfFile(Path(rel).name, p, _shown(root, rel))] if p.is_file() else []


def manager_default(root: Path, name: str = "NOFILE", systemd: int | None = None) -> tuple[tuple[int, int], str]:
    files = _file(root, SYSTEMD_CONF) + conf_files(root, SYSTEMD_CONF_DIRS)
    hit = _last_setting(files, root, "Manager", f"DefaultLimit{name}")
    if hit:
        return hit
    from tuneup.kdefaults import systemd_nofile_default

    return systemd_nofile_default(systemd)


UNIT_NAME_MAX = 255   # systemd's UNIT_NAME_MAX (256 with the NUL; src/basic/unit-name.h)


def unit_name(service: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9:_.\\@-]+", service):
        raise ConfigFileError(f"not a valid unit name: {service!r}", "--service")
    if len(service if "." in service else f"{service}.service") > UNIT_NAME_MAX:
        raise ConfigFileError(f"not a valid unit name: longer than {UNIT_NAME_MAX} characters", "--service")
    return service if "." in service else f"{service}.service"


def unit_files(root: Path, unit: str) -> list[ConfFile]:
    """The unit file (first in search-path order) then its drop-ins (NAME.d and the type-wide
    service.d), masked by name and sorted by name."""
    main = []
    for d in UNIT_DIRS:
        p = root / d / unit
        if p.is_file() or p.is_symlink():
            if p.is_symlink() and os.readlink(p) == "/dev/null":
                break
            main = [ConfFile(unit, p, _shown(root, f"{d}/{unit}"))]
            break
    kind = unit.rsplit(".", 1)[-1]
    dropins = conf_files(root, tuple(f"{d}/{kind}.d" for d in UNIT_DIRS) + tuple(f"{d}/{unit}.d" for d in UNIT_DIRS))
    return main + dropins


def service_limit_facts(root: Path, service: str | None, name: str = "nofile",
                        systemd: int | None = None) -> tuple[dict[str, Fact], str]:
    """rlimit.nofile.soft/hard as systemd would give the service (or any service, without one),
    from its unit and drop-ins, else DefaultLimitNOFILE, else systemd's default; plus a label."""
    upper = name.upper()
    if service:
        unit = unit_name(service)
        hit = _last_setting(unit_files(root, unit), root, "Service", f"Limit{upper}")
        label = f"{unit} (from its unit files)"
    else:
        hit, label = None, "any systemd service (DefaultLimitNOFILE; give --service NAME for one unit)"
    (soft, hard), where = hit or manager_default(root, upper, systemd)
    facts = {f"rlimit.{name}.soft": Fact(f"rlimit.{name}.soft", soft, where),
             f"rlimit.{name}.hard": Fact(f"rlimit.{name}.hard", hard, where)}
    if service:
        facts["service.unit"] = Fact("service.unit", unit_name(service), "--service")
    return facts, label


def snapshot_facts(root: Path, sysctl_keys: set[str], service: str | None, *, rootfs: bool,
                   systemd: int | None = None, kernel: tuple[int, ...] | None = None,
                   release: str | None = None) -> tuple[dict[str, Fact], str]:
    """Everything the config files under root say: sysctl boot values, PAM and systemd limits.

    With a service (or for a tree, where there is no live process), rlimit.nofile.* are what systemd
    gives that service (or any service); the label says whose limits they are."""
    try:
        facts = boot_facts(sysctl_keys, root, rootfs=rootfs, kernel=kernel, release=release)
        facts.update(pam_facts(root))
        label = ""
        if rootfs or service:
            lim, label = service_limit_facts(root, service, systemd=systemd)
            facts.update(lim)
    except PermissionError as exc:
        raise ConfigFileError("cannot read: permission denied", exc.filename or str(root)) from None
    return facts, label


def value_text(v: Value) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
