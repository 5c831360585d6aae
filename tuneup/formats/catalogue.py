"""Rule and profile listings (`rules list`, `rules show`, `profiles`): text out, no I/O."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any

from tuneup import gcpause
from tuneup.engine import host_names, render
from tuneup.errors import ExprError
from tuneup.model import Profile, Rule, Scope, Severity, Status
from tuneup.rulebook.loader import Rulebook, compile_expr
from tuneup.textsafe import block_safe


def profiles_index(book: Rulebook) -> dict[str, list[str]]:
    """Rule id -> every profile that includes it, in profile order (what book.profiles_of gives
    each rule, which is quadratic): which profiles a rule's `profiles` reach is worked out once per
    distinct list, and only profiles with an exclude look at the id."""
    names = list(book.profile_defs)
    chains = {name: set(book.lineage(name)) for name in names}
    excluded = {}
    for name in names:
        globs = book.profile(name).exclude
        if globs:
            excluded[name] = re.compile("|".join(fnmatch.translate(g) for g in globs)).match
    reach: dict[tuple[str, ...], list[str]] = {}
    out: dict[str, list[str]] = {}
    for r in book.rules.values():
        these = reach.get(r.profiles)
        if these is None:
            these = reach[r.profiles] = [n for n in names if chains[n].intersection(r.profiles)]
        if excluded:
            these = [n for n in these if n not in excluded or not excluded[n](r.id)]
        if these:
            out[r.id] = list(these)
    return out


_SEVERITY = {s: str(s) for s in Severity}
_VALUE = {**{s: s.value for s in Scope}, **{s: s.value for s in Status}}


def rule_dict(book: Rulebook, rule: Rule, profiles: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {
        "id": rule.id,
        "title": rule.title,
        "severity": _SEVERITY[rule.severity],
        "key": rule.fact,
        "scope": _VALUE[rule.scope],
        "section": rule.section,
        "op": rule.op,
        "expected": rule.expected,
        "need": rule.need,
        "estimate": rule.estimate,
        "actual": rule.actual,
        "when": rule.when,
        "absent": _VALUE[rule.absent],
        "rationale": rule.rationale,
        "refs": list(rule.refs),
        "profiles": profiles.get(rule.id, []) if profiles is not None else book.profiles_of(rule),
        "fix": None if rule.fix is None else {"kind": rule.fix.kind, "key": rule.fix.key, "value": rule.fix.value},
        "hints": [{"text": h.text, "when": h.when} for h in rule.hints] if rule.hints else [],
        "origin": rule.origin,
    }


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rules_list(book: Rulebook, rules: list[Rule], fmt: str, width: int | None = None) -> str:
    with gcpause.paused():   # a listing of 100,000 rules is millions of objects, none cyclic
        if fmt == "json":    # printable as it is: see _json
            return _json(book, rules)
        return _rules_text(book, rules, fmt, width)


@block_safe
def _rules_text(book: Rulebook, rules: list[Rule], fmt: str, width: int | None = None) -> str:
    if fmt == "markdown":
        return _markdown(book, rules)
    from tuneup.formats.termfit import table, terminal_width

    width = width or terminal_width()
    sev, scope = _SEVERITY, _VALUE
    if width < 110:    # the key is in `rules show ID`; the title says what the rule is about
        rows = [[r.id, sev[r.severity], r.title] for r in rules]
        headers = ["ID", "SEVERITY", "TITLE"]
    else:
        rows = [[r.id, sev[r.severity], r.fact, scope[r.scope], r.title] for r in rules]
        headers = ["ID", "SEVERITY", "KEY", "SCOPE", "TITLE"]
    return "\n".join(table(headers, rows, width, flex=(len(headers) - 1, 2))) + "\n"


def _json(book: Rulebook, rules: list[Rule]) -> str:
    """One JSON array, one rule (an object on one line) per line:

        [
          {"id": "NET-SOMAXCONN", "title": ...},
          {"id": ...}
        ]

    json.dumps(..., indent=2) would give the same document spread over 28 lines a rule, with the
    pure-Python encoder (indent turns the C one off): 3x the time for 100,000 rules. A line per
    rule keeps grep and diff working rule by rule.

    Safe for a terminal as it is: the encoder (ensure_ascii) writes every character outside
    " ".."~" as an escape (\\u001b, \\u007f, \\u2028), so there is nothing for printable_block to do,
    and the document stays valid JSON."""
    if not rules:
        return "[]\n"
    index = profiles_index(book)
    encode = json.JSONEncoder().encode
    return "[\n  " + ",\n  ".join([encode(rule_dict(book, r, index)) for r in rules]) + "\n]\n"


# Reading order of the rule reference: from the process outwards to the host and the network path.
SECTION_ORDER = ("file descriptors and processes", "per-process limits", "erlang", "accept path",
                 "ports and TIME_WAIT", "orphans", "keepalive", "memory", "conntrack")


def _threshold(r: Rule) -> str:
    if r.op == "parity-differs":
        return "ends of different parity"
    text = f"{r.actual + ' ' if r.actual else ''}{r.op} {r.expected}"
    return f"{text} (need {r.op} {r.need})" if r.need else text


def _markdown(book: Rulebook, rules: list[Rule]) -> str:
    """The rule reference (docs/rules.md): profiles, parameters, then each section's rules."""
    index = profiles_index(book)
    counts = {name: 0 for name in book.profile_defs}
    for names in index.values():
        for name in names:
            counts[name] += 1
    out = ["# tuneup rules", "",
           "Generated by `tuneup rules list --format markdown`; do not edit by hand. "
           "`tuneup rules show ID` evaluates a threshold for a profile and `--set` values.", "",
           "## Profiles", "", "| profile | extends | rules | sets | for |", "|---|---|---|---|---|"]
    for name, d in book.profile_defs.items():
        own = ", ".join(f"{k}={v}" for k, v in d.get("params", {}).items()) or "-"
        out.append(f"| {name} | {d.get('extends') or '-'} | {counts[name]} | {_md(own)} | "
                   f"{_md(d.get('description', ''))} |")
    out += ["", "## Parameters", "", "Override with `--set NAME=VALUE`.", "",
            "| parameter | default | meaning |", "|---|---|---|"]
    out += [f"| `{p.name}` | {f'`{_md(p.derive)}`' if p.derive else p.default} | {_md(p.description)} |"
            for p in book.params.values()]
    out += ["", "Host values in thresholds: `ram_bytes`, `cpus`, `page_size`, `kernel` (a tuple such as "
            "`(5, 4)`); `value` is the key's value, `fact('key')` another key's.", ""]
    by_section: dict[str, list[Rule]] = {}
    for r in rules:
        by_section.setdefault(r.section, []).append(r)
    order = {s: i for i, s in enumerate(SECTION_ORDER)}
    for section, items in sorted(by_section.items(), key=lambda kv: order.get(kv[0], len(order))):
        out += [f"## {section}", "", "| id | severity | key | scope | threshold | profiles | why |",
                "|---|---|---|---|---|---|---|"]
        sev, val = _SEVERITY, _VALUE
        out += [f"| {r.id} | {sev[r.severity]} | `{r.fact}` | {val[r.scope]} | `{_md(_threshold(r))}` | "
                f"{', '.join(index.get(r.id, ()))} | {_md(r.rationale)} |" for r in items]
        out.append("")
        for r in items:
            out += (f"### {r.id}: {_md(r.title)}", "")
            if r.need:
                out.append(f"- need: `{_md(r.need)}`; below it: {sev[r.severity]}; between the need and the "
                           "threshold: warning (within the margin)")
            if r.estimate:
                out.append("- an estimate: fails at most as a warning")
            if r.when:
                out.append(f"- applies when: `{_md(r.when)}`")
            if r.absent_reason or r.absent is not Status.SKIP:
                out.append(f"- key absent: {val[r.absent]}" + (f" ({_md(r.absent_reason)})" if r.absent_reason else ""))
            if r.fix:
                out.append(f"- fix: {r.fix.kind} `{r.fix.key}` = `{_md(r.fix.value)}`")
            for h in r.hints:
                out.append(f"- on failure{f' when `{_md(h.when)}`' if h.when else ''}: {_md(h.text)}")
            out += ("- refs: " + "; ".join(map(_md, r.refs)), "")
    return "\n".join(out)


@block_safe
def rule_show(book: Rulebook, rule: Rule, profile: Profile, width: int | None = None) -> str:
    from tuneup.formats.termfit import terminal_width, wrap

    width = width or terminal_width()
    out = []
    for line in _rule_show(book, rule, profile).splitlines():
        lead = line[: len(line) - len(line.lstrip())]
        more = " " * (13 if lead == "  " else len(lead) + 2)
        out += wrap(line.strip(), width, lead, more)
    return "\n".join(out) + "\n"


def _rule_show(book: Rulebook, rule: Rule, profile: Profile) -> str:
    host = host_names(_host_guess())
    names = {**host, **profile.params}

    def evaluate(text: str) -> str:
        try:
            return render(compile_expr(text).evaluate(names, _no_fact, lambda k: True))
        except ExprError as exc:
            return f"depends on the audited host ({exc})"
        except ZeroDivisionError:
            return "undefined for these parameters (division by zero)"

    ex = compile_expr(rule.expected)
    evaluated = evaluate(rule.expected)
    read = ex.names | (compile_expr(rule.need).names if rule.need else set())
    derived = {p.name: p.derive for p in book.params.values() if p.derive}
    used = [f"{k}={v}" + (f" (= {derived[k]})" if k in derived else "") for k, v in profile.params.items() if k in read]
    used += [f"{k}={render(host[k])} (this host)" for k in ("ram_bytes", "cpus", "page_size", "kernel") if k in read]
    d = rule_dict(book, rule)
    lines = [
        f"{rule.id}: {rule.title}",
        f"  severity:  {d['severity']}" + (" (an estimate: at most a warning)" if rule.estimate else ""),
        f"  key:       {rule.fact} (scope: {d['scope']}, section: {rule.section})",
        f"  check:     {rule.actual + ' ' if rule.actual else 'value '}{rule.op} {rule.expected}",
    ]
    if rule.need:
        lines.append(f"  need:      {rule.op} {rule.need} (below: {d['severity']}; up to the check: warning, "
                     "within the margin)")
    if profile.name in d["profiles"]:
        lines.append(f"  for {profile.name}: {rule.op} {evaluated}"
                     + (f" (need {rule.op} {evaluate(rule.need)})" if rule.need else "")
                     + (f"   [{', '.join(used)}]" if used else ""))
    else:
        lines.append(f"  not in profile {profile.name}: it is checked under {', '.join(d['profiles']) or 'no profile'}")
    if rule.when:
        lines.append(f"  applies when: {rule.when}")
    lines.append(f"  when absent: {rule.absent.value}" + (f" ({rule.absent_reason})" if rule.absent_reason else ""))
    if rule.fix:
        lines.append(f"  fix:       {rule.fix.kind} {rule.fix.key} = {rule.fix.value}")
    for h in rule.hints:
        lines.append(f"  hint:      {h.text}" + (f" [when {h.when}]" if h.when else ""))
    lines.append(f"  profiles:  {', '.join(d['profiles']) or '-'}")
    lines.append(f"  why:       {rule.rationale}")
    lines.append("  refs:")
    lines += [f"    - {r}" for r in rule.refs]
    lines.append(f"  defined:   {rule.origin}")
    return "\n".join(lines) + "\n"


def _no_fact(key: str):
    raise ExprError(f"reads {key}")


def _host_guess() -> dict[str, Any]:
    """Host values for showing a formula: this machine's, read cheaply (no psutil)."""
    import os

    host: dict[str, Any] = {"cpus": os.cpu_count() or 1, "page_size": os.sysconf("SC_PAGE_SIZE")}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    host["mem_total_bytes"] = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    from tuneup.facts.host import kernel_tuple

    host["kernel_version"] = list(kernel_tuple(os.uname().release))
    return host


def _set_by(book: Rulebook, name: str) -> set[str]:
    """Parameters a profile or one it extends sets itself."""
    out: set[str] = set()
    cur: str | None = name
    while cur is not None and cur in book.profile_defs:
        out |= set(book.profile_defs[cur].get("params") or {})
        cur = book.profile_defs[cur].get("extends")
    return out


@block_safe
def profiles_list(book: Rulebook, fmt: str, width: int | None = None) -> str:
    from tuneup.formats.termfit import group, terminal_width, wrap

    width = width or terminal_width()
    items = []
    for name in book.profile_defs:
        prof = book.profile(name)
        items.append({"name": name, "extends": prof.extends, "description": prof.description,
                      "rules": len(book.rules_for(name)), "params": prof.params,
                      "default": name == book.default_profile})
    if fmt == "json":
        return json.dumps({"profiles": items, "params": {p.name: {"default": p.default, "description": p.description,
                                                                   **({"derive": p.derive} if p.derive else {})}
                                                         for p in book.params.values()}}, indent=2) + "\n"
    lines = []
    defaults = {p.name: p.default for p in book.params.values()}
    for it in items:
        star = " (default)" if it["default"] else ""
        ext = f" extends {it['extends']}" if it["extends"] else ""
        lines += wrap(f"{it['name']}{star}{ext}: {it['description']} [{it['rules']} rules]", width, "", "    ")
        derived = {k for k, prm in book.params.items() if prm.derive and k not in _set_by(book, it["name"])}
        own = [f"{k}={group(str(v))}" for k, v in it["params"].items() if defaults.get(k) != v and k not in derived]
        lines += wrap("sets: " + (", ".join(own) if own else "the parameters' defaults"), width, "    ", "      ")
        if derived:
            lines += wrap("derives: " + ", ".join(f"{k}={group(str(it['params'][k]))}" for k in book.params
                                                  if k in derived and k in it["params"]), width, "    ", "      ")
    lines.append("")
    lines += wrap("Parameters (override with --set NAME=VALUE; `-f json` lists every profile's values):", width)
    for p in book.params.values():
        value = f"[= {p.derive} unless set]" if p.derive else f"= {group(str(p.default))}"
        lines += wrap(f"{p.name} {value}: {p.description}", width, "  ", "    ")
    return "\n".join(lines) + "\n"
