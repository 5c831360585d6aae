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
