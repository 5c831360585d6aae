"""Fuzz the input loaders through their public entry points (hypothesis): the snapshot loader
(tuneup.snapshot.load), rule files and profiles (tuneup.rulebook.loader.load of a rules directory),
waiver files (tuneup.waivers.load) and tuneup.toml (tuneup.config.load with --config).

Inputs are valid documents mutated two ways: a value somewhere in the structure replaced by an
arbitrary (often hostile) value, or the text itself spliced with hostile fragments (deep nesting,
huge integers, 1e400, NaN, lone surrogates, escape sequences). Each case must either load or raise
TuneupError (the CLI's exit 2) within a time bound: no other exception (exit 3), no hang.

The number of examples per loader is small by default to keep the suite fast; set
TUNEUP_FUZZ_EXAMPLES to run more. The distribution of outcomes is counted in OUTCOMES and printed
by the last test (run pytest with -s to see it).
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
import signal
import time
from pathlib import Path

import pytest
from conftest import STOCK, make_snapshot

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tuneup import config, snapshot, waivers  # noqa: E402
from tuneup.errors import TuneupError  # noqa: E402
from tuneup.formats import OutputFormat, render  # noqa: E402
from tuneup.rulebook import loader  # noqa: E402

EXAMPLES = int(os.environ.get("TUNEUP_FUZZ_EXAMPLES", "40"))
CASE_SECONDS = 10          # generous: the machine is shared; a hang is minutes, not seconds
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SLOWEST: dict[str, float] = collections.defaultdict(float)

SEED = os.environ.get("TUNEUP_FUZZ_SEED")   # unset: the same examples every run (derandomized)
_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=SEED is None, database=None,
                     suppress_health_check=list(HealthCheck))


def SETTINGS(fn):  # noqa: N802 - used like hypothesis' settings decorator
    fn = _SETTINGS(fn)
    return hypothesis.seed(int(SEED))(fn) if SEED else fn


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"a single load took more than {CASE_SECONDS} s")


def outcome(name: str, fn) -> int:
    """Run one load: success -> 0, TuneupError -> 2 (with a one-line message); anything else (exit 3
    in the CLI, a hang past CASE_SECONDS) propagates and fails the test. Returns the exit code."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    started = time.monotonic()
    try:
        fn()
        OUTCOMES[name]["exit 0"] += 1
        code = 0
    except TuneupError as exc:
        msg = str(exc)
        assert msg, "an error must say something"
        OUTCOMES[name]["exit 2"] += 1
        code = 2
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        SLOWEST[name] = max(SLOWEST[name], time.monotonic() - started)
    return code


# -- hostile values and text fragments ------------------------------------------------------------------
HOSTILE_TEXT = ["\x1b]0;pwn\x07\x1b[2J", "\ud800", "\udfff", "\u2028", "\x00", "\x9b", "a" * 300, "",
                "CT-*", "*", "../../etc/passwd", "web", "NET-SOMAXCONN"]
# chars including lone surrogates (Cs) and controls (Cc): hypothesis excludes Cs unless asked
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.sampled_from([0, -1, 2**64, 2**64 - 1, -(2**63), 10**40, 10**41, 2**53 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(ANY_CHAR, max_size=20), st.sampled_from(HOSTILE_TEXT),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(ANY_CHAR, max_size=8), inner, max_size=4)), max_leaves=12)

FRAGMENTS = ["[" * 100_000, "{\"a\":" * 50_000, "9" * 4301, "9" * 50, "1e400", "-1e400", "NaN", "Infinity",
             '"\\ud800"', '"\\u001b[2J"', "\x1b]0;pwn\x07", "\u2028", "\x00", "]]", "}", ",", ":", "\"",
             "[[rule]]", "[[waiver]]", "[profile.x]", "= inf", "= nan", "'''", '"""', "\\", "=" * 3,
             "[" * 40 + "]" * 40, "1979-05-27T07:32:00Z", "true", "0x_1", "+inf"]


@st.composite
def mutated_text(draw, base: str):
    text = base
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 40)))
        piece = draw(st.one_of(st.sampled_from(FRAGMENTS), st.text(ANY_CHAR, max_size=12)))
        text = text[:i] + piece + text[j:]
    return text


def paths_of(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths_of(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths_of(v, prefix + (i,))


@st.composite
def mutated_doc(draw, base):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in paths_of(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        node = doc
        for k in path[:-1]:
            node = node[k]
        if draw(st.booleans()) or not isinstance(node, dict):
            node[path[-1]] = draw(values)
        else:
            del node[path[-1]]
    return doc


def write(tmp: Path, name: str, text: str) -> Path:
    p = tmp / name
    p.write_text(text, encoding="utf-8", errors="surrogatepass")   # a lone surrogate becomes bad UTF-8
    return p


# -- TOML of a structure (enough of TOML to carry every value the strategies make) ------------------------
def toml_value(v) -> str:
    if v is None:
        return '""'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)          # a TOML basic string (a lone surrogate's \\ud800 is bad TOML)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))


def toml_doc(doc: dict) -> str:
    """Top-level keys as `key = value` (inline tables and arrays of inline tables)."""
    return "".join(f"{json.dumps(k)} = {toml_value(v)}\n" for k, v in doc.items())


# -- the loaders -------------------------------------------------------------------------------------------
SNAP_BASE = json.loads(snapshot.dumps(make_snapshot(
    STOCK, processes=[{"pid": 42, "name": "nginx", "unit": "nginx.service"}])))
SNAP_BASE["listeners"] = [{"local": "0.0.0.0:80", "port": 80, "backlog": 511, "queue": 0, "pid": 42,
                           "process": "nginx"}]
WAIVER_BASE = {"waiver": [{"rule": "NET-SOMAXCONN", "reason": "redis", "expires": "2099-01-01",
                           "hosts": ["web-*"]}]}
CONFIG_BASE = {"profile": "web", "fail_on": "critical", "params": {"connections": 5000},
               "waiver": [{"rule": "CT-*", "reason": "r", "expires": "2099-01-01"}]}
PROFILES_BASE = {"param": {"extra_param": {"default": 1, "description": "d"}},
                 "profile": {"mine": {"extends": "web", "description": "d", "params": {"connections": 10},
                                      "exclude": ["CT-*"]}}}
RULE_BASE = {"rule": [{"id": "X-FUZZ", "title": "t", "severity": "warning", "fact": "net.core.somaxconn",
                       "op": ">=", "expected": "max(4096, connections // 10)", "scope": "netns",
                       "rationale": "r", "refs": ["https://example.invalid/"], "profiles": ["mine"],
                       "when": "kernel >= (4, 0)", "fix": {"kind": "sysctl"},
                       "hints": [{"text": "raise it", "when": "value < expected"}]}]}
EXPRESSIONS = ["(((((9**64)**64)**64)**64)**64) > 1", "connections ** 64", "(connections ** 64) ** 64",
               "round(1, -10**30)", "'%0999999999d' % 1", "(2**5000) * (2**5001)", "-" * 300 + "1",
               "(" * 200 + "1" + ")" * 200, "value[10**30]", "fact('x' * 10)", "1/0", "max()"]


@SETTINGS
@given(data=st.data())
def test_fuzz_snapshot_loader_and_audit(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("snap")
    if data.draw(st.booleans()):
        text = json.dumps(data.draw(mutated_doc(SNAP_BASE)), allow_nan=True)
    else:
        text = data.draw(mutated_text(json.dumps(SNAP_BASE, indent=1)))
    path = write(tmp, "s.json", text)

    def load_and_audit():
        # what `audit --snapshot` does with it: load, audit against the web profile, render
        snap = snapshot.load(str(path))
        report = _plan().audit(snap)
        for fmt in (OutputFormat.TABLE, OutputFormat.JSON, OutputFormat.MARKDOWN):
            render(report, fmt)
        # and what `fix --snapshot` does with it: plan the fix, render the files and the summary
        from tuneup.fixes import plan_fixes
        from tuneup.fixes.render import render_files, summary

        plan = _plan()
        fixplan = plan_fixes(list(plan.book.rules.values()), plan.rules, snap, plan.profile.params, report, None)
        summary(fixplan, render_files(fixplan), None)

    assert outcome("snapshot", load_and_audit) in (0, 2)


_PLAN = []


def _plan():
    if not _PLAN:
        from tuneup import run

        _PLAN.append(run.plan("web", {}))
    return _PLAN[0]


@SETTINGS
@given(data=st.data())
def test_fuzz_waiver_loader(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("waiver")
    if data.draw(st.booleans()):
        text = toml_doc(data.draw(mutated_doc(WAIVER_BASE)))
    else:
        text = data.draw(mutated_text('[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "redis"\nexpires = 2099-01-01\n'
                                      'hosts = ["web-*"]\n'))
    path = write(tmp, "w.toml", text)
    assert outcome("waivers", lambda: waivers.load(path)) in (0, 2)


@SETTINGS
@given(data=st.data())
def test_fuzz_tuneup_toml_loader(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cfg")
    if data.draw(st.booleans()):
        text = toml_doc(data.draw(mutated_doc(CONFIG_BASE)))
    else:
        text = data.draw(mutated_text('profile = "web"\nfail_on = "critical"\n[params]\nconnections = 5000\n'
                                      '[[waiver]]\nrule = "CT-*"\nreason = "r"\nexpires = 2099-01-01\n'))
    path = write(tmp, "tuneup.toml", text)
    assert outcome("tuneup.toml", lambda: config.load(path)) in (0, 2)


@SETTINGS
@given(data=st.data())
def test_fuzz_profiles_and_rules_loader(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rules")
    kind = data.draw(st.sampled_from(["profiles-doc", "profiles-text", "rule-doc", "rule-text", "rule-expr"]))
    profiles, rules = toml_doc(PROFILES_BASE), toml_doc(RULE_BASE)
    if kind == "profiles-doc":
        profiles = toml_doc(data.draw(mutated_doc(PROFILES_BASE)))
    elif kind == "profiles-text":
        profiles = data.draw(mutated_text('[param.extra_param]\ndefault = 1\n[profile.mine]\nextends = "web"\n'
                                          'params = { connections = 10 }\nexclude = ["CT-*"]\n'))
    elif kind == "rule-doc":
        rules = toml_doc(data.draw(mutated_doc(RULE_BASE)))
    elif kind == "rule-text":
        rules = data.draw(mutated_text(rules))
    else:
        doc = copy.deepcopy(RULE_BASE)
        field = data.draw(st.sampled_from(["expected", "when", "actual"]))
        doc["rule"][0][field] = data.draw(st.one_of(st.sampled_from(EXPRESSIONS), st.text(ANY_CHAR, max_size=30)))
        rules = toml_doc(doc)
    write(tmp, "profiles.toml", profiles)
    write(tmp, "x.toml", rules)

    def load_and_use():
        book = loader.load([tmp])
        for name in book.profile_defs:     # resolving every profile and its rules is part of loading
            book.profile(name)
            book.rules_for(name)

    outcome("rules/profiles", load_and_use)


def test_fuzz_outcomes_counted():
    """Runs after the fuzz tests above (file order): every loader was exercised, with both outcomes."""
    total = {k: dict(v) for k, v in OUTCOMES.items()}
    print(f"\nfuzz outcomes ({EXAMPLES} examples per loader): {total}; slowest case per loader (s): "
          f"{ {k: round(v, 3) for k, v in SLOWEST.items()} }")
    if len(OUTCOMES) < 4:
        pytest.skip("run the whole file to count the outcomes")
    for name, counts in OUTCOMES.items():
        assert set(counts) <= {"exit 0", "exit 2"}
        assert counts["exit 2"] > 0, name
