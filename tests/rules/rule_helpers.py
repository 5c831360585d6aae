"""Shared by the rule-knowledge tests: the rulebook, case files, and snapshots built from them."""

from __future__ import annotations

from tuneup.compat import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from tuneup.engine import evaluate
from tuneup.model import Fact, Finding, Snapshot
from tuneup.rulebook import loader

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "cases"
DATA_DIR = HERE / "data"
REPO = HERE.parent.parent

# A stock Debian 12 VM: the host every case runs on unless it says otherwise.
HOST = {
    "hostname": "case-host", "kernel": "6.1.0-18-amd64", "kernel_version": [6, 1, 0], "arch": "x86_64",
    "distro": "debian 12", "cpus": 8, "mem_total_bytes": 32 * 2**30, "page_size": 4096,
    "netns": "initial", "netns_evidence": "test",
}
CASE_FIELDS = {"rule", "name", "status", "facts", "absent", "errors", "params", "profile", "host",
               "processes", "listeners", "message", "host_only", "expected_value", "severity"}


@lru_cache(maxsize=1)
def book() -> loader.Rulebook:
    return loader.load()


def _value(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def snapshot(facts: dict | None = None, *, absent: list | None = None, errors: dict | None = None,
             host: dict | None = None, processes: list | None = None,
             listeners: list | None = None) -> Snapshot:
    """facts {key: value}; absent [key] (the kernel has no such key); errors {key: "permission denied"}."""
    out = {k: Fact(k, _value(v), f"case:{k}") for k, v in (facts or {}).items()}
    out.update({k: Fact(k, None, f"case:{k}") for k in absent or ()})
    out.update({k: Fact(k, None, f"case:{k}", error=e) for k, e in (errors or {}).items()})
    return Snapshot(host={**HOST, **(host or {})}, facts=out, processes=list(processes or []),
                    listeners=listeners, origin="case")


def load_cases() -> list[dict]:
    cases = []
    for path in sorted(CASES_DIR.glob("*.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for i, c in enumerate(data.get("case", [])):
            unknown = set(c) - CASE_FIELDS
            assert not unknown, f"{path.name} case {i}: unknown field(s) {unknown}"
            cases.append({**c, "_where": f"{path.name}#{i} {c.get('name', '')}"})
    return cases


def default_profile(rule_id: str) -> str:
    """The profile a case runs under unless it names one: the rule's lowest profile."""
    return book().rules[rule_id].profiles[0]


def run_case(case: dict) -> list[Finding]:
    b = book()
    rule = b.rules[case["rule"]]
    prof = b.profile(case.get("profile") or default_profile(rule.id), case.get("params"))
    snap = snapshot(case.get("facts"), absent=case.get("absent"), errors=case.get("errors"),
                    host=case.get("host"), processes=case.get("processes"), listeners=case.get("listeners"))
    return evaluate([rule], snap, prof.params)
