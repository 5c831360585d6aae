"""rules/_parsed.json: the built-in rule and profile files pre-parsed (tuneup.rulebook.parsed).
It must be current, give exactly the tree TOML gives, and be used only for the exact text."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tuneup.compat import tomllib
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
