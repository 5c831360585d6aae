"""`rules list` stays linear in the number of rules: profiles are resolved once per profile (not
per rule), and the table is laid out without tabulate's per-cell inspection — in the same layout."""

from __future__ import annotations

import json

from tabulate import tabulate

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


def test_table_layout_is_tabulates_simple():
    book = loader.load()
    rules = list(book.rules.values())
    rows = [[r.id, str(r.severity), r.fact, r.scope.value, r.title] for r in rules]
    ours = catalogue.rules_list(book, rules, "table")
    assert ours == tabulate(rows, headers=["ID", "SEVERITY", "KEY", "SCOPE", "TITLE"], tablefmt="simple") + "\n"


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
