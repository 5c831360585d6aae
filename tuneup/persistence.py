"""Persistence findings: will the next boot keep what the audit saw? Pure: facts in, findings out.

They read the boot facts that facts/configfiles.py collects beside the live values:
  boot.KEY            the value the next boot applies to sysctl KEY (source: file:line; absent: no file)
  boot.conflict.KEY   present when several files set KEY to different values (value lists them)
  pam.nofile.soft/hard  what limits.conf / limits.d give PAM logins
  service.unit, proc.PID.unit   the systemd service whose limits are audited

Checks (ids are stable, like rule ids, so waivers can name them):
  BOOT-REVERTS     a live value differs from what the next boot applies
  BOOT-CONFLICT    one key set to different values in several files (which one wins)
  BOOT-PAM-LIMITS  a limits.conf/limits.d entry the target systemd service never sees
A snapshot without boot facts (an old snapshot, a test) gets none of these findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tuneup.model import Finding, Rule, Scope, Severity, Snapshot, Status


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    rationale: str
    refs: tuple[str, ...]
    how: str = ""     # one line: how the operator fixes it


REVERTS = Check(
    "BOOT-REVERTS", "The live value is what the next boot applies",
    "A value set at run time (sysctl -w) that no file persists, or that a file sets differently, "
    "changes on the next reboot: the host passes today and fails after maintenance.",
    ("https://www.freedesktop.org/software/systemd/man/latest/sysctl.d.html",),
    "persist the value you want in one /etc/sysctl.d/ file (`tuneup fix` writes the profile's values there)")
CONFLICT = Check(
    "BOOT-CONFLICT", "A key is set in one file only",
    "When several sysctl.d files set one key, the file whose name sorts last wins; editing the "
    "other file changes nothing, which is how overrides get lost.",
    ("https://www.freedesktop.org/software/systemd/man/latest/sysctl.d.html",),
    "set the key in one file only: remove it from the files that lose (the one sorting last wins)")
PAM_LIMITS = Check(
    "BOOT-PAM-LIMITS", "Open-file limits for a service are set where the service reads them",
    "limits.conf and limits.d are read by pam_limits at login; systemd services never see them and "
    "get LimitNOFILE= from their unit (or DefaultLimitNOFILE=).",
    ("https://man7.org/linux/man-pages/man5/limits.conf.5.html",
     "https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#LimitCPU=",
     "https://github.com/systemd/systemd/issues/1884"),
    "set LimitNOFILE= in the service's unit (`tuneup fix --service UNIT` writes a drop-in)")
CHECKS = {c.id: c for c in (REVERTS, CONFLICT, PAM_LIMITS)}


def _finding(check: Check, key: str, status: Status, severity: Severity, message: str, actual: Any,
             expected: str, source: str, scope: Scope = Scope.HOST, target: str | None = None,
             host_only: bool = False) -> Finding:
    if host_only:
        message += " (host-global: only the host can change it)"
    return Finding(rule=check.id, key=key, status=status, severity=severity, actual=actual, expected=expected,
                   message=message, title=check.title, scope=scope, source=source, target=target,
                   rationale=check.rationale, refs=check.refs, host_only=host_only, how=check.how)


def findings(rules: Iterable[Rule], snapshot: Snapshot, params: Mapping[str, Any],
             report_findings: Iterable[Finding] = ()) -> list[Finding]:
    """Non-passing persistence findings for the sysctl keys the rules read (one per key and check)."""
    from tuneup import engine
    from tuneup.engine import render

    rules = list(rules)
    facts = snapshot.facts
    live_status = {(f.rule, f.key): f.status for f in report_findings}
    out: list[Finding] = []
    keys = sorted({r.fact for r in rules if f"boot.{r.fact}" in facts})
    scopes = {r.fact: r.scope for r in rules}
    child = snapshot.host.get("netns") == "child"
    for key in sorted({r.fact for r in rules}):
        conflict = facts.get(f"boot.conflict.{key}")
        if conflict is not None and conflict.value:
            msg = f"{key} is set in several files: {conflict.value}; {conflict.source} wins (applied last)"
            out.append(_finding(CONFLICT, key, Status.FAIL, Severity.INFO, msg, None,
                                "one file", conflict.source, scopes.get(key, Scope.HOST),
                                host_only=child and scopes.get(key) is Scope.HOST))
    for key in keys:
        boot = facts[f"boot.{key}"]
        live = facts.get(key)
        if boot.value is not None and live is not None and live.value is not None and live.value != boot.value:
            # does the boot value fail a rule that passes now?
            on_key = [r for r in rules if r.fact == key]
            hypo = Snapshot(host=snapshot.host, facts={**facts, key: replace(live, value=boot.value, source=boot.source)},
                            processes=snapshot.processes, origin=snapshot.origin)
            worse = [f.rule for f in engine.evaluate(on_key, hypo, params)
                     if f.status is Status.FAIL and live_status.get((f.rule, f.key)) is Status.PASS]
            sev = Severity.WARNING if worse else Severity.INFO
            msg = (f"{key} is {render(live.value)} now, but {boot.source} sets {render(boot.value)} "
                   f"at boot: it reverts on reboot")
            if worse:
                msg += f" and then fails {', '.join(worse)}"
            out.append(_finding(REVERTS, key, Status.FAIL, sev, msg, live.value,
                                f"== {render(boot.value)} (next boot)", boot.source, scopes.get(key, Scope.HOST),
                                host_only=child and scopes.get(key) is Scope.HOST))
    out += _pam(snapshot)
    return out


def _pam(snapshot: Snapshot) -> list[Finding]:
    facts = snapshot.facts
    units = [f.value for k, f in facts.items()
             if (k == "service.unit" or (k.startswith("proc.") and k.endswith(".unit")))
             and isinstance(f.value, str) and f.value.endswith(".service")]
    if not units:
        return []
    out = []
    for which in ("soft", "hard"):
        f = facts.get(f"pam.nofile.{which}")
        if f is None or f.value is None:
            continue
        from tuneup.engine import render

        unit = ", ".join(dict.fromkeys(units))
        msg = (f"{f.source} sets the {which} nofile limit to {render(f.value)} for PAM logins, but {unit} "
               f"runs under systemd and never sees it: set LimitNOFILE= in a drop-in "
               f"(tuneup fix --service {units[0].removesuffix('.service')})")
        out.append(_finding(PAM_LIMITS, f"pam.nofile.{which}", Status.FAIL, Severity.WARNING, msg, f.value,
                            "LimitNOFILE= in the unit", f.source, Scope.PROCESS, unit))
    return out


def name_sources(findings: Iterable[Finding], snapshot: Snapshot) -> tuple[Finding, ...]:
    """For a filesystem tree, a failing finding names the file and line that set the value."""
    if not snapshot.origin.startswith("root:"):
        return tuple(findings)
    return tuple(replace(f, message=f"{f.message} (set at {f.source})")
                 if f.status is Status.FAIL and f.source and ".conf:" in f.source and f.source not in f.message
                 else f for f in findings)
