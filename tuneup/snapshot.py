"""Snapshot <-> JSON ("schema": "tuneup.snapshot/1"), with validation that names the JSON path."""

from __future__ import annotations

import json
from typing import Any

from tuneup import __version__
from tuneup.errors import SnapshotError
from tuneup.model import Fact, Snapshot, Value

SCHEMA = "tuneup.snapshot/1"
_HOST_REQUIRED = ("hostname", "kernel")
# Types of the host fields tuneup itself writes (others are kept as they are: check_tree has bounded them).
_HOST_STR = ("arch", "distro", "netns", "netns_evidence", "origin", "root", "limits_of")
_HOST_POSITIVE = ("cpus", "mem_total_bytes", "page_size")
_MAX_U64 = 2**64 - 1
_MAX_TUPLE = 64


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
    if isinstance(v, list) and len(v) <= _MAX_TUPLE and all(isinstance(x, int) and not isinstance(x, bool)
                                                            for x in v):
        return tuple(v)
    raise SnapshotError(f"{path}: expected a number, string, list of at most {_MAX_TUPLE} integers or null, "
                        f"got {type(v).__name__}", where)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_host(host: dict[str, Any], where: str) -> None:
    for k in _HOST_REQUIRED:
        if not isinstance(host.get(k), str):
            raise SnapshotError(f"$.host.{k}: missing or not a string", where)
    for k in _HOST_STR:
        if k in host and not isinstance(host[k], str):
            raise SnapshotError(f"$.host.{k}: must be a string", where)
    for k in _HOST_POSITIVE:
        if k in host and not (_is_int(host[k]) and 0 < host[k] <= _MAX_U64):
            raise SnapshotError(f"$.host.{k}: must be a positive integer (at most 2**64-1)", where)
    kv = host.get("kernel_version")
    if kv is not None and not (isinstance(kv, list) and 1 <= len(kv) <= 4
                               and all(_is_int(x) and 0 <= x < 2**32 for x in kv)):
        raise SnapshotError("$.host.kernel_version: must be a list of 1 to 4 non-negative integers "
                            "such as [6, 1, 0]", where)


def _check_processes(procs: Any, where: str) -> None:
    if not isinstance(procs, list):
        raise SnapshotError("$.processes: must be a list of objects with an integer 'pid'", where)
    for i, p in enumerate(procs):
        if not isinstance(p, dict) or not (_is_int(p.get("pid")) and 0 < p["pid"] < 2**32):
            raise SnapshotError(f"$.processes[{i}]: must be an object with a positive integer 'pid'", where)
        for k in ("name", "unit"):
            if p.get(k) is not None and not isinstance(p[k], str):
                raise SnapshotError(f"$.processes[{i}].{k}: must be a string", where)


def _check_listeners(listeners: Any, where: str) -> None:
    if listeners is None:
        return
    if not isinstance(listeners, list):
        raise SnapshotError("$.listeners: must be a list of objects with a string 'local'", where)
    for i, x in enumerate(listeners):
        if not isinstance(x, dict) or not isinstance(x.get("local"), str):
            raise SnapshotError(f"$.listeners[{i}]: must be an object with a string 'local'", where)
        for k in ("port", "backlog", "queue", "pid"):
            if x.get(k) is not None and not (_is_int(x[k]) and 0 <= x[k] <= _MAX_U64):
                raise SnapshotError(f"$.listeners[{i}].{k}: must be a non-negative integer or null", where)
        if x.get("process") is not None and not isinstance(x["process"], str):
            raise SnapshotError(f"$.listeners[{i}].process: must be a string or null", where)


def loads(text: str, where: str) -> Snapshot:
    from tuneup.inputs import loads_json

    data = loads_json(text, where, SnapshotError)
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
    _check_host(host, where)
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
        source = entry.get("source", where)
        if not isinstance(source, str):
            raise SnapshotError(f"{path}.source: must be a string", where)
        facts[key] = Fact(key, _value(entry["value"], f"{path}.value", where), source, err)
    procs = data.get("processes", [])
    _check_processes(procs, where)
    listeners = data.get("listeners")
    _check_listeners(listeners, where)
    collected = data.get("collected_at", "")
    if not isinstance(collected, str):
        raise SnapshotError("$.collected_at: must be a string", where)
    return Snapshot(host=host, facts=facts, processes=procs, listeners=listeners,
                    collected_at=collected, origin=where)


def load(path: str) -> Snapshot:
    from tuneup.inputs import read_text

    return loads(read_text(path, SnapshotError), path)
