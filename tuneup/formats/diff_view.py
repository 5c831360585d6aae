"""`tuneup diff` as text: table, JSON ("schema": "tuneup.diff/1") or markdown."""

from __future__ import annotations

import json
from typing import Any

from tuneup.compat import StrEnum, assert_never
from tuneup.diff import Diff, FactChange
from tuneup.engine import render
from tuneup.model import Finding
from tuneup.snapshot import to_json_value
from tuneup.textsafe import block_safe

SCHEMA = "tuneup.diff/1"


class DiffFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    MARKDOWN = "markdown"


def _fact(c: FactChange, side: str) -> str:
    present, value, error = (c.a_present, c.a, c.a_error) if side == "a" else (c.b_present, c.b, c.b_error)
    if not present:
        return "(not collected)"
    if error:
        return f"(unreadable: {error})"
    return render(value)


def _finding(f: Finding | None) -> str:
    if f is None:
        return "(not audited)"
    text = f.status.value
    if f.actual is not None:
        text += f": {render(f.actual)}"
    if f.expected:
        text += f" (want {f.expected})"
    return text


def as_dict(d: Diff) -> dict[str, Any]:
    def fd(f: Finding | None) -> dict[str, Any] | None:
        if f is None:
            return None
        return {"status": f.status.value, "severity": str(f.severity), "actual": to_json_value(f.actual),
                "expected": f.expected, "message": f.message}

    return {
        "schema": SCHEMA,
        "a": d.a_name,
        "b": d.b_name,
        "profile": d.profile,
        "identical": d.empty,
        "host": [{"field": k, "a": to_json_value(a), "b": to_json_value(b)} for k, a, b in d.host],
        "facts": [{"key": c.key, "a": to_json_value(c.a), "b": to_json_value(c.b), "a_error": c.a_error,
                   "b_error": c.b_error, "a_present": c.a_present, "b_present": c.b_present} for c in d.facts],
        "findings": [{"rule": c.rule, "key": c.key, "target": c.target, "a": fd(c.a), "b": fd(c.b)}
                     for c in d.findings],
    }


@block_safe
def _table(d: Diff, width: int | None = None) -> str:
    from tuneup.formats.termfit import table, terminal_width, wrap
    from tuneup.textsafe import printable

    width = width or terminal_width()
    lines = wrap(printable(f"tuneup diff: A = {d.a_name}, B = {d.b_name} (profile {d.profile})"), width, "", "  ")
    lines.append("")
    if d.host:
        lines += ["Host:", *table(["FIELD", "A", "B"], [[k, printable(render(a)), printable(render(b))]
                                                       for k, a, b in d.host], width, flex=(2, 1)), ""]
    if d.facts:
        lines += [f"Facts that differ ({len(d.facts)}):",
                  *table(["KEY", "A", "B"], [[printable(c.key), printable(_fact(c, "a")), printable(_fact(c, "b"))]
                                             for c in d.facts], width, flex=(2, 1)), ""]
    if d.findings:
        lines += [f"Findings that differ ({len(d.findings)}):",
                  *table(["RULE", "KEY", "A", "B"], [[c.rule, printable(c.key), printable(_finding(c.a)),
                                                      printable(_finding(c.b))] for c in d.findings],
                         width, flex=(3, 2, 1)), ""]
    if d.empty:
        lines.append("No differences in facts or findings.")
    else:
        lines.append(f"{len(d.facts)} facts and {len(d.findings)} findings differ.")
    return "\n".join(lines) + "\n"


@block_safe
def _markdown(d: Diff) -> str:
    from tuneup.formats.markdown import code, esc

    lines = [f"## tuneup diff: {esc(d.a_name)} → {esc(d.b_name)}", ""]
    if d.host:
        lines += ["| Host field | A | B |", "|---|---|---|"]
        lines += [f"| {k} | {code(render(a))} | {code(render(b))} |" for k, a, b in d.host] + [""]
    if d.facts:
        lines += ["| Fact | A | B |", "|---|---|---|"]
        lines += [f"| {code(c.key)} | {code(_fact(c, 'a'))} | {code(_fact(c, 'b'))} |" for c in d.facts] + [""]
    if d.findings:
        lines += ["| Rule | Key | A | B |", "|---|---|---|---|"]
        lines += [f"| {esc(c.rule)} | {code(c.key)} | {esc(_finding(c.a))} | {esc(_finding(c.b))} |"
                  for c in d.findings] + [""]
    if d.empty:
        lines += ["No differences in facts or findings.", ""]
    return "\n".join(lines)


def format_diff(d: Diff, fmt: DiffFormat) -> str:
    if fmt == DiffFormat.TABLE:
        return _table(d)
    elif fmt == DiffFormat.JSON:
        return json.dumps(as_dict(d), indent=2) + "\n"
    elif fmt == DiffFormat.MARKDOWN:
        return _markdown(d)
    else:
        assert_never(fmt)
