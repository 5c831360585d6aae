"""Core types that cross module boundaries. Standard library only."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Union

from tuneup.compat import StrEnum
from tuneup.record import FRESH, Frozen, Mutable

_set = object.__setattr__   # the written-out __init__s of the Frozen classes below

# RLIM_INFINITY as the kernel reports it; "unlimited" in /proc/PID/limits.
RLIM_INFINITY = 2**64 - 1

Value = Union[int, float, str, tuple, None]


class Severity(enum.IntEnum):
    INFO = 0
    WARNING = 1
    CRITICAL = 2

    @classmethod
    def parse(cls, text: str) -> "Severity":
        return cls[text.upper()]

    def __str__(self) -> str:
        return self.name.lower()


class Status(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"        # not applicable here (kernel version, module not loaded, key absent)
    UNKNOWN = "unknown"  # the fact could not be read (permission, not collected)
    ERROR = "error"      # the rule itself could not be evaluated
    WAIVED = "waived"


class Scope(StrEnum):
    NETNS = "netns"      # per network namespace: a container can set it
    HOST = "host"        # host-global: only the host (initial namespace) can change it
    PROCESS = "process"  # a property of a process (rlimits), evaluated per target process
    LISTENER = "listener"  # a property of a listening socket, evaluated per listener observed


@dataclass(init=False, eq=False, repr=False)
class Fact(Frozen):
    """One observed value. value None with error None means: absent on this host."""

    key: str
    value: Value
    source: str
    error: str | None = None

    def __init__(self, key, value, source, error=None) -> None:
        _set(self, "key", key)
        _set(self, "value", value)
        _set(self, "source", source)
        _set(self, "error", error)

    @property
    def absent(self) -> bool:
        return self.value is None and self.error is None


@dataclass(init=False, eq=False, repr=False)
class FixSpec(Frozen):
    """How the fix for a rule is written: the kind of file, the key, and the value expression."""

    kind: str                 # "sysctl" | "limits" | "systemd" | "modprobe"
    key: str                  # sysctl key, "nofile", "LimitNOFILE", ...
    value: str                # expression; may use `expected`

    def __init__(self, kind, key, value) -> None:
        _set(self, "kind", kind)
        _set(self, "key", key)
        _set(self, "value", value)


@dataclass(init=False, eq=False, repr=False)
class Hint(Frozen):
    """Extra advice appended to a failure message when `when` (an expression over value, expected,
    params, host values and facts) holds; `text` may name {value} and {expected}."""

    text: str
    when: str | None = None

    def __init__(self, text, when=None) -> None:
        _set(self, "text", text)
        _set(self, "when", when)


@dataclass(init=False, eq=False, repr=False)
class Rule(Frozen):
    """One check, as data: the fact it reads, the operator and the expected expression (rules/*.toml)."""

    id: str
    title: str
    severity: Severity
    fact: str
    op: str
    expected: str             # expression over params, host values and facts
    scope: Scope
    rationale: str
    refs: tuple[str, ...]
    section: str = "general"
    actual: str | None = None  # optional expression over `value` (the fact) for derived values
    when: str | None = None   # condition; false -> skip
    absent: Status = Status.SKIP   # status when the fact is absent on this kernel
    absent_reason: str | None = None
    profiles: tuple[str, ...] = ("baseline",)
    fix: FixSpec | None = None
    origin: str = ""          # "rules/core.toml:12"
    hints: tuple[Hint, ...] = ()   # advice shown on failure, e.g. why a soft limit of 1024 stays
    # The raw need, without headroom (an expression like `expected`). `expected` is then the need
    # plus headroom: a value that meets the need but not the headroom fails as a warning "within
    # the margin"; only a value below the need fails at the rule's severity.
    need: str | None = None
    # The threshold is an estimate (per-connection memory): a failure is at most a warning.
    estimate: bool = False

    def __init__(self, id, title, severity, fact, op, expected, scope, rationale, refs, section="general",
                 actual=None, when=None, absent=Status.SKIP, absent_reason=None, profiles=("baseline",),
                 fix=None, origin="", hints=(), need=None, estimate=False) -> None:
        _set(self, "id", id)
        _set(self, "title", title)
        _set(self, "severity", severity)
        _set(self, "fact", fact)
        _set(self, "op", op)
        _set(self, "expected", expected)
        _set(self, "scope", scope)
        _set(self, "rationale", rationale)
        _set(self, "refs", refs)
        _set(self, "section", section)
        _set(self, "actual", actual)
        _set(self, "when", when)
        _set(self, "absent", absent)
        _set(self, "absent_reason", absent_reason)
        _set(self, "profiles", profiles)
        _set(self, "fix", fix)
        _set(self, "origin", origin)
        _set(self, "hints", hints)
        _set(self, "need", need)
        _set(self, "estimate", estimate)


@dataclass(init=False, eq=False, repr=False)
class Param(Frozen):
    """A profile parameter declared in profiles.toml: its default, or the expression it is derived by."""

    name: str
    default: int | float
    description: str
    derive: str | None = None   # expression over other parameters (a rate from a time constant)

    def __init__(self, name, default, description, derive=None) -> None:
        _set(self, "name", name)
        _set(self, "default", default)
        _set(self, "description", description)
        _set(self, "derive", derive)


@dataclass(init=False, eq=False, repr=False)
class Profile(Frozen):
    """A resolved profile: inherited parameter defaults plus its own and --set values."""

    name: str
    description: str
    extends: str | None
    params: dict[str, int | float]      # resolved: inherited defaults plus own overrides
    exclude: tuple[str, ...] = ()
    origin: str = ""

    def __init__(self, name, description, extends, params, exclude=(), origin="") -> None:
        _set(self, "name", name)
        _set(self, "description", description)
        _set(self, "extends", extends)
        _set(self, "params", params)
        _set(self, "exclude", exclude)
        _set(self, "origin", origin)


@dataclass(init=False, eq=False, repr=False)
class Snapshot(Mutable):
    """Everything the engine needs, collected once. Pure data after collection."""

    host: dict[str, Any]
    facts: dict[str, Fact]
    processes: list[dict[str, Any]] = field(default_factory=list)  # {"pid", "name", ...}
    listeners: list[dict[str, Any]] | None = None  # {"local", "backlog", "queue", "pid", "process"}; None: not observed
    collected_at: str = ""
    origin: str = "live"      # "live", a snapshot path, or "root:DIR"

    def __init__(self, host, facts, processes=FRESH, listeners=None, collected_at="", origin="live") -> None:
        self.host = host
        self.facts = facts
        self.processes = [] if processes is FRESH else processes
        self.listeners = listeners
        self.collected_at = collected_at
        self.origin = origin

    def get(self, key: str) -> Fact | None:
        return self.facts.get(key)


@dataclass(init=False, eq=False, repr=False)
class Finding(Frozen):
    """The verdict of one rule on one snapshot (per target for process and listener rules)."""

    rule: str
    key: str
    status: Status
    severity: Severity
    actual: Value
    expected: str             # rendered, e.g. ">= 4096"
    message: str
    title: str = ""
    scope: Scope = Scope.HOST
    host_only: bool = False   # failing host-global key audited from a child netns
    source: str = ""          # where the fact came from (/proc/sys/..., file:line)
    target: str | None = None  # "pid 1234 (nginx)" for process rules
    expected_value: Value = None
    rationale: str = ""
    refs: tuple[str, ...] = ()
    waiver: str | None = None  # "reason (until 2025-06-30, waivers.toml:4)" when a waiver matched
    how: str = ""             # one line: how to fix it ("" = tuneup cannot fix it by config)

    def __init__(self, rule, key, status, severity, actual, expected, message, title="", scope=Scope.HOST,
                 host_only=False, source="", target=None, expected_value=None, rationale="", refs=(),
                 waiver=None, how="") -> None:
        _set(self, "rule", rule)
        _set(self, "key", key)
        _set(self, "status", status)
        _set(self, "severity", severity)
        _set(self, "actual", actual)
        _set(self, "expected", expected)
        _set(self, "message", message)
        _set(self, "title", title)
        _set(self, "scope", scope)
        _set(self, "host_only", host_only)
        _set(self, "source", source)
        _set(self, "target", target)
        _set(self, "expected_value", expected_value)
        _set(self, "rationale", rationale)
        _set(self, "refs", refs)
        _set(self, "waiver", waiver)
        _set(self, "how", how)


@dataclass(init=False, eq=False, repr=False)
class Report(Frozen):
    """Every finding of one audited host, with the profile and parameters it was judged by."""

    profile: str
    params: dict[str, int | float]
    host: dict[str, Any]
    findings: tuple[Finding, ...]
    origin: str = "live"
    collected_at: str = ""    # when the facts were collected (ISO 8601, from the snapshot)

    def __init__(self, profile, params, host, findings, origin="live", collected_at="") -> None:
        _set(self, "profile", profile)
        _set(self, "params", params)
        _set(self, "host", host)
        _set(self, "findings", findings)
        _set(self, "origin", origin)
        _set(self, "collected_at", collected_at)

    def summary(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for f in self.findings:
            counts[f.status.value] += 1
        return counts


@dataclass(init=False, eq=False, repr=False)
class HostRow(Mutable):
    """What a fleet keeps of one audited host: a few strings and counts, never its findings."""

    label: str
    hostname: str
    origin: str
    kernel: str
    collected_at: str
    counts: dict[str, int]
    failing: tuple[str, ...]      # rule ids that fail (or error) on this host
    gate: bool = False            # fails the run's exit code (--fail-on, --include-host)

    def __init__(self, label, hostname, origin, kernel, collected_at, counts, failing, gate=False) -> None:
        self.label = label
        self.hostname = hostname
        self.origin = origin
        self.kernel = kernel
        self.collected_at = collected_at
        self.counts = counts
        self.failing = failing
        self.gate = gate

    @property
    def bad(self) -> int:
        return self.counts["fail"] + self.counts["error"]


class FleetSummary:
    """A fleet reduced one report at a time: memory grows with hosts x failing rules (ids and
    counts), not with findings, so ten thousand hosts fit in a few megabytes.

    Labels: the hostname; when a hostname occurs twice, every host of that name gets its origin too
    (rows already reduced are relabelled; text already streamed for the first one keeps its name).
    """

    def __init__(self, profile: str, params: dict[str, int | float], dups: frozenset[str] = frozenset()) -> None:
        self.profile = profile
        self.params = params
        self.rows: list[HostRow] = []
        self._rules: dict[str, list[Any]] = {}      # id -> [severity, title, [row index]]
        self._counts = {s.value: 0 for s in Status}
        self._seen: set[str] = set()
        self._first: dict[str, int] = {}
        self._dups = dups

    def label_for(self, report: Report) -> str:
        name = str(report.host.get("hostname", "?"))
        return f"{name} ({report.origin})" if name in self._seen or name in self._dups else name

    def add(self, report: Report, collected_at: str | None = None, gate: bool = False,
            label: str | None = None) -> HostRow:
        label = label or self.label_for(report)
        name = str(report.host.get("hostname", "?"))
        first = self._first.get(name)
        if first is None:
            self._first[name] = len(self.rows)
        else:   # a second host of that name: the first one is told apart by its origin too
            row = self.rows[first]
            if row.label == name:
                row.label = f"{name} ({row.origin})"
        self._seen.add(name)
        counts = report.summary()
        failing: list[str] = []
        index = len(self.rows)
        for f in report.findings:
            if f.status in (Status.FAIL, Status.ERROR):
                entry = self._rules.get(f.rule)
                if entry is None:
                    entry = self._rules[f.rule] = [f.severity, f.title, []]
                if not entry[2] or entry[2][-1] != index:
                    entry[2].append(index)
                    failing.append(f.rule)
        for k, v in counts.items():
            self._counts[k] += v
        if collected_at is None:
            collected_at = str(getattr(report, "collected_at", "") or report.host.get("collected_at", "") or "")
        row = HostRow(label=label, hostname=name, origin=report.origin, kernel=str(report.host.get("kernel", "?")),
                      collected_at=collected_at, counts=counts, failing=tuple(failing), gate=gate)
        self.rows.append(row)
        return row

    def __len__(self) -> int:
        return len(self.rows)

    def summary(self) -> dict[str, int]:
        return dict(self._counts)

    @property
    def failing_hosts(self) -> int:
        return sum(1 for r in self.rows if r.bad)

    @property
    def gate(self) -> bool:
        return any(r.gate for r in self.rows)

    def failing_rules(self) -> list[tuple[str, Severity, str, list[str]]]:
        """(rule, severity, title, [host labels]) for every rule that fails (or errors) somewhere:
        the most severe first, then the most hosts, then by id; hosts by most failures."""
        order = {i: k for k, i in enumerate(self.host_order())}
        out = []
        for rid, (sev, title, idx) in self._rules.items():
            out.append((rid, sev, title, [self.rows[i].label for i in sorted(idx, key=order.__getitem__)]))
        return sorted(out, key=lambda t: (-t[1], -len(t[3]), t[0]))

    def host_order(self) -> list[int]:
        """Row indexes, most failures first (as the terminal shows them), then by label."""
        return sorted(range(len(self.rows)), key=lambda i: (-self.rows[i].bad, self.rows[i].label))

    def hosts_by_failures(self) -> list[HostRow]:
        return [self.rows[i] for i in self.host_order()]


@dataclass(init=False, eq=False, repr=False)
class Fleet(Frozen):
    """Reports of many hosts audited with the same rules, profile and parameters."""

    profile: str
    params: dict[str, int | float]
    reports: tuple[Report, ...]

    def __init__(self, profile, params, reports) -> None:
        _set(self, "profile", profile)
        _set(self, "params", params)
        _set(self, "reports", reports)

    def summary(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Status}
        for r in self.reports:
            for k, v in r.summary().items():
                counts[k] += v
        return counts

    def failing_rules(self) -> list[tuple[str, Severity, str, list[str]]]:
        """(rule, severity, title, [host labels]) for every rule that fails (or errors) somewhere,
        the most severe first, then most hosts. A host is labelled by hostname, or by hostname and origin if the
        hostname occurs twice in the fleet."""
        labels = self.labels()
        seen: dict[str, tuple[Severity, str, list[str]]] = {}
        for label, r in zip(labels, self.reports):
            for f in r.findings:
                if f.status in (Status.FAIL, Status.ERROR):
                    sev, title, hosts = seen.setdefault(f.rule, (f.severity, f.title, []))
                    if not hosts or hosts[-1] != label:
                        hosts.append(label)
        return sorted(((rid, sev, title, hosts) for rid, (sev, title, hosts) in seen.items()),
                      key=lambda t: (-t[1], -len(t[3]), t[0]))

    def reduce(self, gate=None) -> FleetSummary:
        """The streaming summary of these reports (``gate(report) -> bool`` marks hosts that fail the run)."""
        names = [str(r.host.get("hostname", "?")) for r in self.reports]
        seen: set[str] = set()
        dups = frozenset(n for n in names if n in seen or seen.add(n))
        out = FleetSummary(self.profile, dict(self.params), dups)
        for r in self.reports:
            out.add(r, gate=bool(gate(r)) if gate else False)
        return out

    def labels(self) -> list[str]:
        names = [str(r.host.get("hostname", "?")) for r in self.reports]
        counts: dict[str, int] = {}
        for n in names:
            counts[n] = counts.get(n, 0) + 1
        dup = {n for n, c in counts.items() if c > 1}
        return [f"{n} ({r.origin})" if n in dup else n for n, r in zip(names, self.reports)]
