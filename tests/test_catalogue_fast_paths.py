"""The fast paths of loading and listing many rules give exactly what the general code gives: the
rule-entry fast path (loader._FastPath) accepts only what _build_rule accepts and builds an equal
Rule, the whole-text line scan finds the lines a line-by-line scan finds, and the listing
renderers keep the built-in catalogue's output."""

from __future__ import annotations

import copy
import dataclasses
import random
import re
import subprocess

from conftest import tuneup_cmd

from tuneup.errors import RuleFileError
from tuneup.model import Rule
from tuneup.rulebook import loader
from tuneup.rulebook.expr import Expr

BASE = {
    "id": "GEN-00001", "title": "Generated rule", "section": "accept path", "severity": "warning",
    "fact": "net.core.somaxconn", "op": ">=", "expected": "max(4096, connections // 10)", "scope": "netns",
    "profiles": ["web"], "rationale": "generated", "refs": ["https://docs.kernel.org/networking/ip-sysctl.html"],
}
# Values each field is tried with: good ones, wrong types, empty and blank strings, unknown names.
TRIALS = {
    "id": ["GEN-00002", "gen-1", "", "  ", 5, ["GEN-1"], "GEN"],
    "title": ["t", "", " ", 1, None, ["t"]],
    "section": ["memory", 5, ["x"], {"a": 1}, ""],
    "severity": ["info", "INFO", "Critical", "fatal", "", 2, ["info"]],
    "fact": ["fs.file-max", "", 3],
    "op": ["<=", "each>=", "=>", "", 1],
    "expected": ["1", "0", "4096", "007", "1_000", "-5", 4096, 1.5, True, "", " ", "nope", "value * 2",
                 "connections // 0", "(", "x" * 600, ["1"], {"a": 1}, "fact('fs.file-max')", "12345678901234567890"],
    "scope": ["host", "process", "listener", "global", "", 1],
    "rationale": ["r", "", "  ", 1],
    "refs": [["a", "b"], [], [""], [" "], ["a", 1], "a", [["a"]]],
    "profiles": [["web", "proxy"], [], ["nope"], "web", [1], ["web", "web"]],
    "actual": ["value[0]", "value", "", " ", 1, "nope", "value +"],
    "when": ["connections > 10", "value > 1", "", 1, "kernel >= (5, 4)", "nope"],
    "need": ["connections", "", "value", 2],
    "absent": ["pass", "skip", "fail", "maybe", ["skip"], 1, ""],
    "absent_reason": ["why", "", " ", 3],
    "estimate": [True, False, 1, "true"],
    "fix": [{"kind": "sysctl"}, {"kind": "nope"}],
    "hints": [[{"text": "h"}], []],
    "surprise": [1],
}


def _both(entry, book, fast):
    try:
        slow = loader._build_rule(copy.deepcopy(entry), "f.toml:3", book)
    except RuleFileError:
        slow = None
    return slow, fast.rule(copy.deepcopy(entry), "f.toml:3")


def test_the_rule_fast_path_accepts_only_what_the_full_build_accepts_and_builds_the_same_rule():
    book = loader.load()
    fast = loader._FastPath(book)
    rng = random.Random(5)
    entries = [dict(BASE)]
    for name, values in TRIALS.items():            # every value of every field once
        entries += [{**BASE, name: v} for v in values]
    entries += [{k: v for k, v in BASE.items() if k != name} for name in BASE]   # each field missing
    for _ in range(3000):                          # and random combinations
        e = dict(BASE)
        for name in rng.sample(sorted(TRIALS), rng.randint(1, 4)):
            e[name] = rng.choice(TRIALS[name])
        entries.append(e)
    entries += [["not", "a", "table"], "x", None]
    accepted = 0
    for e in entries:
        for _ in range(2):                         # the second time its expressions are cached
            slow, quick = _both(e, book, fast)
            if quick is not None:
                accepted += 1
                assert slow is not None, e
                assert quick == slow and vars(quick) == vars(slow), e
    assert accepted > 300      # the fast path does take the ordinary entries


def test_a_rule_built_without_init_has_every_field():
    names = {f.name for f in dataclasses.fields(Rule)}
    assert set(loader._RULE_FIELD_NAMES) == names
    assert not hasattr(Rule, "__post_init__")
    assert all(f.default_factory is dataclasses.MISSING for f in dataclasses.fields(Rule))
    fast = loader._FastPath(loader.load()).rule(dict(BASE), "f.toml:1")
    assert set(vars(fast)) == names
    assert fast == Rule(**vars(fast))


def test_plain_integers_skip_the_parse_because_they_always_parse():
    for text in ["0", "7", "4096", "123456789012345678"]:
        assert loader._PLAIN_INT.fullmatch(text)
        assert Expr(text).names == set()
    for text in ["007", "-1", "1_000", "1.5", " 1", "1e3", "1234567890123456789"]:
        assert not loader._PLAIN_INT.fullmatch(text)


_OLD_ID_LINE = re.compile(r"""^id\s*=\s*["']([^"']+)["']""")


def _line_by_line(text):
    """The scan the loader did before: every line stripped, in Python."""
    rule_lines, id_lines = [], {}
    for n, raw in enumerate(text.split("\n"), 1):
        stripped = raw.strip()
        if stripped == "[[rule]]":
            rule_lines.append(n)
        elif stripped.startswith("id") and (m := _OLD_ID_LINE.match(stripped)): 
            id_lines.setdefault(m.group(1), []).append(n)
    return rule_lines, id_lines


def test_the_whole_text_line_scan_finds_the_lines_a_line_by_line_scan_finds():
    rng = random.Random(3)
    pieces = ['[[rule]]', '  [[rule]] ', 'id = "A-B"', 'id="C-D"', "  id = 'A-B'", 'title = "x"', '',
              '# id = "Q-Q"', 'xid = "Z-Z"', '[[rule]]x', 'id = "E-F" # c', 'id\t= "G-H"', '\t[[rule]]']
    for _ in range(3000):
        text = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + rng.choice(["", "\n"])
        rule_lines, id_lines = _line_by_line(text)
        first, more = loader._lines_by_group(loader._ID_LINE, text)
        assert {**{k: [v] for k, v in first.items()}, **more} == id_lines, text
        assert loader._line_numbers(loader._RULE_LINE, text) == rule_lines, text


def test_a_list_where_absent_wants_a_word_is_a_one_line_error(tmp_path):
    """Was a TypeError (unhashable list), exit 3."""
    entry = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in BASE.items())
    (tmp_path / "bad.toml").write_text('[[rule]]\n' + entry + 'absent = ["skip"]\n')
    out = subprocess.run([*tuneup_cmd(), "rules", "list", "--rules-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert out.stderr.count("\n") == 1 and "bad.toml:2: rule GEN-00001: absent must be" in out.stderr
