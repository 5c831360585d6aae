"""`rules list` stays linear in the number of rules: profiles are resolved once per profile (not
per rule), and the table is laid out without tabulate's per-cell inspection (tuneup.formats.termfit)."""

from __future__ import annotations

import json

from tuneup.formats import catalogue
from tuneup.rulebook import loader

RULE = '''
[[rule]]
id = "GEN-{i:05d}"
title = "Generated rule {i}"
section = "accept path"
severity = "info"
fact = "net.core.somaxconn"
op = ">="
expected = "{i}"
scope = "netns"
profiles = ["web"]
rationale = "generated"
refs = ["https://docs.kernel.org/networking/ip-sysctl.html"]
'''


def test_table_fits_the_width_and_lists_every_rule_once():
    """The table (tuneup.formats.termfit, linear in the rows) at 80 and 160 columns: every line
    fits, each rule id starts exactly one line, and the wide layout keeps the key column."""
    book = loader.load()
    rules = list(book.rules.values())
    for width in (80, 160):
        text = catalogue.rules_list(book, rules, "table", width=width)
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width
        starts = [line.split()[0] for line in lines[1:] if line and not line.startswith((" ", "-"))]
        assert sorted(starts) == sorted(r.id for r in rules)
        assert ("KEY" in lines[0]) is (width >= 110)


def test_listings_of_generated_rules_name_their_profiles(tmp_path):
    (tmp_path / "gen.toml").write_text("".join(RULE.format(i=i) for i in range(2000)))
    book = loader.load([tmp_path])
    rules = list(book.rules.values())
    listed = json.loads(catalogue.rules_list(book, rules, "json"))
    gen = [r for r in listed if r["id"].startswith("GEN-")]
    assert len(gen) == 2000
    assert all(r["profiles"] == book.profiles_of(book.rules[r["id"]]) for r in gen[:20])
    assert all("web" in r["profiles"] for r in gen)
    md = catalogue.rules_list(book, rules, "markdown")
    assert md.count("### GEN-") == 2000


def test_a_bad_rule_among_20000_is_refused_with_its_file_and_line(tmp_path):
    """The fast paths of loading many rules leave refusing to the full check: one bad entry in the
    middle of 20,000 is a one-line error naming its file and line, exit 2 (real CLI)."""
    import subprocess

    from conftest import tuneup_cmd

    good = "".join(RULE.format(i=i) for i in range(20000))
    start = good.index('id = "GEN-13579"')
    end = good.index("[[rule]]", start)
    at = good[:start].count("\n") + 1
    cases = {   # (what the rule says, what it says instead): the message
        ('severity = "info"', 'severity = "fatal"'): "severity must be info, warning or critical, not 'fatal'",
        ('expected = "13579"', 'expected = "connections +"'): "expected: invalid expression",
        ('profiles = ["web"]', 'profiles = ["nope"]'): "unknown profile 'nope'",
        ('scope = "netns"', 'scope = "netns"\nabsent = ["skip"]'): "absent must be pass, skip or fail",
    }
    for (was, bad), message in cases.items():
        assert was in good[start:end]
        (tmp_path / "gen.toml").write_text(good[:start] + good[start:end].replace(was, bad) + good[end:])
        out = subprocess.run([*tuneup_cmd(), "rules", "list", "--rules-dir", str(tmp_path)],
                             capture_output=True, text=True)
        assert out.returncode == 2, (bad, out.stderr)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
        assert f"gen.toml:{at}: rule GEN-13579: {message}" in out.stderr, (bad, out.stderr)
