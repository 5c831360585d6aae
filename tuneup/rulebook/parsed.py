"""The built-in rule and profile files, pre-parsed and pre-built: rules/_parsed.json holds

- for each file: its exact text, the tree TOML gives for it, as JSON (which the C decoder reads
  about 10x faster than the TOML parser, and without importing it), and the line of each rule's
  `id = ` (what the loader would find in the text with its pattern);
- the rulebook those files load into (the loader's book_to_json: every rule's fields, its fact
  keys, the parameters and profiles), built by the loader itself from the TOML.

The loader uses the rulebook when the built-in directory holds exactly the recorded files, each
byte for byte the recorded text: it then neither parses, checks nor builds anything, and compiles a
built-in rule's expressions when an audit first evaluates them (the checks ran when the record
was built, and tests/test_parsed_rules.py holds the record to a fresh load). When a file differs
(an operator edited a rule in place), the rules are loaded from the files: a recorded tree is used
for a file whose text is the recorded one, and is then checked and built as a freshly parsed one;
any other file is parsed as TOML. Nothing is ever written at run time; the test fails when the
checked-in file is stale.

    python -m tuneup.rulebook.parsed rules/_parsed.json      # regenerate after editing rules/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAME = "_parsed.json"
SCHEMA = "tuneup.parsed-rules/1"
# rules dir -> ({name: (text, tree as JSON, id lines as JSON)}, its rulebook (book_to_json) as JSON or None)
_cache: dict[str, tuple[dict[str, tuple[str, str, str]], str | None]] = {}


def _json_only(node: Any, where: str) -> None:
    """Refuse what JSON would not give back as it is (dates, times, non-finite floats)."""
    t = type(node)
    if t is dict:
        for k, v in node.items():
            _json_only(v, f"{where}.{k}")
    elif t is list:
        for i, v in enumerate(node):
            _json_only(v, f"{where}[{i}]")
    elif t is float:
        if node != node or node in (float("inf"), float("-inf")):
            raise ValueError(f"{where}: a non-finite float cannot be pre-parsed")
    elif t not in (str, int, bool):
        raise ValueError(f"{where}: a {t.__name__} cannot be pre-parsed as JSON")


def build(rules_dir: Path) -> str:
    """The JSON document for every *.toml in rules_dir, one file a line (its text, its tree and its
    id lines, both as JSON strings: decoded afresh for each load, so no two loads share one), then
    the rulebook the loader builds from those files (a JSON string too)."""
    from tuneup.compat import tomllib
    from tuneup.rulebook.loader import _ID_LINE, Rulebook, _lines_by_group, book_to_json, load_dirs

    lines = []
    for path in sorted(rules_dir.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
        _json_only(data, path.name)
        entry = {"text": text, "data": json.dumps(data),    # in TOML order (params are declared in order)
                 "lines": json.dumps(_lines_by_group(_ID_LINE, text))}
        lines.append(f"{json.dumps(path.name)}: {json.dumps(entry, sort_keys=True)}")

    built = json.dumps(book_to_json(load_dirs(Rulebook(), [rules_dir]), rules_dir), separators=(",", ":"))
    return '{"schema": "%s", "files": {\n%s\n},\n"book": %s}\n' % (SCHEMA, ",\n".join(lines), json.dumps(built))


def _record(rules_dir: Path) -> tuple[dict[str, tuple[str, str, str]], str | None]:
    """({name: (text, tree, id lines; both as JSON)}, the rulebook as JSON or None) from
    rules_dir/_parsed.json, read once per directory; ({}, None) when it is missing or not what
    build() writes."""
    key = str(rules_dir)
    got = _cache.get(key)
    if got is not None:
        return got
    try:
        doc = json.loads((rules_dir / NAME).read_text(encoding="utf-8"))
        files = doc["files"] if isinstance(doc, dict) and doc.get("schema") == SCHEMA else {}
        entries = {name: (e["text"], e["data"], e["lines"]) for name, e in files.items()
                   if isinstance(e, dict) and all(isinstance(e.get(k), str) for k in ("text", "data", "lines"))}
        built = doc["book"] if entries and isinstance(doc.get("book"), str) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries, built = {}, None
    got = _cache[key] = (entries, built)
    return got


def _loads(text: str | None) -> Any | None:
    try:
        return json.loads(text) if text is not None else None     # afresh each time: the caller may change it
    except ValueError:
        return None


def _decoded(path: Path, text: str, part: int) -> Any | None:
    entry = _record(path.parent)[0].get(path.name)
    return _loads(entry[part]) if entry is not None and entry[0] == text else None


def book(rules_dir: Path, texts: dict[str, str]) -> Any | None:
    """The rulebook rules_dir's files load into, as the loader's book_to_json recorded it, when
    texts ({name: text} of every *.toml in rules_dir) are exactly the files recorded; else None
    (the caller loads the files). Decoded afresh each time."""
    entries, built = _record(rules_dir)
    if entries.keys() != texts.keys() or any(entries[name][0] != text for name, text in texts.items()):
        return None
    return _loads(built)


def tree(path: Path, text: str) -> Any | None:
    """The pre-parsed tree of path (a file of the built-in rules directory) when _parsed.json
    beside it records exactly this text, else None (the caller parses the TOML)."""
    return _decoded(path, text, 1)


def id_lines(path: Path, text: str) -> tuple[dict[str, int], dict[str, list[int]]] | None:
    """What the loader's _lines_by_group(_ID_LINE, text) gives for path when _parsed.json records
    exactly this text (the line of each rule id, and the lines of ids given more than once), else None."""
    got = _decoded(path, text, 2)
    if (type(got) is not list or len(got) != 2 or type(got[0]) is not dict or type(got[1]) is not dict):
        return None
    return got[0], got[1]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tuneup.rulebook.parsed OUT.json", file=sys.stderr)
        return 2
    from tuneup.rulebook.loader import builtin_dir

    Path(args[0]).write_text(build(builtin_dir("rules")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
