"""Report -> the config that fixes it. Pure: no files are read or written here.

plan_fixes() works from each failing rule's FixSpec (kind, key, value expression) and nothing else:
  1. every failing rule with a fix proposes a value (its value expression over params, the host,
     `value` and `expected`);
  2. one value per target (kind, key) is chosen: the first proposal, most severe rule first, under
     which every loaded rule on the facts that target sets passes; a value some rule forbids is
     never written (it is reported as skipped with the rule that forbids it);
  3. the chosen values are put into a hypothetical snapshot and the profile's rules evaluated
     again, so a fix that moves another rule's threshold (tcp_max_syn_backlog >= somaxconn) is
     followed up, until nothing changes.
render() (tuneup.fixes.render) turns the plan into {relative path: file text}.
"""

from __future__ import annotations

import os
import re

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tuneup.errors import ExprError, MissingFact
from tuneup.fixes.values import (DIRECTIVE, LIMIT_ITEM, MODPARAM, SYSCTL_KEY, UNIT_NAME, FixValueError, check,
                                 int_value, rlimit_pair)
from tuneup.textsafe import printable
from tuneup.model import Fact, Finding, Report, Rule, Scope, Severity, Snapshot, Status, Value

MAX_ROUNDS = 5
TUNEUP_NAME = "tuneup.conf"
# systemd directives of a unit's cgroup (systemd.resource-control(5)): one value, no soft:hard, no
# limits.conf item; only TasksMax= has a manager-wide default (DefaultTasksMax=, systemd-system.conf(5))
CGROUP_DIRECTIVES = ("TasksMax", "MemoryMax")


@dataclass(frozen=True)
class FixItem:
    kind: str                     # sysctl | limits | systemd | modprobe (as in the rules)
    key: str                      # sysctl key, "LimitNOFILE", "nofile", "nf_conntrack.hashsize"
    value: int | tuple[int, ...]  # validated
    rules: tuple[str, ...]        # the failing rules this value fixes
    reason: str                   # the finding's message
    before: Value                 # what the audit saw
    before_source: str
    scope: Scope
    host_only: bool = False       # audited from a child netns: only the host can set it
    optional: bool = False        # the key may be absent on a kernel (a rule passes then): "-key" in sysctl.d


@dataclass(frozen=True)
class Skipped:
    rule: str
    key: str
    reason: str


@dataclass(frozen=True)
class FixPlan:
    items: tuple[FixItem, ...]
    skipped: tuple[Skipped, ...]
    profile: str
    host: Mapping[str, Any]
    service: str | None = None          # unit for LimitX= drop-ins
    child_netns: bool = False
    rootfs: bool = False
    setters: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # area -> basenames setting our keys
    notes: tuple[str, ...] = ()
    tuned_profile: str | None = None    # the active tuned profile, when tuned applies sysctls at boot

    def of_kind(self, kind: str) -> list[FixItem]:
        return [i for i in self.items if i.kind == kind]


# -- what a fix target sets ------------------------------------------------------------------------
def _target(rule: Rule) -> tuple[str, str]:
    assert rule.fix is not None
    return rule.fix.kind, rule.fix.key


def target_facts(rules: Iterable[Rule], kind: str, key: str) -> set[str]:
    """Fact keys that the fix (kind, key) sets: the facts of every rule with that fix target, and
    for sysctl and modprobe also the key itself."""
    facts = {r.fact for r in rules if r.fix and _target(r) == (kind, key)}
    if kind == "sysctl":
        facts.add(key)
    return facts


def _fact_value(kind: str, fact_key: str, value: int | tuple[int, ...], facts: Mapping[str, Fact], prefix: str) -> Value:
    """The value a fact takes when the fix is applied: a limit sets (soft, hard) from one number."""
    if kind in ("systemd", "limits") and fact_key.endswith((".soft", ".hard")):
        hard = facts.get(prefix + fact_key.rsplit(".", 1)[0] + ".hard")
        soft_v, hard_v = rlimit_pair(value, hard.value if hard else None)
        return soft_v if fact_key.endswith(".soft") else hard_v
    return value


def _with(snapshot: Snapshot, facts: dict[str, Fact]) -> Snapshot:
    return Snapshot(host=snapshot.host, facts=facts, processes=snapshot.processes,
                    collected_at=snapshot.collected_at, origin=snapshot.origin)


def _set(facts: dict[str, Fact], kind: str, fact_keys: set[str], value: int | tuple[int, ...]) -> dict[str, Fact]:
    """facts with the fix applied: the plain key and every audited process's copy (proc.PID.key)."""
    out = dict(facts)
    for fk in fact_keys:
        prefixes = [""] + sorted({k[: -len(fk)] for k in facts if k.startswith("proc.") and k.endswith("." + fk)})
        for pre in prefixes:
            name = pre + fk
            v = _fact_value(kind, fk, value, facts, pre)
            old = facts.get(name)
            out[name] = Fact(name, v, "proposed by tuneup fix") if old is None else replace(
                old, value=v, source="proposed by tuneup fix", error=None)
    return out


# -- planning --------------------------------------------------------------------------------------
def plan_fixes(all_rules: Sequence[Rule], profile_rules: Sequence[Rule], snapshot: Snapshot,
               params: Mapping[str, Any], report: Report, service: str | None = None) -> FixPlan:
    from tuneup import engine

    by_id = {r.id: r for r in all_rules}
    waived = {f.rule for f in report.findings if f.status is Status.WAIVED}
    names = {**engine.host_names(snapshot.host), **params}
    child = snapshot.host.get("netns") == "child"
    rootfs = snapshot.origin.startswith("root:")
    facts = dict(snapshot.facts)
    chosen: dict[tuple[str, str], FixItem] = {}
    skipped: dict[tuple[str, str], Skipped] = {}
    first_seen: dict[str, Finding] = {f.rule: f for f in report.findings}

    for _ in range(MAX_ROUNDS):
        hyp = _with(snapshot, facts)
        found = [f for f in engine.evaluate(profile_rules, hyp, params)
                 if f.status is Status.FAIL and f.rule in by_id and by_id[f.rule].fix and f.rule not in waived]
        proposals: dict[tuple[str, str], list[tuple[Rule, Finding, int | tuple[int, ...]]]] = {}
        for f in found:
            rule = by_id[f.rule]
            try:
                value = _proposal(rule, f, names, facts)
            except (ExprError, FixValueError) as exc:
                skipped[(rule.id, f.key)] = Skipped(rule.id, f.key, f"no value: {exc}")
                continue
            proposals.setdefault(_target(rule), []).append((rule, f, value))
        changed = False
        for tgt, props in sorted(proposals.items()):
            if tgt in chosen and chosen[tgt].value in [v for _, _, v in props]:
                continue
            props.sort(key=lambda p: (-p[0].severity, p[0].id))
            pick, why_not = _choose(all_rules, tgt, props, snapshot, facts, params)
            if pick is None:
                for rule, f, _ in props:
                    skipped[(rule.id, f.key)] = Skipped(rule.id, f.key, why_not)
                continue
            rule, f, value = pick
            if is_rlimit(*tgt):
                value = _limit_value(all_rules, tgt, value, snapshot.facts)
            orig = first_seen.get(rule.id, f)
            prev = chosen.get(tgt)
            item = FixItem(kind=tgt[0], key=tgt[1], value=value,
                           rules=tuple(dict.fromkeys((*(prev.rules if prev else ()), *(r.id for r, _, _ in props)))),
                           reason=orig.message, before=orig.actual, before_source=orig.source,
                           scope=rule.scope, host_only=child and rule.scope is Scope.HOST,
                           optional=any(r.absent is Status.PASS for r, _, _ in props))
            if prev is None or prev.value != value:
                changed = True
            chosen[tgt] = item
            facts = _set(facts, tgt[0], target_facts(all_rules, *tgt), value)
            for r, ff, _ in props:
                skipped.pop((r.id, ff.key), None)
        if not changed:
            break

    # what still fails once every chosen value is in place (a later fix can make an earlier
    # refusal moot: syncookies on turns the SYN backlog rule off)
    still = {(f.rule, f.key) for f in engine.evaluate(profile_rules, _with(snapshot, facts), params)
             if f.status is Status.FAIL}
    skipped = {k: v for k, v in skipped.items() if k in still}
    items = tuple(sorted(chosen.values(), key=lambda i: (i.kind, i.key)))
    for i in items:
        _check_names(i)
    unit, notes = _service(snapshot, service, items, rootfs)
    unplaced = [i for i in items if i.kind == "systemd" and i.key in CGROUP_DIRECTIVES
                and unit is None and not (rootfs and i.key == "TasksMax")]
    if unplaced:        # a cgroup limit belongs to a unit: limits.conf cannot set it
        items = tuple(i for i in items if i not in unplaced)
        for i in unplaced:
            for rid in i.rules:
                skipped[(rid, i.key)] = Skipped(
                    rid, i.key, f"not written: {i.key}= is set on the server's systemd unit and no unit is known "
                    "(give --service NAME" + (", or audit the running server with --pid" if not rootfs else "") + ")")
    notes += _procps_notes(snapshot, items)
    return FixPlan(items=items, skipped=tuple(skipped.values()), profile=report.profile, host=dict(snapshot.host),
                   service=unit, child_netns=child, rootfs=rootfs, setters=_setters(snapshot, items),
                   notes=tuple(notes), tuned_profile=_tuned(snapshot))


def is_rlimit(kind: str, key: str) -> bool:
    """A process resource limit (soft:hard): limits.conf, LimitX=, DefaultLimitX=; not a cgroup directive."""
    return kind == "limits" or (kind == "systemd" and key.removeprefix("Default") not in CGROUP_DIRECTIVES)


def _limit_value(all_rules: Sequence[Rule], tgt: tuple[str, str], value: int | tuple[int, ...],
                 facts: Mapping[str, Fact]) -> tuple[int, int]:
    """A limit as (soft, hard); one number keeps a higher hard limit the audit saw."""
    hard = next((facts[k].value for k in sorted(target_facts(all_rules, *tgt))
                 if k.endswith(".hard") and k in facts), None)
    return rlimit_pair(value, hard)


def _proposal(rule: Rule, f: Finding, names: Mapping[str, Any], facts: Mapping[str, Fact]) -> int | tuple[int, ...]:
    from tuneup.rulebook.loader import compile_expr

    def fact(key: str) -> Value:
        fa = facts.get(key)
        if fa is None or fa.value is None:
            raise MissingFact(key, "not available")
        return fa.value

    fa = facts.get(f.key)
    local = {**names, "value": fa.value if fa else f.actual, "expected": f.expected_value}
    raw = compile_expr(rule.fix.value).evaluate(local, fact, lambda k: k in facts and facts[k].value is not None)
    return int_value(raw, f"{rule.id} fix value {rule.fix.value!r}")


def _choose(all_rules: Sequence[Rule], tgt: tuple[str, str], props: list, snapshot: Snapshot,
            facts: dict[str, Fact], params: Mapping[str, Any]):
    """The first proposal under which every loaded rule on the facts the target sets passes."""
    from tuneup import engine

    fkeys = target_facts(all_rules, *tgt)
    on_key = [r for r in all_rules if r.fact in fkeys]
    reasons = []
    for prop in props:
        value = prop[2]
        try:
            trial = _set(facts, tgt[0], fkeys, value)
        except FixValueError as exc:
            reasons.append(str(exc))
            continue
        bad = [f for f in engine.evaluate(on_key, _with(snapshot, trial), params)
               if f.status in (Status.FAIL, Status.ERROR)]
        if not bad:
            return prop, ""
        reasons.append(f"{_show(value)} would fail " + ", ".join(f"{f.rule} ({f.expected or f.message})" for f in bad))
    return None, "not written: " + "; ".join(dict.fromkeys(reasons))


def _show(v: Value) -> str:
    return " ".join(map(str, v)) if isinstance(v, tuple) else str(v)


def _check_names(i: FixItem) -> None:
    if i.kind == "sysctl":
        check(SYSCTL_KEY, i.key, "sysctl key")
    elif i.kind == "systemd":
        check(DIRECTIVE, i.key, "systemd directive")
    elif i.kind == "limits":
        check(LIMIT_ITEM, i.key, "limits.conf item")
    elif i.kind == "modprobe":
        check(MODPARAM, i.key, "module.parameter")


def _service(snapshot: Snapshot, service: str | None, items: tuple[FixItem, ...], rootfs: bool) -> tuple[str | None, list[str]]:
    """The unit that LimitX= drop-ins go to: --service, else the audited process's unit."""
    from tuneup.facts.configfiles import unit_name

    notes: list[str] = []
    if service:
        unit = unit_name(service)
    else:
        units = [f.value for k, f in sorted(snapshot.facts.items())
                 if (k == "service.unit" or (k.startswith("proc.") and k.endswith(".unit")))
                 and isinstance(f.value, str) and f.value.endswith(".service")]
        unit = units[0] if units else None
    if unit is not None:
        check(UNIT_NAME, unit, "unit name")
    wants_unit = [i for i in items if i.kind == "systemd" and not i.key.startswith("Default")
                  and i.key not in CGROUP_DIRECTIVES]
    if wants_unit and unit is None:
        if rootfs:
            notes.append("no --service given: process limits go to DefaultLimit*= in system.conf.d "
                         "(every service); give --service NAME for one unit")
        else:
            notes.append("no --service given and the audited process is not a systemd service: process limits "
                         "go to limits.d, which applies to login sessions only (services: --service NAME)")
    return unit, notes


def _procps_notes(snapshot: Snapshot, items: tuple[FixItem, ...]) -> list[str]:
    """procps `sysctl --system` applies /etc/sysctl.conf after every sysctl.d file: no file name can
    win over a key it sets."""
    applier = snapshot.facts.get("boot.applier")
    if applier is None or applier.value != "procps":
        return []
    out = []
    for i in items:
        if i.kind != "sysctl":
            continue
        f = snapshot.facts.get(i.key) if snapshot.origin.startswith("root:") else snapshot.facts.get(f"boot.{i.key}")
        if f is not None and f.source.rsplit(":", 1)[0].endswith("etc/sysctl.conf"):
            out.append(f"{i.key} is set in {f.source}, which procps `sysctl --system` applies after every "
                       "sysctl.d file: remove the line there, or the fix never wins at boot")
    return out


def _tuned(snapshot: Snapshot) -> str | None:
    f = snapshot.facts.get("boot.tuned")
    if f is not None and isinstance(f.value, str) and re.fullmatch(r"[A-Za-z0-9_.+-]{1,100}", f.value):
        return f.value
    return None


def _setters(snapshot: Snapshot, items: tuple[FixItem, ...]) -> dict[str, tuple[str, ...]]:
    """File names (basenames) that set the keys tuneup writes, per area, from the facts' sources."""
    out: dict[str, list[str]] = {}

    def add(area: str, source: str) -> None:
        path = source.rsplit(":", 1)[0] if ":" in source else source
        if "/" in path and path.endswith(".conf"):
            out.setdefault(area, []).append(path)

    facts = snapshot.facts
    every = facts.get("boot.sysctl_names")
    if any(i.kind == "sysctl" for i in items) and every is not None and isinstance(every.value, str) and every.value:
        out.setdefault("sysctl", []).extend(every.value.split("/"))
    for i in items:
        if i.kind == "sysctl":
            for k in (i.key, f"boot.{i.key}"):
                if k in facts and facts[k].value is not None:
                    add("sysctl", facts[k].source)
            c = facts.get(f"boot.conflict.{i.key}")
            if c is not None and isinstance(c.value, str):
                for part in c.value.split("; "):
                    add("sysctl", part.split(" sets ", 1)[0])
        elif i.kind == "systemd" and i.key in CGROUP_DIRECTIVES:   # the drop-in that sets it now
            fact = {"TasksMax": "cgroup.pids.max", "MemoryMax": "cgroup.memory.max"}[i.key]
            for k, f in facts.items():
                if (k == fact or k.endswith("." + fact)) and f.value is not None:
                    add("systemd", f.source.split(" (", 1)[0])
        elif i.kind in ("systemd", "limits"):
            for k, f in facts.items():
                if k.startswith(("rlimit.", "pam.")) and f.value is not None:
                    add("limits" if k.startswith("pam.") else "systemd", f.source.split(" (", 1)[0])
    return {k: tuple(dict.fromkeys(v)) for k, v in out.items()}


_OURS = re.compile(r"-tuneup(-[a-z]+)?\.conf$")
# the characters tuneup puts after a copied prefix, in byte order ("~" is the highest printable ASCII)
_SAFE = "z~"
NAME_MAX = 255


class FixNameError(FixValueError):
    pass


def conf_name(setters: Iterable[str], minimum: int = 60, suffix: str = TUNEUP_NAME) -> str:
    """A file name that sorts (bytewise, as systemd and procps sort: strcmp) after every name given
    (paths or basenames: every file in the drop-in directories), so it is applied last and wins.
    Earlier tuneup files and dot-files (never read) do not count.

    The smallest NN-SUFFIX with NN >= minimum when one sorts last; otherwise the shortest
    PREFIX + C + "-" + SUFFIX where PREFIX is the start of the name that sorts last and C a safe
    character above the one that follows it. At most 40 + len(name) steps, whatever the names;
    a name that cannot be beaten with printable characters raises FixNameError."""
    # /etc/sysctl.conf is not in a drop-in directory: no name in sysctl.d sorts after it under procps
    names = [s.rsplit("/", 1)[-1] for s in setters if not s.rstrip("/").endswith("etc/sysctl.conf")]
    names = [n for n in names if n and not _OURS.search(n) and not n.startswith(".")]
    top = max((os.fsencode(n) for n in names), default=b"")
    for nn in range(minimum, 100):
        cand = f"{nn:02d}-{suffix}"
        if cand.encode() > top:
            return cand
    for i, byte in enumerate(top):
        above = [c for c in _SAFE if ord(c) > byte]
        if not above:
            continue
        try:
            prefix = top[:i].decode("utf-8")
        except UnicodeDecodeError:
            break
        if not prefix.isprintable() or "/" in prefix:
            break
        cand = f"{prefix}{above[0]}-{suffix}"
        if len(os.fsencode(cand)) > NAME_MAX:
            break
        return cand
    raise FixNameError(f"no file name tuneup can write sorts after {printable(os.fsdecode(top))!r}: "
                       "rename that file or write the setting into it")


__all__ = ["FixItem", "FixPlan", "Skipped", "plan_fixes", "conf_name", "target_facts", "is_rlimit", "Severity",
           "CGROUP_DIRECTIVES"]
