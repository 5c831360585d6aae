"""Snapshot <-> JSON ("schema": "tuneup.snapshot/1"), with validation that names the JSON path."""

from __future__ import annotations

import json
from typing import Any

from tuneup import __version__
from tuneup.errors import SnapshotError
from tuneup.model import Fact, Snapshot, Value

SCHEMA = "tuneup.snapshot/1"
_HOST_REQUIRED = ("hostname", "kernel")


def to_json_value(v: Value) -> Any:
    return list(v) if isinstance(v, tuple) else v


def to_dict(snap: Snapshot) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tuneup": __version__,
        "collected_at": snap.collected_at,
        "host": snap.host,
        "processes": snap.processes,
        **({"listeners": snap.listeners} if snap.listeners is not None else {}),
        "facts": {
            k: {"value": to_json_value(f.value), "source": f.source, **({"error": f.error} if f.error else {})}
            for k, f in sorted(snap.facts.items())
        },
    }


def dumps(snap: Snapshot) -> str:
    return json.dumps(to_dict(snap), indent=2, sort_keys=False) + "\n"


def _value(v: Any, path: str, where: str) -> Value:
    if v is None or isinstance(v, (str, int, float)) and not isinstance(v, bool):
        return v
    if isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        return tuple(v)
    raise SnapshotError(f"{path}: expected a number, string, list of integers or null, got {v!r}"[:200], where)


def loads(text: str, where: str) -> Snapshot:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"invalid JSON: {exc.msg} (truncated or not a snapshot?)",
                            f"{where}:{exc.lineno}:{exc.colno}") from None
    if not isinstance(data, dict):
        raise SnapshotError("$: not a JSON object", where)
    schema = data.get("schema")
    if schema != SCHEMA:
        if isinstance(schema, str) and schema.startswith("tuneup.snapshot/"):
            raise SnapshotError(f"$.schema: unsupported version {schema!r} (this tuneup reads {SCHEMA})", where)
        raise SnapshotError(f"$.schema: not a tuneup snapshot (schema {schema!r}, want {SCHEMA!r})", where)
    host = data.get("host")
    if not isinstance(host, dict):
        raise SnapshotError("$.host: missing or not an object", where)
    for k in _HOST_REQUIRED:
        if not isinstance(host.get(k), str):
            raise SnapshotError(f"$.host.{k}: missing or not a string", where)
    for k in ("cpus", "mem_total_bytes", "page_size"):
        if k in host and (not isinstance(host[k], int) or isinstance(host[k], bool) or host[k] <= 0):
            raise SnapshotError(f"$.host.{k}: must be a positive integer", where)
    raw_facts = data.get("facts")
    if not isinstance(raw_facts, dict):
        raise SnapshotError("$.facts: missing or not an object", where)
    facts: dict[str, Fact] = {}
    for key, entry in raw_facts.items():
        path = f"$.facts[{json.dumps(key)}]"
        if not isinstance(entry, dict) or "value" not in entry:
            raise SnapshotError(f"{path}: must be an object with a 'value'", where)
        err = entry.get("error")
        if err is not None and not isinstance(err, str):
            raise SnapshotError(f"{path}.error: must be a string", where)
        facts[key] = Fact(key, _value(entry["value"], f"{path}.value", where), str(entry.get("source", where)), err)
    procs = data.get("processes", [])
    if not isinstance(procs, list) or not all(isinstance(p, dict) and isinstance(p.get("pid"), int) for p in procs):
        raise SnapshotError("$.processes: must be a list of objects with an integer 'pid'", where)
    listeners = data.get("listeners")
    if listeners is not None and (not isinstance(listeners, list) or not all(
            isinstance(x, dict) and isinstance(x.get("local"), str) for x in listeners)):
        raise SnapshotError("$.listeners: must be a list of objects with a string 'local'", where)
    return Snapshot(host=host, facts=facts, processes=procs, listeners=listeners,
                    collected_at=str(data.get("collected_at", "")), origin=where)


def load(path: str) -> Snapshot:
    from tuneup.inputs import read_text

    return loads(read_text(path, SnapshotError), path)
