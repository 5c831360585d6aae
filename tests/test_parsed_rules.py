"""rules/_parsed.json: the built-in rule and profile files pre-parsed (tuneup.rulebook.parsed).
It must be current, give exactly the tree TOML gives, and be used only for the exact text."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuneup.compat import tomllib
from tuneup.errors import RuleFileError
from tuneup.rulebook import loader, parsed

RULES = loader.builtin_dir("rules")


def _same(a, b) -> bool:
    """Equal, with the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_the_checked_in_file_is_current():
    assert (RULES / parsed.NAME).read_text(encoding="utf-8") == parsed.build(RULES), \
        "rules/_parsed.json is stale: python -m tuneup.rulebook.parsed rules/_parsed.json"


def test_each_tree_is_the_toml_parse_in_order_and_type():
    names = sorted(p.name for p in RULES.glob("*.toml"))
    assert len(names) >= 10
    for name in names:
        text = (RULES / name).read_text(encoding="utf-8")
        tree = parsed.tree(RULES / name, text)
        assert tree is not None, name
        assert _same(tree, tomllib.loads(text)), name
        assert parsed.tree(RULES / name, text) is not tree          # a fresh tree each time


def test_an_edited_or_unknown_file_is_parsed_as_toml(tmp_path):
    text = (RULES / "accept.toml").read_text(encoding="utf-8")
    assert parsed.tree(RULES / "accept.toml", text + "\n") is None    # not the recorded text
    assert parsed.tree(RULES / "nosuch.toml", text) is None
    copy = tmp_path / "rules"
    shutil.copytree(RULES, copy)
    (copy / parsed.NAME).write_text("{not json", encoding="utf-8")
    assert parsed.tree(copy / "accept.toml", text) is None            # a broken file: parse the TOML


def test_the_rulebook_is_the_same_with_and_without_it(monkeypatch):
    monkeypatch.setattr(parsed, "book", lambda rules_dir, texts: None)    # the files, pre-parsed trees
    book = loader.load()
    monkeypatch.setattr(parsed, "tree", lambda path, text: None)
    plain = loader.load()
    assert book.rules == plain.rules and list(book.rules) == list(plain.rules)
    assert book.profile_defs == plain.profile_defs and list(book.params) == list(plain.params)
    assert book.params == plain.params


def test_an_edited_builtin_file_is_still_checked_with_its_line(tmp_path):
    """A built-in directory whose file no longer matches: the TOML is parsed, and a bad entry is the
    usual one-line error naming the file and line (installed copy edited by hand, say)."""
    copy = tmp_path / "pkg"
    shutil.copytree(RULES, copy / "rules")
    bad = copy / "rules" / "accept.toml"
    bad.write_text(bad.read_text(encoding="utf-8").replace('severity = "warning"', 'severity = "loud"', 1),
                   encoding="utf-8")
    code = ("import sys; from pathlib import Path; from tuneup.rulebook import loader; "
            f"loader.builtin_dir = lambda name: Path({str(copy)!r}) / name; "
            "from tuneup.errors import TuneupError\n"
            "try:\n    loader.load()\nexcept TuneupError as e:\n    print(e.where, e); sys.exit(2)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "accept.toml:" in out.stdout and "loud" in out.stdout


def test_a_plain_audit_never_imports_the_toml_parser(tmp_path):
    code = ("import sys, io, contextlib\nfrom tuneup.entry import main\n"
            "sys.argv = ['tuneup', 'audit', '-f', 'json', '--fail-on', 'never']\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    try:\n        main()\n    except SystemExit as e:\n        rc = e.code\n"
            "assert rc == 0, rc\nassert json.loads(buf.getvalue())['schema'] == 'tuneup.report/1'\n"
            "print(sorted(m for m in sys.modules if m.startswith(('tomli', 'tomllib'))))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_id_lines_are_what_the_loader_finds_in_the_text():
    for name in sorted(p.name for p in RULES.glob("*.toml")):
        text = (RULES / name).read_text(encoding="utf-8")
        assert parsed.id_lines(RULES / name, text) == loader._lines_by_group(loader._ID_LINE, text), name
        assert parsed.id_lines(RULES / name, text + "\n") is None
    text = (RULES / "accept.toml").read_text(encoding="utf-8")
    first, _ = parsed.id_lines(RULES / "accept.toml", text)
    first.clear()
    assert parsed.id_lines(RULES / "accept.toml", text)[0]             # a fresh copy each time


def _same_book(a, b) -> None:
    assert list(a.rules) == list(b.rules) and a.rules == b.rules
    for rid, r in a.rules.items():
        other = b.rules[rid]
        for f in dataclasses.fields(r):
            assert _same_value(getattr(r, f.name), getattr(other, f.name)), (rid, f.name)
    assert list(a.params) == list(b.params) and a.params == b.params
    assert all(_same(a.params[k].default, b.params[k].default) for k in a.params)
    assert list(a.profile_defs) == list(b.profile_defs)
    assert all(_same(a.profile_defs[k], b.profile_defs[k]) for k in a.profile_defs)
    assert a.default_profile == b.default_profile


def _same_value(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, tuple):
        return len(a) == len(b) and all(map(_same_value, a, b))
    return a == b


def test_the_prebuilt_rulebook_is_what_the_files_load_into():
    """rules/_parsed.json's rulebook: every rule, field by field with the same types, origins under
    the installed directory, the parameters and profiles in order, and each rule's fact keys."""
    loader.compile_expr.cache_clear()
    book = loader.load()
    assert loader.compile_expr.cache_info().misses == 0          # nothing compiled at load
    assert set(book.known_keys) == set(book.rules)
    plain = loader.load_dirs(loader.Rulebook(), [RULES])          # from the TOML
    _same_book(book, plain)
    assert all(book.known_keys[rid] == (r, loader.rule_fact_keys(plain.rules[rid])) for rid, r in book.rules.items())
    assert book.fact_keys() == plain.fact_keys()
    assert next(iter(book.rules.values())).origin.startswith(str(RULES) + "/")


def _copy_of_rules(tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(RULES, copy / "rules")
    return copy


def _load_from(copy, monkeypatch, *dirs):
    monkeypatch.setattr(loader, "builtin_dir", lambda name: copy / name)
    return loader.load(list(dirs))


def test_a_changed_builtin_directory_is_loaded_from_its_files(tmp_path, monkeypatch):
    """An edited, added or removed built-in file: the rules come from the files, the edit with them."""
    copy = _copy_of_rules(tmp_path)
    same = _load_from(copy, monkeypatch)
    assert same.known_keys and same.rules == loader.load_dirs(loader.Rulebook(), [copy / "rules"]).rules
    accept = copy / "rules" / "accept.toml"
    text = accept.read_text(encoding="utf-8")
    accept.write_text(text.replace('severity = "warning"', 'severity = "critical"', 1), encoding="utf-8")
    edited = _load_from(copy, monkeypatch)
    assert not edited.known_keys
    changed = [r for r in edited.rules.values() if r != same.rules[r.id]]
    assert len(changed) == 1 and str(changed[0].severity) == "critical"
    accept.write_text(text, encoding="utf-8")
    (copy / "rules" / "zz-extra.toml").write_text(text.replace('id = "', 'id = "X'), encoding="utf-8")
    added = _load_from(copy, monkeypatch)
    assert not added.known_keys and len(added.rules) == len(same.rules) + len(_ids(text))
    (copy / "rules" / "zz-extra.toml").unlink()
    (copy / "rules" / "accept.toml").unlink()
    removed = _load_from(copy, monkeypatch)
    assert not removed.known_keys and set(removed.rules) == set(same.rules) - set(_ids(text))


def _ids(text: str) -> list[str]:
    return [e["id"] for e in tomllib.loads(text)["rule"]]


def test_extra_rule_directories_load_on_top_of_the_prebuilt_rules(tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "mine.toml").write_text('''[[rule]]
id = "MY-SOMAXCONN"
title = "t"
severity = "warning"
fact = "net.core.somaxconn"
op = ">="
expected = "max(4096, connections // 10)"
scope = "netns"
rationale = "r"
refs = ["x"]
profiles = ["web"]
''', encoding="utf-8")
    book = loader.load([extra])
    assert list(book.rules)[-1] == "MY-SOMAXCONN" and "MY-SOMAXCONN" not in book.known_keys
    assert book.rules["MY-SOMAXCONN"].origin == f"{extra / 'mine.toml'}:2"
    assert "net.core.somaxconn" in book.fact_keys() and len(book.rules) == len(loader.load().rules) + 1
    (extra / "dup.toml").write_text((extra / "mine.toml").read_text().replace("MY-SOMAXCONN", "NET-SOMAXCONN"))
    with pytest.raises(RuleFileError, match="already defined"):
        loader.load([extra])


def test_a_broken_record_of_the_rulebook_is_not_used():
    root = RULES
    good = json.loads(json.loads((RULES / parsed.NAME).read_text(encoding="utf-8"))["book"])
    assert loader.book_from_json(good, root) is not None
    for broken in ({**good, "fields": good["fields"][:-1]}, {**good, "rules": [good["rules"][0][:3]]},
                   {**good, "keys": {}}, {**good, "params": [["x"]]}, {}, [], None):
        assert loader.book_from_json(broken, root) is None
