"""evaluate(rules, snapshot, params) -> Report. Pure: no I/O, no printing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tuneup.errors import ExprError, MissingFact
from tuneup.model import RLIM_INFINITY, Fact, Finding, Report, Rule, Scope, Severity, Snapshot, Status, Value
from tuneup.rulebook.loader import compile_expr
from tuneup.rulebook.ops import OPERATORS, describe


def render(v: Any) -> str:
    """A value as an operator reads it: unlimited, space-separated tuples, whole floats as ints."""
    if v is None:
        return "absent"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int) and v >= RLIM_INFINITY:
        return "unlimited"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() or abs(v) >= 100 else f"{v:.3g}"
    if isinstance(v, tuple):
        return " ".join(render(x) for x in v) if v else "(empty)"
    if v == "":
        return "(empty)"
    return str(v)


def host_names(host: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ram_bytes": int(host.get("mem_total_bytes") or 0),
        "cpus": int(host.get("cpus") or 1),
        "page_size": int(host.get("page_size") or 4096),
        "kernel": _kernel(host),
    }


def _kernel(host: Mapping[str, Any]) -> Any:
    """The kernel version tuple; for a tree whose kernel is unknown, a value whose every
    comparison raises MissingFact (version-conditioned rules skip, saying why)."""
    if host.get("origin") == "root" and not host.get("kernel_version"):
        from tuneup.kdefaults import UnknownKernel

        return UnknownKernel(str(host.get("kernel_why") or "kernel not found in the tree"))
    return tuple(host.get("kernel_version") or (0, 0, 0))


# Host values that rules may also name as facts (e.g. a rule about RAM itself): fact key -> host field.
HOST_FACTS = {"host.ram_bytes": "mem_total_bytes", "host.cpus": "cpus"}


def _host_facts(snapshot: Snapshot) -> dict[str, Fact]:
    """Snapshot facts plus host.* facts synthesised from the host identity (never overriding)."""
    extra = {key: Fact(key, snapshot.host[field], f"host identity ({field})")
             for key, field in HOST_FACTS.items()
             if isinstance(snapshot.host.get(field), int) and snapshot.host[field] > 0 and key not in snapshot.facts}
    return {**snapshot.facts, **extra} if extra else snapshot.facts


class _Facts:
    """Fact lookup for one rule evaluation; process rules see their target's facts first."""

    def __init__(self, facts: Mapping[str, Fact], prefix: str = "") -> None:
        self.facts = facts
        self.prefix = prefix

    def resolve(self, key: str) -> str:
        if self.prefix and (self.prefix + key) in self.facts:
            return self.prefix + key
        return key

    def value(self, key: str) -> Value:
        k = self.resolve(key)
        f = self.facts.get(k)
        if f is None:
            raise MissingFact(k, "not collected in this snapshot")
        if f.error:
            raise MissingFact(k, f"unreadable ({f.error})")
        if f.value is None:
            raise MissingFact(k, "absent on this kernel")
        return f.value

    def has(self, key: str) -> bool:
        f = self.facts.get(self.resolve(key))
        return f is not None and f.value is not None


def evaluate(rules: Iterable[Rule], snapshot: Snapshot, params: Mapping[str, Any]) -> list[Finding]:
    names = {**host_names(snapshot.host), **params}
    child_netns = snapshot.host.get("netns") == "child"
    all_facts = _host_facts(snapshot)
    findings: list[Finding] = []
    proc_facts = _process_identity(snapshot)
    for rule in rules:
        if rule.scope is Scope.PROCESS and snapshot.processes:
            for proc in snapshot.processes:
                unit = f", {proc['unit']}" if proc.get("unit") else ""
                target = f"pid {proc['pid']} ({proc.get('name', '?')}{unit})"
                findings.append(_evaluate_one(rule, snapshot, names,
                                              _Facts({**all_facts, **proc_facts}, f"proc.{proc['pid']}."),
                                              target, child_netns))
        elif rule.scope is Scope.PROCESS:
            findings.append(_no_server(rule, snapshot, names, all_facts, child_netns))
        elif rule.scope is Scope.LISTENER:
            findings.extend(_per_listener(rule, snapshot, names, all_facts, child_netns))
        else:
            findings.append(_evaluate_one(rule, snapshot, names, _Facts(all_facts), None, child_netns))
    return findings


NO_SERVER = "no server named (use --pid, --process or --service)"


def _process_identity(snapshot: Snapshot) -> dict[str, Fact]:
    """proc.PID.process.name from the snapshot's process list, so a rule can name the daemons it
    is about (`fact('process.name') in (...)`)."""
    out = {}
    for proc in snapshot.processes:
        key = f"proc.{proc['pid']}.process.name"
        if key not in snapshot.facts and proc.get("name"):
            out[key] = Fact(key, str(proc["name"]), "process list of the snapshot")
    return out


def _no_server(rule: Rule, snapshot: Snapshot, names: dict[str, Any], all_facts: Mapping[str, Fact],
               child_netns: bool) -> Finding:
    """A process rule with no running server named. Never tuneup's own limits: only a snapshot that
    says whose limits its rlimit.* facts are (host.limits_of: a --service unit, or systemd's
    DefaultLimitNOFILE= for a tree) is judged, under that label; the default a new service gets is
    at most a warning. Otherwise (a live audit or `collect` without a server) the rule skips."""
    label = snapshot.host.get("limits_of") or ""
    service = all_facts.get("service.unit")
    if label and rule.fact in all_facts:
        f = _evaluate_one(rule, snapshot, names, _Facts(all_facts), label, child_netns)
        if service is None and f.status in (Status.FAIL, Status.ERROR) and f.severity > Severity.WARNING:
            f = replace(f, severity=Severity.WARNING,
                        message=f"{f.message} (what a new service gets by default; name the server "
                                "to judge it: at most a warning)")
        return f
    return Finding(rule=rule.id, key=rule.fact, status=Status.SKIP, severity=rule.severity, actual=None,
                   expected="", message=NO_SERVER, title=rule.title, scope=rule.scope, target=None,
                   rationale=rule.rationale, refs=rule.refs)


def listener_label(lst: Mapping[str, Any]) -> str:
    owner = f"{lst.get('process') or '?'} pid {lst['pid']}" if lst.get("pid") else "owner not visible"
    return f"listener {lst['local']} ({owner})"


def _per_listener(rule: Rule, snapshot: Snapshot, names: dict[str, Any], all_facts: Mapping[str, Any],
                  child_netns: bool) -> list[Finding]:
    if not snapshot.listeners:
        why = ("no listening TCP socket in this network namespace" if snapshot.listeners is not None
               else "this snapshot has no socket census (collected from files, or by an older tuneup)")
        return [Finding(rule=rule.id, key=rule.fact, status=Status.SKIP, severity=rule.severity,
                        actual=None, expected="", message=f"not applicable: {why}", title=rule.title,
                        scope=rule.scope, rationale=rule.rationale, refs=rule.refs)]
    return [_evaluate_one(rule, snapshot, names, _Facts(all_facts, f"listener.{lst['local']}."),
                          listener_label(lst), child_netns)
            for lst in snapshot.listeners]


def _evaluate_one(rule: Rule, snapshot: Snapshot, names: dict[str, Any], facts: _Facts,
                  target: str | None, child_netns: bool) -> Finding:
    key = facts.resolve(rule.fact)
    fact = facts.facts.get(key)
    base = dict(rule=rule.id, key=key, severity=rule.severity, title=rule.title, scope=rule.scope,
                target=target, rationale=rule.rationale, refs=rule.refs, source=fact.source if fact else "",
                how=how_to_fix(rule))

    def finding(status: Status, message: str, actual: Value = None, expected: str = "",
                expected_value: Value = None, host_only: bool = False, severity: Severity | None = None) -> Finding:
        if target and rule.scope in (Scope.PROCESS, Scope.LISTENER):
            message = f"{target}: {message}"
        fields = dict(base, severity=severity) if severity is not None else base
        return Finding(status=status, message=message, actual=actual, expected=expected,
                       expected_value=expected_value, host_only=host_only, **fields)

    if rule.when:
        try:
            applies = compile_expr(rule.when).evaluate(names, facts.value, facts.has)
        except MissingFact as exc:
            return finding(Status.SKIP, f"not applicable: {exc}")
        except ExprError as exc:
            return finding(Status.ERROR, f"rule condition failed: {exc}")
        if not applies:
            return finding(Status.SKIP, f"not applicable: condition {rule.when!r} is false here")

    if fact is None:
        if rule.scope is Scope.PROCESS and not facts.prefix:
            return finding(Status.SKIP, f"{rule.fact} is observed on a running server only")
        return finding(Status.UNKNOWN, f"{key} was not collected in this snapshot")
    if fact.error:
        return finding(Status.UNKNOWN, f"{key} could not be read: {fact.error}")
    if fact.value is None:
        if rule.scope is Scope.HOST and child_netns:
            return finding(Status.SKIP, f"{key} is host-global and not visible from this child network "
                                        "namespace: audit the host")
        reason = rule.absent_reason or f"{key} is absent on this kernel"
        if rule.absent is Status.PASS:
            return finding(Status.PASS, f"{reason} (fine)")
        return finding(rule.absent, reason)

    local = {**names, "value": fact.value}
    try:
        actual = compile_expr(rule.actual).evaluate(local, facts.value, facts.has) if rule.actual else fact.value
        expected_value = compile_expr(rule.expected).evaluate(local, facts.value, facts.has)
    except MissingFact as exc:
        return finding(Status.UNKNOWN, f"threshold needs {exc}", actual=fact.value)
    except ExprError as exc:
        return finding(Status.ERROR, f"rule could not be evaluated: {exc}", actual=fact.value)
    want = describe(rule.op, expected_value, render)
    try:
        ok = OPERATORS[rule.op](actual, expected_value)
    except (ExprError, TypeError) as exc:
        return finding(Status.ERROR, f"cannot compare {render(actual)} {rule.op} {render(expected_value)}: {exc}",
                       actual=actual, expected=want, expected_value=expected_value)
    shown = render(actual) if not rule.actual else f"{render(actual)} (from {render(fact.value)})"
    if ok:
        return finding(Status.PASS, f"{key} is {shown}", actual, want, expected_value)
    host_only = rule.scope is Scope.HOST and child_netns
    msg = f"{key} is {shown}, want {want}"
    severity = rule.severity
    margin = _margin(rule, local, facts, actual)
    if margin is not None:
        need_ok, need_value = margin
        if need_ok:
            severity = min(severity, Severity.WARNING)
            msg += f" (need {render(need_value)}: within the margin, the headroom above the need is missing)"
        else:
            msg += f" (need {render(need_value)} without headroom)"
    if rule.estimate and severity > Severity.WARNING:
        severity = Severity.WARNING
        msg += " (an estimate from per-connection defaults: at most a warning until measured)"
    if host_only:
        msg += " (host-global: only the host can change it)"
    hint = _hint(rule, {**local, "expected": expected_value}, facts, actual, expected_value)
    if hint:
        msg += f". {hint}"
    return finding(Status.FAIL, msg, actual, want, expected_value, host_only, severity)


def _margin(rule: Rule, local: dict[str, Any], facts: _Facts, actual: Value) -> tuple[bool, Value] | None:
    """(does the value meet the raw need?, the need) for a rule that states one; None otherwise."""
    if not rule.need:
        return None
    try:
        need = compile_expr(rule.need).evaluate(local, facts.value, facts.has)
        return bool(OPERATORS[rule.op](actual, need)), need
    except (MissingFact, ExprError, TypeError):
        return None


def _hint(rule: Rule, local: dict[str, Any], facts: _Facts, actual: Value, expected: Value) -> str:
    """The failing rule's hints whose condition holds, {value}/{expected} filled in; a hint whose
    condition cannot be evaluated (a fact it reads is missing) is left out, never an error."""
    out = []
    for h in rule.hints:
        if h.when:
            try:
                if not compile_expr(h.when).evaluate(local, facts.value, facts.has):
                    continue
            except (MissingFact, ExprError):
                continue
        out.append(h.text.replace("{value}", render(actual)).replace("{expected}", render(expected)))
    return " ".join(out)


_HOW = {
    "sysctl": "`tuneup fix` sets {key} in /etc/sysctl.d/ and `sysctl --system` loads it",
    "modprobe": "`tuneup fix` sets {key} in /etc/modprobe.d/ (takes effect when the module loads)",
    "systemd": "`tuneup fix --service UNIT` sets {key}= in the unit's drop-in; restart the service",
    "limits": "`tuneup fix` sets {key} in /etc/security/limits.d/ (login sessions only)",
}


def how_to_fix(rule: Rule) -> str:
    """One line saying how the finding is fixed; "" when no config tuneup writes can fix it."""
    if rule.fix is None:
        return ""
    text = _HOW.get(rule.fix.kind, "`tuneup fix` writes {key}")
    return text.format(key=rule.fix.key or rule.fact)


def build_report(rules: Iterable[Rule], snapshot: Snapshot, profile: str, params: Mapping[str, Any]) -> Report:
    findings = evaluate(rules, snapshot, params)
    return Report(profile=profile, params=dict(params), host=dict(snapshot.host),
                  findings=tuple(findings), origin=snapshot.origin, collected_at=snapshot.collected_at)


def failing(report: Report, threshold: Severity | None, include_host: bool = False) -> list[Finding]:
    """Findings that make the run fail: fail or error at or above the threshold (None = never).

    A host-global failure seen from a child network namespace does not count against the
    container unless include_host is set: the container cannot change it.
    """
    if threshold is None:
        return []
    return [f for f in report.findings
            if f.status in (Status.FAIL, Status.ERROR) and f.severity >= threshold
            and (include_host or not f.host_only)]
