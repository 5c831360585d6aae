"""Boot truth: will the next boot keep, and really apply, what the audit saw? Pure: facts in, findings out.

The checks are rules in rules/boot.toml (BOOT-*), listed, documented and waivable like the others.
Each reads a fact under boot.check.* that this module derives per sysctl key (or per service) from
the boot facts that facts/configfiles.py collects:
  boot.KEY                the value the next boot applies to sysctl KEY (source: file:line)
  boot.conflict.KEY       several files set KEY to different values (value lists them)
  boot.module_key.KEY     a module key whose line never applies at boot (module loaded too late)
  boot.rejected.KEY       a line the kernel refuses (EINVAL)
  boot.sysctl_conf_unread /etc/sysctl.conf sets keys but systemd-sysctl never reads it
  pam.nofile.soft/hard    what limits.conf / limits.d give PAM logins
  service.unit, proc.PID.unit, rlimit.nofile.*   the systemd service whose limits are audited
The derived fact is "" when all is well and says what is wrong otherwise; the rule (fact == '')
is evaluated by the engine on it, one finding per key. Only failures are reported. A snapshot
without boot facts (an old snapshot, a test) gets none of these findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tuneup.model import Fact, Finding, Rule, Scope, Severity, Snapshot, Status

BOOT_FACT = "boot.check."
CHECKS: dict[str, Rule] = {}   # the BOOT-* checks are rules now (rules/boot.toml); kept for old imports


def is_boot_rule(rule: Rule) -> bool:
    return rule.fact.startswith(BOOT_FACT)


def _judge(rule: Rule | None, snapshot: Snapshot, params: Mapping[str, Any], key: str, problem: str,
           source: str, *, severity: Severity | None = None, scope: Scope | None = None,
           target: str | None = None, host_only: bool = False, actual: Any = None) -> Finding | None:
    """Evaluate a boot rule on its derived fact for one key; None when it passes."""
    from tuneup import engine

    if rule is None:
        return None
    fact = Fact(rule.fact, problem, source)
    hypo = Snapshot(host=snapshot.host, facts={rule.fact: fact}, origin=snapshot.origin)
    # the derived fact is judged once, as a host fact: a process-scoped boot rule (PAM limits)
    # already names its unit, and the engine's per-process fan-out has no process to visit here
    f = engine.evaluate([replace(rule, scope=Scope.HOST)], hypo, params)[0]
    if f.status is Status.PASS:
        return None
    message = problem + (" (host-global: only the host can change it)" if host_only else "")
    return replace(f, key=key, message=message if f.status is Status.FAIL else f.message,
                   severity=severity if severity is not None else f.severity, scope=scope or rule.scope,
                   source=source, target=target, host_only=host_only, actual=actual,
                   how=f.how or HOW.get(rule.id, ""))


# One line each: how the operator fixes a boot finding (the rules have no `fix`: the remedy is
# editing or removing a file, which tuneup does not do on its own).
HOW = {
    "BOOT-REVERTS": "persist the value you want in one /etc/sysctl.d/ file (`tuneup fix` writes the profile's values there)",
    "BOOT-CONFLICT": "set the key in one file only: remove it from the files that lose (the one sorting last wins)",
    "BOOT-PAM-LIMITS": "set LimitNOFILE= in the service's unit (`tuneup fix --service UNIT` writes a drop-in)",
    "BOOT-MODULE-KEY": "load the module at boot (/etc/modules-load.d/) so systemd-sysctl can set its key (`tuneup fix` writes both)",
    "BOOT-LINE-REJECTED": "correct or remove the line: systemd-sysctl skips it at boot",
    "BOOT-SYSCTL-CONF-UNREAD": "link /etc/sysctl.conf as /etc/sysctl.d/99-sysctl.conf, or move its lines into /etc/sysctl.d/",
}


def findings(rules: Iterable[Rule], snapshot: Snapshot, params: Mapping[str, Any],
             report_findings: Iterable[Finding] = (), boot_rules: Iterable[Rule] = ()) -> list[Finding]:
    """Non-passing boot findings for the sysctl keys the rules read (one per key and rule)."""
    from tuneup import engine
    from tuneup.engine import render

    rules = [r for r in rules if not is_boot_rule(r)]
    by_id = {r.id: r for r in boot_rules}
    facts = snapshot.facts
    live_status = {(f.rule, f.key): f.status for f in report_findings}
    out: list[Finding] = []
    scopes = {r.fact: r.scope for r in rules}
    child = snapshot.host.get("netns") == "child"
    rootfs = snapshot.origin.startswith("root:")

    def host_only(key: str) -> bool:
        return child and scopes.get(key) is Scope.HOST

    for key in sorted({r.fact for r in rules}):
        conflict = facts.get(f"boot.conflict.{key}")
        if conflict is not None and conflict.value:
            msg = f"{key} is set in several files: {conflict.value}; {conflict.source} wins (applied last)"
            f = _judge(by_id.get("BOOT-CONFLICT"), snapshot, params, key, msg, conflict.source,
                       scope=scopes.get(key, Scope.HOST), host_only=host_only(key))
            out += [f] if f else []
        for name, rid in (("module_key", "BOOT-MODULE-KEY"), ("rejected", "BOOT-LINE-REJECTED")):
            bad = facts.get(f"boot.{name}.{key}")
            if bad is None or not bad.value:
                continue
            msg = str(bad.value)
            live = facts.get(key)
            if name == "module_key" and not rootfs and live is not None and live.value is not None:
                msg += f"; the live value {render(live.value)} was set by hand, not at boot"
            elif rootfs:
                msg += "; the kernel default applies instead"
            f = _judge(by_id.get(rid), snapshot, params, key, msg, bad.source,
                       scope=scopes.get(key, Scope.HOST), host_only=host_only(key))
            out += [f] if f else []
    for key in sorted({r.fact for r in rules if f"boot.{r.fact}" in facts}):
        boot = facts[f"boot.{key}"]
        live = facts.get(key)
        if boot.value is None or live is None or live.value is None or live.value == boot.value:
            continue
        # does the boot value fail a rule that passes now?
        on_key = [r for r in rules if r.fact == key]
        hypo = Snapshot(host=snapshot.host, facts={**facts, key: replace(live, value=boot.value, source=boot.source)},
                        processes=snapshot.processes, origin=snapshot.origin)
        worse = [f.rule for f in engine.evaluate(on_key, hypo, params)
                 if f.status is Status.FAIL and live_status.get((f.rule, f.key)) is Status.PASS]
        msg = (f"{key} is {render(live.value)} now, but {boot.source} sets {render(boot.value)} "
               f"at boot: it reverts on reboot")
        if worse:
            msg += f" and then fails {', '.join(worse)}"
        f = _judge(by_id.get("BOOT-REVERTS"), snapshot, params, key, msg, boot.source,
                   severity=None if worse else Severity.INFO, scope=scopes.get(key, Scope.HOST),
                   host_only=host_only(key), actual=live.value)
        if f is not None:
            out.append(replace(f, expected=f"== {render(boot.value)} (next boot)"))
    unread = facts.get("boot.sysctl_conf_unread")
    if unread is not None and unread.value:
        msg = (f"{unread.source} is not linked into sysctl.d, so systemd-sysctl never reads it at boot: "
               f"{unread.value} (link it as etc/sysctl.d/99-sysctl.conf or move the lines)")
        f = _judge(by_id.get("BOOT-SYSCTL-CONF-UNREAD"), snapshot, params, "etc/sysctl.conf", msg, unread.source)
        out += [f] if f else []
    out += _pam(snapshot, params, by_id.get("BOOT-PAM-LIMITS"))
    return out


def _unit_limit(facts: Mapping[str, Fact], which: str) -> Fact | None:
    """The service's own LimitNOFILE= (from its unit files), when the audit read one."""
    f = facts.get(f"rlimit.nofile.{which}")
    if f is not None and isinstance(f.value, int) and ".service" in f.source and "Default" not in f.source:
        return f
    return None


def _pam(snapshot: Snapshot, params: Mapping[str, Any], rule: Rule | None) -> list[Finding]:
    from tuneup.engine import render

    facts = snapshot.facts
    units = [f.value for k, f in facts.items()
             if (k == "service.unit" or (k.startswith("proc.") and k.endswith(".unit")))
             and isinstance(f.value, str) and f.value.endswith(".service")]
    if not units:
        return []
    need = _need(params)
    out = []
    for which in ("soft", "hard"):
        f = facts.get(f"pam.nofile.{which}")
        if f is None or f.value is None:
            continue
        own = _unit_limit(facts, which)
        if own is not None and need is not None and own.value >= need:
            continue   # the unit sets a sufficient LimitNOFILE= itself: the PAM entry is harmless
        unit = ", ".join(dict.fromkeys(units))
        msg = (f"{f.source} sets the {which} nofile limit to {render(f.value)} for PAM logins, but {unit} "
               f"runs under systemd and never sees it: set LimitNOFILE= in a drop-in "
               f"(tuneup fix --service {units[0].removesuffix('.service')})")
        if own is not None:
            msg += f"; its own {own.source} gives {render(own.value)}"
        finding = _judge(rule, snapshot, params, f"pam.nofile.{which}", msg, f.source, scope=Scope.PROCESS,
                         target=unit, actual=f.value)
        if finding is not None:
            out.append(replace(finding, expected="LimitNOFILE= in the unit"))
    return out


def _need(params: Mapping[str, Any]) -> int | None:
    """Descriptors the target server needs, as the process rules compute it."""
    try:
        return int(params["connections"] * params.get("fds_per_connection", 1) + params.get("extra_fds", 0))
    except (KeyError, TypeError, ValueError):
        return None


def name_sources(findings: Iterable[Finding], snapshot: Snapshot) -> tuple[Finding, ...]:
    """For a filesystem tree: a failing finding names the file and line that set the value; a
    finding judged on a computed kernel default says so; a rule about what a running host is
    doing (sockets, counters, fs.file-nr, the conntrack count) is not applicable to a config tree."""
    if not snapshot.origin.startswith("root:"):
        return tuple(findings)
    out = []
    for f in findings:
        if f.status is Status.UNKNOWN and "not collected in this snapshot" in f.message:
            f = replace(f, status=Status.SKIP,
                        message=f"not applicable to a config tree: {f.key} is observed on a running host")
        elif f.source.startswith(("kernel default", "systemd")) and f.status in (Status.PASS, Status.FAIL):
            f = replace(f, message=f"{f.message} ({f.source})")
        elif f.status is Status.FAIL and f.source and ".conf:" in f.source and f.source not in f.message:
            f = replace(f, message=f"{f.message} (set at {f.source})")
        out.append(f)
    return tuple(out)
