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
_GLOB = re.compile(r"[*?\[]")


class ConfigFileError(TuneupError):
    kind = "config file"


# ------------------------------------------------------------------------------------------------
# sysctl.d

@dataclass(frozen=True)
class Assignment:
    """One line of a sysctl.d file. value None: a "-key" line that only excludes key from globs."""

    key: str
    value: str | None
    source: str          # file as shown to the user: "etc/sysctl.d/99-x.conf" or "/etc/sysctl.d/99-x.conf"
    line: int
    ignore_failure: bool = False

    @property
    def glob(self) -> bool:
        return bool(_GLOB.search(self.key))

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def normalize_key(key: str) -> str:
    """sysctl.d(5): if the first separator is a slash, dots and slashes are interchanged."""
    key = key.strip()
    i = min((p for p in (key.find("."), key.find("/")) if p >= 0), default=-1)
    if i >= 0 and key[i] == "/":
        key = key.translate(str.maketrans("./", "/."))
    return key


def parse_sysctl(text: str, source: str) -> list[Assignment]:
    """Assignments of one sysctl.d file, in order. Lines systemd-sysctl ignores (comments, blank,
    malformed) are skipped, as it skips them."""
    out: list[Assignment] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        ignore = line.startswith("-")
        if ignore:
            line = line[1:].lstrip()
        key, sep, value = line.partition("=")
        key = normalize_key(key)
        if not key:
            continue
        if not sep:
            if ignore:   # "-key": exclusion from glob assignments
                out.append(Assignment(key, None, source, n, True))
            continue
        out.append(Assignment(key, value.strip(), source, n, ignore))
    return out


@dataclass(frozen=True)
class BootValue:
    """What the next boot writes to one key, and every assignment that was considered."""

    key: str
    value: str
    winner: Assignment
    assignments: tuple[Assignment, ...]   # in the order they are applied (winner last)

    @property
    def conflict(self) -> bool:
        from tuneup.facts.sysctl import parse_value

        return len({parse_value(a.value or "") for a in self.assignments}) > 1


def resolve(assignments: list[Assignment], key: str) -> BootValue | None:
    """The value the next boot gives key, from assignments in application order."""
    explicit = [a for a in assignments if not a.glob and a.key == key]
    chosen = [a for a in explicit if a.value is not None]
    if not explicit:   # globs only apply to keys with no explicit line (set or excluded)
        chosen = [a for a in assignments if a.glob and a.value is not None and fnmatchcase(key, a.key)]
    if not chosen:
        return None
    return BootValue(key, chosen[-1].value or "", chosen[-1], tuple(chosen))


@dataclass(frozen=True)
class ConfFile:
    name: str       # basename: the sort key
    path: Path      # where it is read from (inside root)
    shown: str      # how findings name it


def _shown(root: Path, rel: str) -> str:
    return "/" + rel if str(root) == "/" else rel


def _inside(root: Path, link: Path) -> Path:
    """Resolve a symlink as if root were /: absolute targets are taken under root."""
    target = os.readlink(link)
    return (root / target.lstrip("/")) if target.startswith("/") else (link.parent / target)


def conf_files(root: Path, dirs: tuple[str, ...], suffix: str = ".conf") -> list[ConfFile]:
    """Files of a systemd-style drop-in directory set: masking by name in directory order, sorted
    by name. A file that is a symlink to /dev/null (or empty) masks the name and is left out."""
    seen: dict[str, ConfFile | None] = {}
    for d in dirs:
        base = root / d
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise ConfigFileError("cannot list directory: permission denied", str(base)) from None
        for e in entries:
            if not e.name.endswith(suffix) or e.name in seen:
                continue
            p = Path(e.path)
            if p.is_symlink():
                tgt = os.readlink(p)
                if tgt == "/dev/null":
                    seen[e.name] = None
                    continue
            if not (p.is_file() or (p.is_symlink() and _inside(root, p).is_file())):
                continue
            seen[e.name] = ConfFile(e.name, p, _shown(root, f"{d}/{e.name}"))
    return sorted((f for f in seen.values() if f is not None), key=lambda f: f.name)


def _read(path: Path, shown: str, root: Path) -> str:
    real = _inside(root, path) if path.is_symlink() else path
    try:
        return real.read_bytes().decode("utf-8", "replace")
    except PermissionError:
        raise ConfigFileError("cannot read: permission denied", shown) from None
    except OSError as exc:
        raise ConfigFileError(f"cannot read: {exc.strerror}", shown) from None


def sysctl_files(root: Path) -> list[ConfFile]:
    """sysctl.d files in application order; /etc/sysctl.conf last unless a sysctl.d entry links to it."""
    files = conf_files(root, SYSCTL_DIRS)
    conf = root / SYSCTL_CONF
    if conf.is_file():
        linked = any(f.path.is_symlink() and _same(_inside(root, f.path), conf) for f in files)
        if not linked:
            files.append(ConfFile("sysctl.conf", conf, _shown(root, SYSCTL_CONF)))
    return files


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def sysctl_assignments(root: Path) -> list[Assignment]:
    out: list[Assignment] = []
    for f in sysctl_files(root):
        out += parse_sysctl(_read(f.path, f.shown, root), f.shown)
    return out


def boot_sysctl(root: Path, keys: set[str] | None = None) -> dict[str, BootValue]:
    """key -> BootValue for the given keys (or every explicit key set in a file)."""
    assigns = sysctl_assignments(root)
    if keys is None:
        keys = {a.key for a in assigns if not a.glob and a.value is not None}
    out = {}
    for k in sorted(keys):
        bv = resolve(assigns, k)
        if bv is not None:
            out[k] = bv
    return out


def boot_facts(keys: set[str], root: Path, *, rootfs: bool) -> dict[str, Fact]:
    """Facts for sysctl keys from the files under root.

    rootfs False (a live audit): boot.KEY = the value the next boot applies (absent when no file
    sets it), boot.conflict.KEY when files disagree. rootfs True (--root): KEY itself is the boot
    value, unknown when no file sets it (the kernel default applies, which a tree does not tell).
    """
    from tuneup.facts.sysctl import parse_value

    table = boot_sysctl(root, set(keys))
    facts: dict[str, Fact] = {}
    for k in sorted(keys):
        bv = table.get(k)
        name = k if rootfs else f"boot.{k}"
        if bv is None:
            if rootfs:
                facts[name] = Fact(name, None, f"sysctl.d under {root}",
                                   error="no sysctl.d file sets it (the kernel default applies at boot)")
            else:
                facts[name] = Fact(name, None, "no sysctl.d file sets it")
            continue
        facts[name] = Fact(name, parse_value(bv.value), bv.winner.where)
        if bv.conflict:
            ck = f"boot.conflict.{k}"
            facts[ck] = Fact(ck, "; ".join(f"{a.where} sets {a.value}" for a in bv.assignments), bv.winner.where)
    return facts


# ------------------------------------------------------------------------------------------------
# limits.conf / limits.d (pam_limits)

LIMIT_ITEMS = {"nofile": "NOFILE", "nproc": "NPROC", "memlock": "MEMLOCK", "stack": "STACK", "as": "AS",
               "core": "CORE", "fsize": "FSIZE", "data": "DATA", "rss": "RSS", "cpu": "CPU",
               "locks": "LOCKS", "sigpending": "SIGPENDING", "msgqueue": "MSGQUEUE", "nice": "NICE",
               "rtprio": "RTPRIO", "maxlogins": "", "maxsyslogins": "", "nonewprivs": "", "priority": "",
               "chroot": ""}
LIMIT_TYPES = ("soft", "hard", "-")
_DOMAIN = re.compile(r"^(\*|%?@?[A-Za-z0-9_.][A-Za-z0-9_.$-]*|%|[0-9]*:[0-9]*|@?[0-9]+:?[0-9]*)$")
_LIMIT_VALUE = re.compile(r"^(-?[0-9]+|unlimited|infinity|-1)$")


@dataclass(frozen=True)
class LimitEntry:
    domain: str
    type: str       # soft | hard | -
    item: str
    value: str
    where: str


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


def manager_default(root: Path, name: str = "NOFILE") -> tuple[tuple[int, int], str]:
    files = _file(root, SYSTEMD_CONF) + conf_files(root, SYSTEMD_CONF_DIRS)
    hit = _last_setting(files, root, "Manager", f"DefaultLimit{name}")
    if hit:
        return hit
    return SYSTEMD_DEFAULT_NOFILE, "systemd default for services (1024 soft, 524288 hard since v240)"


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


def service_limit_facts(root: Path, service: str | None, name: str = "nofile") -> tuple[dict[str, Fact], str]:
    """rlimit.nofile.soft/hard as systemd would give the service (or any service, without one),
    from its unit and drop-ins, else DefaultLimitNOFILE, else systemd's default; plus a label."""
    upper = name.upper()
    if service:
        unit = unit_name(service)
        hit = _last_setting(unit_files(root, unit), root, "Service", f"Limit{upper}")
        label = f"{unit} (from its unit files)"
    else:
        hit, label = None, "any systemd service (DefaultLimitNOFILE; give --service NAME for one unit)"
    (soft, hard), where = hit or manager_default(root, upper)
    facts = {f"rlimit.{name}.soft": Fact(f"rlimit.{name}.soft", soft, where),
             f"rlimit.{name}.hard": Fact(f"rlimit.{name}.hard", hard, where)}
    if service:
        facts["service.unit"] = Fact("service.unit", unit_name(service), "--service")
    return facts, label


def snapshot_facts(root: Path, sysctl_keys: set[str], service: str | None, *, rootfs: bool) -> tuple[dict[str, Fact], str]:
    """Everything the config files under root say: sysctl boot values, PAM and systemd limits.

    With a service (or for a tree, where there is no live process), rlimit.nofile.* are what systemd
    gives that service (or any service); the label says whose limits they are."""
    try:
        facts = boot_facts(sysctl_keys, root, rootfs=rootfs)
        facts.update(pam_facts(root))
        label = ""
        if rootfs or service:
            lim, label = service_limit_facts(root, service)
            facts.update(lim)
    except PermissionError as exc:
        raise ConfigFileError("cannot read: permission denied", exc.filename or str(root)) from None
    return facts, label


def value_text(v: Value) -> str:
    return " ".join(str(x) for x in v) if isinstance(v, tuple) else str(v)
