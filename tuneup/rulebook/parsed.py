"""The built-in rule and profile files, pre-parsed: rules/_parsed.json holds each file's exact text
and the tree TOML gives for it, as JSON (which the C decoder reads about 10x faster than the TOML
parser, and without importing it). Only the parse is saved: the loader checks and builds the tree
as it does a freshly parsed one, and it uses an entry only when the file's text is byte for byte
the text recorded, so a stale or edited file is parsed as TOML (nothing is ever written at run
time). tests/test_parsed_rules.py fails when the checked-in file is stale.

    python -m tuneup.rulebook.parsed rules/_parsed.json      # regenerate after editing rules/
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NAME = "_parsed.json"
SCHEMA = "tuneup.parsed-rules/1"
_cache: dict[str, dict[str, tuple[str, str]]] = {}     # rules dir -> name -> (text, tree as JSON)


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
    """The JSON document for every *.toml in rules_dir, one file a line: its text, and its tree
    as a JSON string (decoded afresh for each load, so no two loads share a tree)."""
    from tuneup.compat import tomllib

    lines = []
    for path in sorted(rules_dir.glob("*.toml")):
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
        _json_only(data, path.name)
        entry = {"text": text, "data": json.dumps(data)}   # in TOML order (params are declared in order)
        lines.append(f"{json.dumps(path.name)}: {json.dumps(entry, sort_keys=True)}")
    return '{"schema": "%s", "files": {\n%s\n}}\n' % (SCHEMA, ",\n".join(lines))


def _entries(rules_dir: Path) -> dict[str, tuple[str, str]]:
    """name -> (text, tree as JSON) from rules_dir/_parsed.json; empty when it is missing or not
    what build() writes."""
    try:
        doc = json.loads((rules_dir / NAME).read_text(encoding="utf-8"))
        files = doc["files"] if isinstance(doc, dict) and doc.get("schema") == SCHEMA else {}
        return {name: (e["text"], e["data"]) for name, e in files.items()
                if isinstance(e, dict) and isinstance(e.get("text"), str) and isinstance(e.get("data"), str)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def tree(path: Path, text: str) -> Any | None:
    """The pre-parsed tree of path (a file of the built-in rules directory) when _parsed.json
    beside it records exactly this text, else None (the caller parses the TOML)."""
    key = str(path.parent)
    entries = _cache.get(key)
    if entries is None:
        entries = _cache[key] = _entries(path.parent)
    entry = entries.get(path.name)
    if entry is None or entry[0] != text:
        return None
    try:
        return json.loads(entry[1])
    except ValueError:
        return None


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
