"""Load rule files and profiles (TOML) into Rule/Profile objects, with file:line errors.

Layout of a rules directory:
  profiles.toml      [param.NAME] declarations and [profile.NAME] definitions
  *.toml             [[rule]] entries (any number of files)

Every expression is parsed and its names checked at load time, so a typo fails the load with the
file and line of the rule, not the audit.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import operator
import os
import re
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from itertools import accumulate, chain
from operator import methodcaller
from pathlib import Path
from typing import Any, Callable

from tuneup import gcpause
from tuneup.errors import ExprError, ProfileError, RuleFileError, UsageError
from tuneup.inputs import check_toml_tree, loads_toml, read_text, toml_may_hold_surrogates
from tuneup.model import FixSpec, Hint, Param, Profile, Rule, Scope, Severity, Status
from tuneup.record import FRESH, Mutable
from tuneup.rulebook import parsed
from tuneup.rulebook.expr import Expr
from tuneup.rulebook.ops import OPERATORS
from tuneup.rx import lazy

# Names every expression may use besides profile parameters (filled from the snapshot's host).
HOST_NAMES = frozenset({"ram_bytes", "cpus", "page_size", "kernel"})
RULE_ID_PATTERN = r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)+"   # a whole rule id: rule_id_ok() tests it without a regex
FIX_KINDS = ("sysctl", "limits", "systemd", "modprobe")
PROFILES_FILE = "profiles.toml"

_RULE_FIELDS = {
    "id", "title", "severity", "fact", "op", "expected", "scope", "rationale", "refs", "section",
    "actual", "when", "absent", "absent_reason", "profiles", "fix", "hints", "need", "estimate",
}
_REQUIRED = ("id", "title", "severity", "fact", "op", "expected", "scope", "rationale", "refs")
# `id = "X"` and `[[rule]]` lines (spaces around them; [^\S\n] is whitespace but a newline), found
# in "\n" + text: a pattern that starts with a newline is searched for quickly.
_ID_LINE = lazy(r"""\n[^\S\n]*id[^\S\n]*=[^\S\n]*["']([^"'\n]+)["']""")
_RULE_LINE = lazy(r"\n[^\S\n]*(\[\[rule\]\])[^\S\n]*(?=\n|\Z)")
_ABSENT = {"pass": Status.PASS, "skip": Status.SKIP, "fail": Status.FAIL}
# Largest parameter value (profiles.toml, tuneup.toml [params], --set): integers stay exact as floats
# and every threshold computed from them stays far from overflow.
MAX_PARAM = 2**53
# A rule id or a glob of them (profile exclude): bounded, so matching stays cheap whatever the file says.
_RULE_GLOB = lazy(r"[A-Z0-9*?\[\]!_-]{1,200}")


@functools.lru_cache(maxsize=4096)
def compile_expr(text: str) -> Expr:
    """Parse once; the engine and the loader share the cache."""
    return Expr(text)


def builtin_dir(name: str) -> Path:
    """rules/ or templates/: inside the installed package, or beside it in a source checkout."""
    here = Path(__file__).resolve().parent.parent
    for cand in (here / name, here.parent / name):
        if cand.is_dir():
            return cand
    raise RuntimeError(f"tuneup data directory {name!r} not found near {here}")  # broken install


@dataclass(init=False, eq=False, repr=False)
class Rulebook(Mutable):
    """Every rule, parameter and profile loaded, with profile resolution."""

    rules: dict[str, Rule] = field(default_factory=dict)
    params: dict[str, Param] = field(default_factory=dict)
    profile_defs: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_profile: str = "web"
    # the fact keys of the pre-built built-in rules (tuneup.rulebook.parsed): id -> (rule, keys);
    # their expressions are compiled when first evaluated, not at load
    known_keys: dict[str, tuple[Rule, frozenset[str]]] = field(default_factory=dict, compare=False, repr=False)

    def __init__(self, rules=FRESH, params=FRESH, profile_defs=FRESH, default_profile="web",
                 known_keys=FRESH) -> None:
        self.rules = {} if rules is FRESH else rules
        self.params = {} if params is FRESH else params
        self.profile_defs = {} if profile_defs is FRESH else profile_defs
        self.default_profile = default_profile
        self.known_keys = {} if known_keys is FRESH else known_keys

    # -- profiles ---------------------------------------------------------------------------
    def lineage(self, name: str) -> list[str]:
        """[name, parent, grandparent, ...]; errors on unknown names and cycles."""
        if name not in self.profile_defs:
            known = ", ".join(sorted(self.profile_defs))
            raise ProfileError(f"unknown profile {name!r} (known: {known})", "--profile")
        chain: list[str] = []
        cur: str | None = name
        while cur is not None:
            if cur in chain:
                raise ProfileError(f"profile {name!r} extends itself via {' -> '.join(chain + [cur])}",
                                   self.profile_defs[name].get("_origin"))
            chain.append(cur)
            parent = self.profile_defs[cur].get("extends")
            if parent is not None and parent not in self.profile_defs:
                raise ProfileError(f"profile {cur!r} extends unknown profile {parent!r}",
                                   self.profile_defs[cur].get("_origin"))
            cur = parent
        return chain

    def profile(self, name: str, overrides: dict[str, int | float] | None = None) -> Profile:
        """Resolve a profile: inherited parameter defaults, own overrides, then --set values."""
        chain = self.lineage(name)
        params = {p.name: p.default for p in self.params.values()}
        exclude: list[str] = []
        given: set[str] = set()
        for pname in reversed(chain):
            d = self.profile_defs[pname]
            params.update(d.get("params", {}))
            given.update(d.get("params", {}))
            exclude.extend(d.get("exclude", ()))
        for key, val in (overrides or {}).items():
            if key not in self.params:
                known = ", ".join(sorted(self.params))
                raise UsageError(f"unknown parameter {key!r} (known: {known})", "--set")
            params[key] = val
            given.add(key)
        params.update(self.derived(params, given))
        d = self.profile_defs[name]
        return Profile(name=name, description=d.get("description", ""), extends=d.get("extends"),
                       params=params, exclude=tuple(exclude), origin=d.get("_origin", ""))

    def derived(self, params: dict[str, int | float], given: set[str]) -> dict[str, int | float]:
        """Parameters derived from others (a rate = connections over a time constant), unless the
        profile or --set gives them; evaluated in declaration order."""
        out: dict[str, int | float] = {}
        for p in self.params.values():
            if p.derive and p.name not in given:
                try:
                    val = compile_expr(p.derive).evaluate({**params, **out}, _no_fact, lambda k: False)
                except (ExprError, ZeroDivisionError) as exc:
                    raise UsageError(f"parameter {p.name} = {p.derive}: {exc}", "--set") from None
                out[p.name] = val
        return out

    def rules_for(self, name: str) -> list[Rule]:
        chain = set(self.lineage(name))
        exclude = self.profile(name).exclude
        return [r for r in self.rules.values()
                if chain.intersection(r.profiles) and not any(fnmatchcase(r.id, p) for p in exclude)]

    def profiles_of(self, rule: Rule) -> list[str]:
        """Every profile that includes the rule (directly or through extends)."""
        return [p for p in self.profile_defs if rule in self.rules_for(p)]

    def fact_keys(self) -> set[str]:
        """Every fact key any rule reads: what `collect` must gather."""
        keys: set[str] = set()
        known = self.known_keys
        for r in self.rules.values():
            got = known.get(r.id)
            if got is not None and got[0] is r:
                keys |= got[1]
                continue
            keys |= rule_fact_keys(r)
        return keys


def rule_fact_keys(r: Rule) -> frozenset[str]:
    """The fact a rule reads, and those its expressions read with fact() and has()."""
    keys = {r.fact}
    for text in (r.expected, r.actual, r.when, r.fix.value if r.fix else None, *(h.when for h in r.hints)):
        if text:
            keys |= compile_expr(text).fact_keys()
    return frozenset(keys)


def _no_fact(key: str) -> Any:
    raise ExprError(f"a parameter cannot read the fact {key!r}")


def _line_of(text: str, pattern: str) -> int | None:
    rx = re.compile(pattern)
    for n, line in enumerate(text.splitlines(), 1):
        if rx.search(line):
            return n
    return None


def _header_line(lines: list[str], table: str, name: str) -> int | None:
    """The first line that opens [table.NAME] or [table.NAME.sub] (the regex ^\\[table\\.NAME[\\].]
    on each line, without compiling one per name)."""
    prefix = f"[{table}.{name}"
    n = len(prefix)
    for i, line in enumerate(lines, 1):
        if line.startswith(prefix) and line[n:n + 1] in ("]", "."):
            return i
    return None


def _tree(path: Path, text: str, builtin: bool, check: bool = True) -> dict[str, Any]:
    """The tree of a rule or profiles file: pre-parsed for a built-in file whose text
    rules/_parsed.json records (tuneup.rulebook.parsed), else parsed; checked as loads_toml checks
    (check=False: the caller proves it clean or calls check_toml_tree before anything may refuse it)."""
    data = parsed.tree(path, text) if builtin else None
    if data is None:
        return loads_toml(text, str(path), RuleFileError, check=check)
    if check:
        check_toml_tree(data, text, str(path), RuleFileError)
    return data


def _read_toml(path: Path, builtin: bool = False) -> tuple[dict[str, Any], str]:
    text = read_text(path, RuleFileError)
    return _tree(path, text, builtin), text


def load(dirs: list[Path] | None = None) -> Rulebook:
    """Load the built-in rules, then each extra directory (later ones may add rules/profiles)."""
    with gcpause.paused():   # millions of objects, no cycles (tuneup.gcpause)
        return _load(dirs)


def _load(dirs: list[Path] | None) -> Rulebook:
    """The built-in rules as rules/_parsed.json has them built when every built-in file is the
    one it records (tuneup.rulebook.parsed), else loaded from their files; then the extra dirs."""
    root = builtin_dir("rules")
    names = _toml_names(root)
    data = parsed.book(root, {name: read_text(root / name, RuleFileError) for name in names})
    book = book_from_json(data, root) if data is not None else None
    if book is None:
        return load_dirs(Rulebook(), [root, *(dirs or [])], builtin_first=True)
    return load_dirs(book, list(dirs or []))


def book_to_json(book: Rulebook, root: Path) -> dict[str, Any]:
    """A rulebook loaded from root alone as JSON values (book_from_json gives it back): origins
    relative to root, enums by value, every rule's fact keys."""
    cut = len(str(root)) + 1

    def rel(origin: str) -> str:
        assert origin.startswith(str(root) + os.sep), origin
        return origin[cut:]

    rules = []
    for r in book.rules.values():
        row = []
        for name in _RULE_FIELD_NAMES:
            v = getattr(r, name)
            if name == "severity":
                v = int(v)
            elif name in ("scope", "absent"):
                v = v.value
            elif name == "fix":
                v = [v.kind, v.key, v.value] if v is not None else None
            elif name == "hints":
                v = [[h.text, h.when] for h in v]
            elif name == "origin":
                v = rel(v)
            elif type(v) is tuple:
                v = list(v)
            row.append(v)
        rules.append(row)
    return {"fields": list(_RULE_FIELD_NAMES), "rules": rules,
            "keys": {r.id: sorted(rule_fact_keys(r)) for r in book.rules.values()},
            "params": [[p.name, p.default, p.description, p.derive] for p in book.params.values()],
            "profiles": [[name, {k: v for k, v in d.items() if k != "_origin"}, rel(d["_origin"])]
                         for name, d in book.profile_defs.items()],
            "default_profile": book.default_profile}


def book_from_json(data: Any, root: Path) -> Rulebook | None:
    """The rulebook book_to_json recorded for root, its origins under root again; None when the
    record is not one (the caller then loads the files)."""
    prefix = str(root) + os.sep
    severities = {int(s): s for s in Severity}
    statuses = {s.value: s for s in Status}
    try:
        if data["fields"] != list(_RULE_FIELD_NAMES):
            return None
        book = Rulebook(default_profile=data["default_profile"])
        for name, default, description, derive in data["params"]:
            book.params[name] = Param(name, default, description, derive)
        for name, spec, origin in data["profiles"]:
            book.profile_defs[name] = {**spec, "_origin": prefix + origin}
        rules, known, keys = book.rules, book.known_keys, data["keys"]
        for row in data["rules"]:
            v = dict(zip(_RULE_FIELD_NAMES, row))
            v["severity"] = severities[v["severity"]]
            v["scope"] = _SCOPES[v["scope"]]
            v["absent"] = statuses[v["absent"]]
            v["refs"] = tuple(v["refs"])
            v["profiles"] = tuple(v["profiles"])
            v["fix"] = FixSpec(*v["fix"]) if v["fix"] is not None else None
            v["hints"] = tuple(Hint(text, when) for text, when in v["hints"])
            v["origin"] = prefix + v["origin"]
            rule = rules[v["id"]] = _new_rule(v)
            known[rule.id] = (rule, frozenset(keys[rule.id]))
        return book
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return None


def _toml_names(d: Path) -> list[str]:
    """The *.toml names in d, sorted: as d.glob("*.toml") (dot files too), without compiling its pattern."""
    try:
        return sorted(name for name in os.listdir(d) if name.endswith(".toml"))
    except OSError as exc:
        raise UsageError(f"cannot list the rules directory: {exc.strerror}", str(d)) from None


def load_dirs(book: Rulebook, dirs: list[Path], builtin_first: bool = False) -> Rulebook:
    """Load the profiles of every dir, then its rule files, into book (builtin_first: dirs[0] is
    the built-in directory, whose files rules/_parsed.json may hold pre-parsed)."""
    for i, d in enumerate(dirs):
        if not d.is_dir():
            raise UsageError("rules directory does not exist", str(d))
        prof = d / PROFILES_FILE
        if prof.exists():
            _load_profiles(book, prof, builtin=builtin_first and i == 0)
    if not book.profile_defs:
        raise ProfileError("no profiles defined", str(dirs[0] / PROFILES_FILE) if dirs else PROFILES_FILE)
    fast = _FastPath(book)   # once the profiles and parameters are known
    for i, d in enumerate(dirs):
        for path in [d / name for name in _toml_names(d)]:
            if path.name != PROFILES_FILE:
                _load_rules(book, path, fast, builtin=builtin_first and i == 0)
    for name in book.profile_defs:
        book.lineage(name)   # unknown parents and cycles fail at load
    return book


def _number(val: Any, where: str) -> int | float:
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val <= MAX_PARAM:
        raise ProfileError(f"parameter value must be a number from 0 to {MAX_PARAM}, got "
                           f"{val!r}"[:300], where)
    return val


def _table(data: dict[str, Any], key: str, where: Callable[[], str]) -> dict[str, Any]:
    v = data.get(key, {})
    if not isinstance(v, dict):
        raise ProfileError(f"{key!r} must be a table ([{key}.NAME])", where())
    return v


def _load_profiles(book: Rulebook, path: Path, builtin: bool = False) -> None:
    data, text = _read_toml(path, builtin)
    def at(pattern: str) -> str:
        return f"{path}:{_line_of(text, pattern) or 1}"

    lines = text.splitlines()
    for name, spec in _table(data, "param", lambda: at(r"^\[?param\b")).items():
        where = f"{path}:{_header_line(lines, 'param', name) or 1}"
        if not isinstance(spec, dict) or ("default" not in spec and "derive" not in spec):
            raise ProfileError(f"param {name!r} needs a default (or a derive expression)", where)
        desc = spec.get("description", "")
        if not isinstance(desc, str):
            raise ProfileError(f"param {name!r}: description must be a string", where)
        derive = spec.get("derive")
        if derive is not None:
            try:
                ex = compile_expr(derive) if isinstance(derive, str) else None
            except ExprError as exc:
                raise ProfileError(f"param {name!r}: derive: {exc}", where) from None
            if ex is None or ex.names - set(book.params):
                raise ProfileError(f"param {name!r}: derive must be an expression over parameters declared "
                                   "before it", where)
            if "default" in spec:
                raise ProfileError(f"param {name!r}: give a default or a derive expression, not both (the "
                                   "default of a derived parameter is derived from the others' defaults)", where)
            try:   # its default: derived from the defaults declared before it
                default = ex.evaluate({p.name: p.default for p in book.params.values()}, _no_fact, lambda k: False)
            except (ExprError, ZeroDivisionError, ArithmeticError) as exc:
                raise ProfileError(f"param {name!r}: derive: {exc}", where) from None
        else:
            default = spec["default"]
        book.params[name] = Param(name, _number(default, where), desc, derive)
    if "default_profile" in data:
        dp = data["default_profile"]
        if not isinstance(dp, str) or not dp:
            raise ProfileError("default_profile must be a profile name (a string)", at(r"^default_profile\b"))
        book.default_profile = dp
    for name, spec in _table(data, "profile", lambda: at(r"^\[?profile\b")).items():
        where = f"{path}:{_header_line(lines, 'profile', name) or 1}"
        _check_profile(book, name, spec, where)
        book.profile_defs[name] = {**spec, "_origin": where}


def _check_profile(book: Rulebook, name: str, spec: Any, where: str) -> None:
    """Every field of a [profile.NAME] table of the right type (exclude = "CT-*" is a list of one
    glob, never a string split into characters)."""
    if not isinstance(spec, dict):
        raise ProfileError(f"profile {name!r} must be a table", where)
    unknown = set(spec) - {"description", "extends", "params", "exclude"}
    if unknown:
        raise ProfileError(f"profile {name!r}: unknown field(s) {', '.join(sorted(unknown))}", where)
    if not isinstance(spec.get("description", ""), str):
        raise ProfileError(f"profile {name!r}: description must be a string", where)
    extends = spec.get("extends")
    if extends is not None and (not isinstance(extends, str) or not extends):
        raise ProfileError(f"profile {name!r}: extends must be one profile name (a string), "
                           f"got {type(extends).__name__}", where)
    params = spec.get("params", {})
    if not isinstance(params, dict):
        raise ProfileError(f"profile {name!r}: params must be a table of NAME = number, "
                           f"got {type(params).__name__}", where)
    for k, v in params.items():
        if k not in book.params:
            raise ProfileError(f"profile {name!r} sets undeclared parameter {k!r}", where)
        _number(v, where)
    exclude = spec.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(x, str) and _RULE_GLOB.fullmatch(x) for x in exclude):
        raise ProfileError(f"profile {name!r}: exclude must be a list of rule ids or globs "
                           f"(exclude = [\"CT-*\"]: capitals, digits, - * ? [ ], at most 200 characters), "
                           f"got {type(exclude).__name__}", where)


def _load_rules(book: Rulebook, path: Path, fast: _FastPath | None = None, builtin: bool = False) -> None:
    """builtin: a file of the built-in directory, whose parse rules/_parsed.json may hold
    (tuneup.rulebook.parsed); checked and built below exactly as a parsed one."""
    text = read_text(path, RuleFileError)
    data = _tree(path, text, builtin, check=False)
    lines = parsed.id_lines(path, text) if builtin else None
    first_line, more_lines = lines if lines is not None else _lines_by_group(_ID_LINE, text)
    fast = fast or _FastPath(book)
    built = fast.file(data, text, first_line, more_lines, str(path))
    if built is not None:
        book.rules.update(built)
        return
    # as loads_toml would have, before anything else refuses the file
    check_toml_tree(data, text, str(path), RuleFileError)
    extra = set(data) - {"rule"}
    if extra:
        raise RuleFileError(f"unknown top-level table(s) {', '.join(sorted(extra))}; expected [[rule]]", str(path))
    entries = data.get("rule", [])
    if not isinstance(entries, list):
        raise RuleFileError("'rule' must be an array of tables ([[rule]])", str(path))
    rules = book.rules
    rule_lines: list[int] | None = None     # found only when an entry has no id line of its own
    for i, entry in enumerate(entries):
        rid = entry.get("id") if isinstance(entry, dict) else None
        line = None
        if isinstance(rid, str):    # the n-th entry with this id is at its n-th id line
            lines = more_lines.get(rid) if more_lines else None
            line = first_line.pop(rid, None) if lines is None else lines.pop(0) if lines else None
        if line is None:
            if rule_lines is None:
                rule_lines = _line_numbers(_RULE_LINE, text)
            line = rule_lines[i] if i < len(rule_lines) else 1
        where = f"{path}:{line}"
        rule = fast.rule(entry, where) or _build_rule(entry, where, book)
        if rule.id in rules:
            raise RuleFileError(f"rule {rule.id} already defined at {rules[rule.id].origin}", where)
        rules[rule.id] = rule


def _line_numbers(pattern: re.Pattern[str], text: str) -> list[int]:
    """Line numbers (1-based) of the matches of a multi-line pattern with one group, in order."""
    return _lines_and_groups(pattern, text)[0]


def _lines_and_groups(pattern: re.Pattern[str], text: str) -> tuple[list[int], list[str]]:
    # The pattern starts with the newline before its line (one newline only). split() puts its
    # group between the stretches of text around the matches: the newlines of the stretches
    # before the k-th match, plus the k matched ones, less the one put in front, give the line
    # of the k-th match's line less one. Every loop in C.
    parts = pattern.split("\n" + text)
    counts = accumulate(map(methodcaller("count", "\n"), parts[:-1:2]))
    return list(map(operator.add, counts, itertools.count(1))), parts[1::2]


def _lines_by_group(pattern: re.Pattern[str], text: str) -> tuple[dict[str, int], dict[str, list[int]]]:
    """Where each match of the pattern is, by its group: {group: line} when each group is matched
    once, and {group: [line, ...]} for the groups matched more than once."""
    lines, groups = _lines_and_groups(pattern, text)
    first = dict(zip(groups, lines))
    more: dict[str, list[int]] = {}
    if len(first) < len(groups):
        for g, n in zip(groups, lines):
            more.setdefault(g, []).append(n)
        more = {g: ns for g, ns in more.items() if len(ns) > 1}
    return first, more


class _FastPath:
    """_build_rule for the ordinary entry, in a few C-level checks per field: every field a string
    of the right kind, no fix or hints, expressions already seen (or plain integers). It returns
    None whenever anything differs from that, and _build_rule then decides, with its messages; so
    what it accepts is exactly what _build_rule accepts, built into an equal Rule (tested)."""

    _FIELDS = frozenset(_RULE_FIELDS - {"fix", "hints"})
    _OPTIONAL = ("actual", "when", "absent_reason", "need")

    def __init__(self, book: Rulebook) -> None:
        self.profiles = book.profile_defs
        params = set(book.params) | HOST_NAMES
        self.allowed = {"value": frozenset(params | {"value"}), "when": frozenset(params)}
        self.seen: dict[str, set[str]] = {"value": set(), "when": set()}   # expressions that passed, by kind
        self.profile_lists: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.rules = book.rules

    def file(self, data: dict[str, Any], text: str, first_line: dict[str, int], more_lines: dict[str, list[int]],
             path: str) -> dict[str, Rule] | None:
        """{id: rule} for a file of [[rule]] entries that rule() takes, each on an id line of its
        own, with ids new to the rulebook; None for any other file (it is then checked and built
        entry by entry, and refused where it is wrong).

        Such a file is clean by construction, so check_tree (about a tenth of loading) is not run
        on it: its values are strings, lists of strings, booleans and `expected` numbers that
        rule() bounds; nothing nests deeper than [[rule]].refs; and no string holds a surrogate
        when the text holds none."""
        entries = data.get("rule")
        if len(data) != 1 or type(entries) is not list or more_lines or toml_may_hold_surrogates(text):
            return None
        out: dict[str, Rule] = {}
        line_of, rule = first_line.get, self.rule
        for e in entries:
            rid = e.get("id") if type(e) is dict else None
            line = line_of(rid) if type(rid) is str else None
            built = rule(e, f"{path}:{line}") if line is not None else None
            if built is None or rid in out:
                return None
            out[rid] = built
        return out if self.rules.keys().isdisjoint(out) else None

    def _expr_ok(self, kind: str, text: Any) -> bool:
        if type(text) is not str:
            return False
        if text in self.seen[kind]:
            return True
        if not _plain_int(text):   # a plain integer needs no parse to be valid
            try:
                ex = compile_expr(text)
            except ExprError:
                return False
            if not ex.names <= self.allowed[kind]:
                return False
        self.seen[kind].add(text)
        return True

    def rule(self, e: Any, where: str) -> Rule | None:
        if type(e) is not dict or not (_REQUIRED_SET <= e.keys() <= self._FIELDS):
            return None
        texts = _TEXT_FIELDS(e)
        refs = e["refs"]
        if (type(refs) is not list or not refs or not _STR_SET >= set(map(type, chain(texts, refs)))
                or not all(map(str.strip, chain(texts, refs)))):
            return None
        if e.keys().isdisjoint(self._OPTIONAL):
            actual = when = absent_reason = need = None
        else:
            optional = tuple(map(e.get, self._OPTIONAL))
            if (not _STR_NONE_SET >= set(map(type, optional)) or "" in optional
                    or not all(map(str.strip, filter(None, optional)))):
                return None
            actual, when, absent_reason, need = optional
        rid, title, sev, fact, op, scope, rationale = texts
        expected = e["expected"]
        if type(expected) is not str:   # a number within what check_tree lets through (see file())
            ok = type(expected) is bool or type(expected) is int and -_BIG < expected < _BIG or \
                type(expected) is float and math.isfinite(expected)
            expected = repr(expected) if ok else None
        get = e.get
        severity = _SEVERITY_WORDS.get(sev) or _SEVERITY_NAMES.get(sev.upper())
        scope_v = _SCOPES.get(scope)
        absent = get("absent", "skip")
        absent = _ABSENT.get(absent) if type(absent) is str else None
        section = get("section", "general")
        estimate = get("estimate", False)
        profiles = get("profiles", _BASELINE)
        if (severity is None or scope_v is None or absent is None or op not in OPERATORS
                or not rule_id_ok(rid) or type(section) is not str or type(estimate) is not bool
                or type(profiles) is not list or not _STR_SET >= set(map(type, profiles))):
            return None
        key = tuple(profiles)
        known = self.profile_lists.get(key)
        if known is None:
            if not all(map(self.profiles.__contains__, key)):
                return None
            known = self.profile_lists[key] = key
        seen = self.seen["value"]
        if expected is None or not (expected in seen or self._expr_ok("value", expected)) or not (
                (need is None or need in seen or self._expr_ok("value", need))
                and (actual is None or actual in seen or self._expr_ok("value", actual))
                and (when is None or when in self.seen["when"] or self._expr_ok("when", when))):
            return None
        return _new_rule({
            "id": rid, "title": title, "severity": severity, "fact": fact, "op": op, "expected": expected,
            "scope": scope_v, "rationale": rationale, "refs": tuple(refs), "section": section,
            "actual": actual, "when": when, "absent": absent, "absent_reason": absent_reason,
            "profiles": known, "fix": None, "origin": where, "hints": (), "need": need, "estimate": estimate,
        })


_REQUIRED_SET = frozenset(_REQUIRED)
_TEXT_FIELDS = operator.itemgetter("id", "title", "severity", "fact", "op", "scope", "rationale")
_BASELINE = ["baseline"]
_BIG = 2**63
_STR_SET = frozenset({str})
_STR_NONE_SET = frozenset({str, type(None)})
_SEVERITY_NAMES = dict(Severity.__members__)
_SEVERITY_WORDS = {str(s): s for s in Severity}   # "warning": the usual spelling, without .upper()
_SCOPES = {s.value: s for s in Scope}
PLAIN_INT_PATTERN = r"0|[1-9][0-9]{0,17}"   # a whole plain integer: _plain_int() tests it without a regex


def _plain_int(text: str) -> bool:
    """re.fullmatch(PLAIN_INT_PATTERN, text), without compiling it at every load."""
    return text.isascii() and text.isdigit() and len(text) <= 18 and (text[0] != "0" or text == "0")


def rule_id_ok(rid: str) -> bool:
    """re.fullmatch(RULE_ID_PATTERN, rid) (AREA-NAME: capitals and digits, dash-separated, a capital
    first), without compiling the pattern at every load, in C-level tests only
    (tests/test_startup_regexes.py holds it to the pattern)."""
    return (rid.isascii() and rid[:1].isalpha() and rid.isupper() and "-" in rid and rid[-1] != "-"
            and "--" not in rid and rid.replace("-", "").isalnum())
_RULE_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Rule))


def _new_rule(values: dict[str, Any]) -> Rule:
    """Rule(**values) without the frozen dataclass's __init__ (one object.__setattr__ per field,
    about 7x the cost): Rule has no __post_init__ and no default factories, so setting the fields
    directly makes an equal object. Every field must be given (tested against Rule(**values))."""
    rule = object.__new__(Rule)
    rule.__dict__.update(values)
    return rule


def _build_rule(e: Any, where: str, book: Rulebook) -> Rule:
    if not isinstance(e, dict):
        raise RuleFileError("[[rule]] entry must be a table", where)
    label = f"rule {e.get('id', '?')}"
    for req in _REQUIRED:
        if req not in e:
            raise RuleFileError(f"{label}: missing field {req!r}", where)
    unknown = set(e) - _RULE_FIELDS
    if unknown:
        raise RuleFileError(f"{label}: unknown field(s) {', '.join(sorted(unknown))}", where)

    def text_field(name: str, *, optional: bool = False) -> str | None:
        v = e.get(name)
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v.strip():
            raise RuleFileError(f"{label}: {name!r} must be a non-empty string", where)
        return v

    rid = text_field("id")
    if not rule_id_ok(rid):
        raise RuleFileError(f"rule id {rid!r} must look like AREA-NAME (capitals, digits, dashes)", where)
    try:
        severity = Severity.parse(text_field("severity"))
    except KeyError:
        raise RuleFileError(f"{label}: severity must be info, warning or critical, not {e['severity']!r}", where) from None
    try:
        scope = Scope(text_field("scope"))
    except ValueError:
        raise RuleFileError(f"{label}: scope must be netns, host, process or listener, not {e['scope']!r}", where) from None
    op = text_field("op")
    if op not in OPERATORS:
        raise RuleFileError(f"{label}: unknown operator {op!r} (known: {', '.join(OPERATORS)})", where)
    absent = e.get("absent", "skip")
    if not isinstance(absent, str) or absent not in _ABSENT:   # a list is not hashable
        raise RuleFileError(f"{label}: absent must be pass, skip or fail, not {absent!r}", where)
    refs = e["refs"]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise RuleFileError(f"{label}: refs must be a non-empty list of strings", where)
    profiles = e.get("profiles", ["baseline"])
    if not isinstance(profiles, list) or not all(isinstance(p, str) for p in profiles):
        raise RuleFileError(f"{label}: profiles must be a list of profile names", where)
    for p in profiles:
        if p not in book.profile_defs:
            raise RuleFileError(f"{label}: unknown profile {p!r}", where)
    expected = e["expected"]
    if isinstance(expected, bool) or isinstance(expected, (int, float)):
        expected = repr(expected)
    elif not isinstance(expected, str):
        raise RuleFileError(f"{label}: expected must be an expression string or a number", where)

    fix = None
    if "fix" in e:
        f = e["fix"]
        if not isinstance(f, dict) or f.get("kind") not in FIX_KINDS:
            raise RuleFileError(f"{label}: fix.kind must be one of {', '.join(FIX_KINDS)}", where)
        unknown = set(f) - {"kind", "key", "value"}
        if unknown:
            raise RuleFileError(f"{label}: fix has unknown field(s) {', '.join(sorted(unknown))}", where)
        fval = f.get("value", "expected")
        fix = FixSpec(kind=f["kind"], key=str(f.get("key", e["fact"])),
                      value=fval if isinstance(fval, str) else repr(fval))

    hints: list[Hint] = []
    raw_hints = e.get("hints", [])
    if not isinstance(raw_hints, list):
        raise RuleFileError(f"{label}: hints must be a list of {{ text = ..., when = ... }} tables", where)
    for h in raw_hints:
        if not isinstance(h, dict) or not isinstance(h.get("text"), str) or not h["text"].strip() \
                or set(h) - {"text", "when"} or not isinstance(h.get("when", ""), str):
            raise RuleFileError(f"{label}: each hint needs a text and may have a when expression, got {h!r}", where)
        hints.append(Hint(text=h["text"].strip(), when=h.get("when")))

    params = set(book.params) | HOST_NAMES
    estimate = e.get("estimate", False)
    if not isinstance(estimate, bool):
        raise RuleFileError(f"{label}: estimate must be true or false", where)
    checks = [("expected", expected, params | {"value"}),
              ("need", e.get("need"), params | {"value"}),
              ("actual", e.get("actual"), params | {"value"}),
              ("when", e.get("when"), params),
              ("fix.value", fix.value if fix else None, params | {"value", "expected"})]
    checks += [(f"hints[{i}].when", h.when, params | {"value", "expected"}) for i, h in enumerate(hints)]
    for name, text, allowed in checks:
        if text is None:
            continue
        if not isinstance(text, str):
            raise RuleFileError(f"{label}: {name} must be an expression string", where)
        try:
            ex = compile_expr(text)
        except ExprError as exc:
            raise RuleFileError(f"{label}: {name}: {exc}", where) from None
        unknown_names = ex.names - allowed
        if unknown_names:
            raise RuleFileError(f"{label}: {name} uses unknown name(s) {', '.join(sorted(unknown_names))}", where)

    return Rule(
        id=rid, title=text_field("title"), severity=severity, fact=text_field("fact"), op=op,
        expected=expected, scope=scope, rationale=text_field("rationale"), refs=tuple(refs),
        section=str(e.get("section", "general")), actual=text_field("actual", optional=True),
        when=text_field("when", optional=True), absent=_ABSENT[absent],
        absent_reason=text_field("absent_reason", optional=True), profiles=tuple(profiles),
        fix=fix, origin=where, hints=tuple(hints), need=text_field("need", optional=True), estimate=estimate,
    )
