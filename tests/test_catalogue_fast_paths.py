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

import pytest

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
        assert loader._plain_int(text)
        assert Expr(text).names == set()
    for text in ["007", "-1", "1_000", "1.5", " 1", "1e3", "1234567890123456789"]:
        assert not loader._plain_int(text)


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


# -- renderers --------------------------------------------------------------------------------------

def _table_reference(headers, rows, width, flex=(), style=None, gap=2):
    """termfit.table as it was before its fast paths (every cell through _cell_lines): the layout
    the fast one must reproduce."""
    from tuneup.formats.termfit import _cell_lines

    n = len(headers)
    cells = [[str(c) for c in r] for r in rows]
    natural = [max([len(headers[i])] + [len(r[i]) for r in cells]) for i in range(n)]
    longest = [max([len(headers[i])] + [len(w) for r in cells for w in r[i].split()]) for i in range(n)]
    widths = list(natural)
    room = width - gap * (n - 1)

    def excess():
        return sum(widths) - room

    order = list(flex) + [i for i in range(n) if i not in flex]
    for i in order:
        if excess() <= 0:
            break
        widths[i] = max(longest[i], widths[i] - excess())
    if excess() > 0:
        for i in sorted(range(n), key=lambda i: -widths[i]):
            if excess() <= 0:
                break
            widths[i] = max(max(4, len(headers[i])), widths[i] - excess())
    out = []
    for ri, row in enumerate([list(headers)] + cells):
        parts = [_cell_lines(row[i], widths[i]) for i in range(n)]
        height = max(len(p) for p in parts)
        for k in range(height):
            segs = []
            for i in range(n):
                text = parts[i][k] if k < len(parts[i]) else ""
                padded = text.ljust(widths[i]) if i < n - 1 else text
                segs.append(style(ri - 1, i, padded) if style and k == 0 and text else padded)
            out.append((" " * gap).join(segs).rstrip())
    return out


def test_the_table_is_laid_out_as_before_for_the_real_catalogue_at_every_width():
    from tuneup.formats.termfit import table

    book = loader.load()
    rules = list(book.rules.values())
    wide = [[r.id, str(r.severity), r.fact, r.scope.value, r.title] for r in rules]
    narrow = [[r.id, str(r.severity), r.title] for r in rules]
    for width in range(40, 221, 3):
        for headers, rows in ((["ID", "SEVERITY", "KEY", "SCOPE", "TITLE"], wide), (["ID", "SEVERITY", "TITLE"], narrow)):
            flex = (len(headers) - 1, 2)
            assert table(headers, rows, width, flex=flex) == _table_reference(headers, rows, width, flex=flex), width


def test_the_table_is_laid_out_as_before_for_random_cells():
    from tuneup.formats.termfit import table

    rng = random.Random(7)
    words = ["a", "bb", "net.core.somaxconn", "x" * 30, "", " ", "two words", "ends ", " starts", "tab\there"]
    for _ in range(1500):
        n = rng.randint(1, 5)
        headers = [rng.choice(["ID", "", "A LONGER HEADER", "K"]) for _ in range(n)]
        rows = [[" ".join(rng.choice(words) for _ in range(rng.randint(0, 4))) for _ in range(n)]
                for _ in range(rng.randint(0, 6))]
        width, gap = rng.randint(10, 120), rng.randint(1, 3)
        flex = tuple(rng.sample(range(n), rng.randint(0, n)))
        style = rng.choice([None, lambda r, c, t: f"<{t}>"])
        assert _outcome(table, headers, rows, width, flex, style, gap) == \
            _outcome(_table_reference, headers, rows, width, flex, style, gap), (headers, rows, width, flex, gap)


def _outcome(fn, headers, rows, width, flex, style, gap):
    try:
        return fn(headers, rows, width, flex=flex, style=style, gap=gap)
    except ValueError as exc:   # a column squeezed to no width at all (textwrap refuses width 0)
        return repr(exc)


PROFILES = '''
[profile.mine]
description = "extends web, without the generated rules ending in 7"
extends = "web"
exclude = ["GEN-*7", "NET-SOMAXCONN"]
'''


def _generated_book(tmp_path, n=300):
    (tmp_path / "profiles.toml").write_text(PROFILES)
    body = []
    for i in range(n):
        e = {**BASE, "id": f"GEN-{i:05d}", "profiles": [["web"], ["proxy", "mine"], [], ["baseline"]][i % 4],
             "severity": ["info", "warning", "critical"][i % 3], "title": f"Generated | rule {i}"}
        if i % 5 == 0:
            e["when"] = "connections > 10"
        if i % 7 == 0:
            e["need"] = "connections"
        if i % 11 == 0:
            e["absent"] = "fail"
        body.append("[[rule]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in e.items()))
    (tmp_path / "gen.toml").write_text("\n".join(body))
    return loader.load([tmp_path])


def _toml(v):
    import json

    return json.dumps(v)


def test_the_profiles_index_is_what_profiles_of_says_for_every_rule(tmp_path):
    from tuneup.formats.catalogue import profiles_index

    for book in (loader.load(), _generated_book(tmp_path)):
        index = profiles_index(book)
        for r in book.rules.values():
            assert index.get(r.id, []) == book.profiles_of(r), r.id
    assert "mine" not in index["GEN-00017"] and "mine" in index["GEN-00001"]


def test_the_json_listing_is_one_rule_a_line_with_the_content_of_the_indented_document(tmp_path):
    import json

    from tuneup.formats.catalogue import rule_dict, rules_list

    for book in (loader.load(), _generated_book(tmp_path)):
        rules = list(book.rules.values())
        text = rules_list(book, rules, "json")
        assert json.loads(text) == json.loads(json.dumps([rule_dict(book, r) for r in rules], indent=2))
        lines = text.split("\n")
        assert lines[0] == "[" and lines[-2:] == ["]", ""] and len(lines) == len(rules) + 3
        assert [json.loads(line.rstrip(","))["id"] for line in lines[1:-2]] == [r.id for r in rules]
        assert all(line.startswith('  {"id": ') for line in lines[1:-2])
    assert rules_list(book, [], "json") == "[]\n" and json.loads(rules_list(book, [], "json")) == []


def test_the_json_listing_of_a_hostile_rule_is_valid_and_printable(tmp_path):
    import json

    from tuneup.formats.catalogue import rules_list

    (tmp_path / "x.toml").write_text(
        '[[rule]]\nid = "X-EVIL"\ntitle = "t\\u001b]0;pwn\\u0007 \\u007f \\u2028 \\u009b \\t"\nseverity = "info"\n'
        'fact = "net.core.somaxconn"\nop = ">="\nexpected = "1"\nscope = "netns"\nrationale = "r"\nrefs = ["x"]\n')
    book = loader.load([tmp_path])
    text = rules_list(book, [book.rules["X-EVIL"]], "json")
    assert all(" " <= c <= "~" for c in text.replace("\n", "")), text
    assert json.loads(text)[0]["title"] == "t\x1b]0;pwn\x07 \x7f \u2028 \x9b \t"


def test_printable_block_returns_clean_text_as_it_is_and_escapes_the_rest():
    from tuneup.textsafe import printable_block, unsafe_rx

    clean = "a table\n  of | lines ~\n\n"
    assert printable_block(clean) is clean
    for c in map(chr, range(0x110000)):
        if (unsafe_rx().match(c) or c == "\t") and c != "\n":
            assert printable_block(f"x{c}\ny") != f"x{c}\ny", hex(ord(c))
    assert printable_block("a\tb\x1b\n\u2028") == "a    b\\x1b\n\\u2028"


def test_toml_strings_are_not_searched_one_by_one_for_surrogates_because_the_parser_refuses_them():
    import datetime

    import pytest

    from tuneup.inputs import _clean, check_tree, loads_toml

    for text in ['a = "\\ud800"', 'a = "\\U0000dfff"', '"\\udc00" = 1', "a = [{b = \"\\ud8ff\"}]"]:
        with pytest.raises(RuleFileError, match=r"x\.toml:1:\d+"):
            loads_toml(text, "x.toml", RuleFileError)
    rng = random.Random(12)
    leaves = [1, -5, 2**133, 2**140, 1.5, float("inf"), float("nan"), "ok", "", True, None, datetime.date(2099, 1, 1)]

    def tree(depth):
        r = rng.random()
        if depth > 34 or r < 0.3:
            return rng.choice(leaves)
        if r < 0.65:
            return [tree(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["a", "b-c", "1x"]): tree(depth + 1) for _ in range(rng.randint(0, 3))}

    for _ in range(3000):
        t = tree(0)
        assert _clean(t, strings=False) == _clean(t), t
        if _clean(t, strings=False):
            check_tree(t, "t.toml", RuleFileError, strings=False)   # never refuses what _clean passes


def test_the_level_at_a_time_clean_pass_counts_depth_as_the_full_check_does():
    from tuneup.errors import SnapshotError
    from tuneup.inputs import MAX_DEPTH, _clean, check_tree

    for depth in range(MAX_DEPTH - 2, MAX_DEPTH + 3):
        for leaf in (1, [], {}, "x"):
            for wrap in (lambda v: [v], lambda v: {"k": v}, lambda v: [1, {"a": v, "b": "c"}]):
                t = leaf
                for _ in range(depth):
                    t = wrap(t)
                try:
                    check_tree(t, "t.json", SnapshotError)
                    refused = False
                except SnapshotError:
                    refused = True
                assert _clean(t) is (not refused) and _clean(t, strings=False) is (not refused), (depth, leaf)


def test_a_file_the_fast_path_takes_needs_no_tree_check_and_one_it_does_not_is_checked_first(tmp_path):
    """check_tree is skipped only for a file of entries the fast path takes (clean by
    construction); anything out of bounds anywhere sends the file through it, and its refusal
    comes first, as when every file was checked on parsing."""
    import pytest

    from tuneup.inputs import check_tree, loads_toml

    rule = "[[rule]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in BASE.items() if k != "expected")
    cases = {
        "expected = 4611686018427387904\n": None,        # 2**62: fine
        "expected = 1.5e300\n": None,
        "expected = " + "1" * 41 + "\n": "rule[1].expected: integer too large",
        "expected = 9223372036854775808\n": None,         # 2**63: past the fast path, fine for check_tree
        "expected = inf\n": "rule[1].expected: number inf is not finite",
        "expected = -nan\n": "rule[1].expected: number nan is not finite",
        'expected = "1"\n[x]\nbig = ' + "9" * 45 + "\n": "x.big: integer too large",
        'expected = "1"\n[x]\nok = 1\n': "unknown top-level table(s) x",
    }
    for tail, message in cases.items():
        text = rule.replace("GEN-00001", "GEN-00000") + 'expected = "1"\n' + rule + tail
        (tmp_path / "gen.toml").write_text(text)
        if message is None:
            book = loader.load([tmp_path])
            assert {"GEN-00000", "GEN-00001"} <= set(book.rules)
            check_tree(loads_toml(text, "gen.toml", RuleFileError), "gen.toml", RuleFileError)
        else:
            with pytest.raises(RuleFileError, match=re.escape(message)) as err:
                loader.load([tmp_path])
            if "unknown" not in message:      # the line of the value too
                key = message.split(":")[0].rsplit(".", 1)[-1]
                line = text.split("\n").index(next(x for x in text.split("\n")[::-1] if x.startswith(key + " ="))) + 1
                assert err.value.where == f"{tmp_path / 'gen.toml'}:{line}", (err.value.where, line)


def test_lines_are_counted_at_newlines_only_as_the_toml_parser_counts_them(tmp_path):
    """A title may hold U+2028 or U+0085 (TOML allows them in strings): str.splitlines() took them
    for line breaks and put the next rule's errors two lines too low."""
    entry = "".join(f"{k} = {_toml(v)}\n" for k, v in BASE.items() if k not in ("id", "title"))
    text = ('[[rule]]\nid = "A-ONE"\ntitle = "a\u2028b\u0085c"\n' + entry
            + '\n[[rule]]\nid = "A-TWO"\ntitle = "t"\n' + entry.replace('"warning"', '"bad"'))
    (tmp_path / "x.toml").write_bytes(text.encode())
    at = text[: text.index('id = "A-TWO"')].count("\n") + 1
    import pytest

    with pytest.raises(RuleFileError, match=re.escape(f"x.toml:{at}: rule A-TWO: severity must be")):
        loader.load([tmp_path])


def test_printable_and_has_unsafe_agree_with_the_regex_on_every_code_point():
    """printable() skips the regex for a str.isprintable() text: that must never skip a character
    the regex escapes (the regex is compiled only for the rest)."""
    import re

    from tuneup.textsafe import has_unsafe, printable

    rx = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
    for c in map(chr, range(0x110000)):
        text = f"a{c}b"
        want = rx.sub(lambda m: (f"\\x{ord(m.group(0)):02x}" if ord(m.group(0)) < 0x100
                                 else f"\\u{ord(m.group(0)):04x}"), text)
        assert printable(text) == want, hex(ord(c))
        assert has_unsafe(text) == (rx.search(text) is not None), hex(ord(c))


def test_toml_line_follows_headers_and_keys():
    from tuneup.inputs import toml_line

    text = ('top = 1\n[[rule]]\nid = "A"\n\n[[ rule ]]\nid = "B"\nfix = { kind = "sysctl", value = 1 }\n'
            'expected = 5\n[param.connections]\ndefault = 7\n"quoted.key" = 2\n[[waiver]]\nrule = "X"\n')
    assert toml_line(text, "top") == 1
    assert toml_line(text, "rule[0].id") == 3
    assert toml_line(text, "rule[1].id") == 6
    assert toml_line(text, "rule[1].fix.value") == 7          # inside an inline table: its key's line
    assert toml_line(text, "rule[1].expected") == 8
    assert toml_line(text, "param.connections.default") == 10
    assert toml_line(text, 'param.connections["quoted.key"]') == 9   # not told apart: the table's header
    assert toml_line(text, "waiver[0].rule") == 13
    assert toml_line(text, "rule[2].id") is None and toml_line(text, "nosuch") is None
    assert toml_line(text, "a..b") is None and toml_line("", "rule[0]") is None


def test_an_out_of_range_number_in_a_waiver_or_config_file_names_its_line(tmp_path):
    from tuneup import config, waivers
    from tuneup.errors import TuneupError

    w = tmp_path / "waivers.toml"
    w.write_text('[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "r"\n\n[[waiver]]\nrule = "FD-*"\n'
                 'reason = "r"\nexpires = ' + "9" * 50 + "\n")
    with pytest.raises(TuneupError) as err:
        waivers.load(w)
    assert err.value.where == f"{w}:8" and "integer too large" in err.value.message
    c = tmp_path / "tuneup.toml"
    c.write_text('profile = "web"\n[params]\nconnections = inf\n')
    with pytest.raises(TuneupError) as err:
        config.load(c)
    assert err.value.where == f"{c}:3", err.value
