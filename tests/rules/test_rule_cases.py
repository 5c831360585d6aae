"""Data-driven rule tests: every case in tests/rules/cases/*.toml (facts in, status out), and the
coverage contract: each rule has a passing and a failing case, plus its skip/absent cases."""

from __future__ import annotations

import pytest
from rule_helpers import book, load_cases, run_case

from tuneup.model import Status

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c["_where"] for c in CASES])
def test_case(case):
    assert case["rule"] in book().rules, f"unknown rule {case['rule']}"
    findings = run_case(case)
    assert findings, "no finding"
    for f in findings:
        assert f.status is Status(case["status"]), f"{f.status}: {f.message}"
        if "message" in case:
            assert case["message"] in f.message, f.message
        if "host_only" in case:
            assert f.host_only is case["host_only"], f.message
        if "severity" in case:
            assert str(f.severity) == case["severity"], f.message
        if "expected_value" in case:
            assert f.expected_value == case["expected_value"], f.message
        assert f.message and f.rationale and f.refs


def _by_rule():
    out: dict[str, list[dict]] = {}
    for c in CASES:
        out.setdefault(c["rule"], []).append(c)
    return out


@pytest.mark.parametrize("rule_id", sorted(book().rules))
def test_every_rule_has_a_passing_and_a_failing_case(rule_id):
    statuses = {c["status"] for c in _by_rule().get(rule_id, [])}
    assert {"pass", "fail"} <= statuses, f"{rule_id} needs a pass and a fail case, has {sorted(statuses)}"


@pytest.mark.parametrize("rule_id", sorted(book().rules))
def test_conditional_and_removable_rules_have_their_cases(rule_id):
    rule = book().rules[rule_id]
    cases = _by_rule().get(rule_id, [])
    if rule.when:
        assert any(c["status"] == "skip" for c in cases), f"{rule_id} has a condition but no not-applicable case"
    if rule.absent is Status.PASS or rule.absent_reason:
        absent = [c for c in cases if rule.fact in c.get("absent", ())
                  or any(rule.fact in k for p in c.get("processes", ()) for k in c.get("absent", ()))
                  or any(k.endswith("." + rule.fact) for k in c.get("absent", ()) if c.get("listeners"))]
        assert absent, f"{rule_id} names an absent state but has no case with {rule.fact} absent"
        assert all(c["status"] == rule.absent.value for c in absent)


def test_unreadable_is_unknown_in_every_section():
    sections = {book().rules[c["rule"]].section for c in CASES if c["status"] == "unknown"}
    assert sections >= {r.section for r in book().rules.values()} - {"erlang"}
