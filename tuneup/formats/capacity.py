"""Text for `tuneup capacity` and `tuneup probe`: a table or JSON. Returns text; the CLI writes it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tuneup.compat import assert_never
from tuneup.formats import CapacityFormat  # noqa: F401 - defined there (the CLI builds without this module)
from tuneup.formats.termfit import group, table, terminal_width, wrap
from tuneup.textsafe import block_safe, printable

if TYPE_CHECKING:   # annotations only
    from tuneup.capacity import Capacity, Limit


CAPACITY_SCHEMA = "tuneup.capacity/1"
PROBE_SCHEMA = "tuneup.probe/1"


def _n(v: int | None) -> str:
    """One number style on the terminal: thousands separators (JSON keeps plain integers)."""
    if v is None:
        return "-"
    return f"{v:,}"


def _limit_json(lim: Limit) -> dict[str, Any]:
    return {"name": lim.name, "ceiling": lim.ceiling, "source": lim.source, "hint": lim.hint,
            "detail": lim.detail, "direction": lim.direction}


def _binding_json(lim: Limit | None) -> dict[str, Any] | None:
    return None if lim is None else {"name": lim.name, "ceiling": lim.ceiling, "hint": lim.hint}


def capacity_dict(cap: Capacity) -> dict[str, Any]:
    host = cap.host
    return {
        "schema": CAPACITY_SCHEMA,
        "host": {k: host.get(k) for k in ("hostname", "kernel", "netns")},
        "target": cap.target,
        "params": dict(cap.params),
        "limits": [_limit_json(x) for x in cap.limits],
        "binding": _binding_json(cap.binding),
        "outbound": {"per": "destination (address, port) and source address",
                     "limits": [_limit_json(x) for x in cap.outbound],
                     "binding": _binding_json(cap.outbound_binding)},
        "skipped": [{"name": s.name, "reason": s.reason, "source": s.source} for s in cap.skipped],
    }


def _mark(i: int, lim: Limit, goal: int | None) -> str:
    """"binds first" for the lowest ceiling; against the target: "19,995 below target" or "ok"."""
    parts = ["binds first"] if i == 0 else []
    if goal:
        parts.append(f"{_n(goal - lim.ceiling)} short of target" if lim.ceiling < goal else "meets target")
    return "; ".join(parts)


def _rows(limits: tuple[Limit, ...], goal: int | None) -> list[list[str]]:
    return [[lim.name, _n(lim.ceiling), _mark(i, lim, goal), group(printable(lim.detail))]
            for i, lim in enumerate(limits)]


def short_of_target(cap: Capacity) -> bool:
    """Whether the binding inbound ceiling is below the target (the `connections` parameter)."""
    goal = int(cap.params.get("connections", 0) or 0)
    return bool(goal) and cap.binding is not None and cap.binding.ceiling < goal


@block_safe
def capacity_table(cap: Capacity, width: int | None = None) -> str:
    width = width or terminal_width()
    goal = int(cap.params.get("connections", 0) or 0) or None
    host = cap.host
    out = wrap(f"tuneup capacity of {printable(host.get('hostname', '?'))} (kernel {printable(host.get('kernel', '?'))}, "
               f"netns {printable(host.get('netns', '?'))}) for {printable(cap.target)}"
               + (f"; target {_n(goal)} connections" if goal else ""), width, "", "  ") + [""]
    out.append("Inbound: concurrent connections each limit allows")
    out += table(["LIMIT", "CEILING", "VS TARGET", "HOW IT IS COUNTED"], _rows(cap.limits, goal), width, flex=(3, 2))
    if cap.outbound:
        out += [""] + wrap("Outbound: concurrent connections per destination (address, port) and source address",
                           width)
        out += table(["LIMIT", "CEILING", "", "HOW IT IS COUNTED"], _rows(cap.outbound, None), width, flex=(3, 2))
    for s in cap.skipped:
        out += wrap(f"skipped {s.name}: {printable(s.reason)}", width, "", "  ")
    b = cap.binding
    if b is not None:
        verdict = ""
        if goal:
            verdict = (f" That is {_n(goal - b.ceiling)} short of the target of {_n(goal)}." if b.ceiling < goal
                       else f" The target of {_n(goal)} fits.")
        out += [""] + wrap(f"Binds first: {b.name} at {_n(b.ceiling)} connections.{verdict} "
                           f"To raise it: {group(printable(b.hint))}.", width, "", "  ")
        nxt = next((x for x in cap.limits[1:]), None)
        if nxt is not None:
            out += wrap(f"Next: {nxt.name} at {_n(nxt.ceiling)}.", width, "", "  ")
    ob = cap.outbound_binding
    if ob is not None:
        out += wrap(f"Outbound per destination: {_n(ob.ceiling)} ({ob.name}). To raise it: "
                    f"{printable(ob.hint)}.", width, "", "  ")
    return "\n".join(out) + "\n"


def render_capacity(cap: Capacity, fmt: CapacityFormat, width: int | None = None) -> str:
    if fmt == CapacityFormat.TABLE:
        return capacity_table(cap, width)
    elif fmt == CapacityFormat.JSON:
        return json.dumps(capacity_dict(cap), indent=2) + "\n"
    else:
        assert_never(fmt)


def probe_dict(res) -> dict[str, Any]:
    pred = res.prediction
    return {
        "schema": PROBE_SCHEMA,
        "mode": res.mode,
        "destination": res.destination,
        "requested": res.requested,
        "achieved": res.achieved,
        "stopped_by": res.stopped_by,
        "side": res.side,
        "message": res.message,
        "seconds": res.seconds,
        "predicted": res.predicted,
        "prediction": {"binding": _binding_json(pred.binding),
                       "limits": [_limit_json(x) for x in pred.limits],
                       "skipped": [{"name": s.name, "reason": s.reason} for s in pred.skipped]},
        "rate": res.rate,
        "timeout": res.timeout,
        "listener": res.listener,
        "queued": res.queued,
    }


@block_safe
def probe_table(res, width: int | None = None) -> str:
    width = width or terminal_width()
    who = "the probe's own listener" if res.mode == "self" else "the target"
    out = wrap(f"tuneup probe toward {printable(res.destination)} ({who}): {_n(res.achieved)} of "
               f"{_n(res.requested)} connections in {res.seconds:g} s", width, "", "  ")
    if res.stopped_by:
        out += wrap(f"stopped by {res.stopped_by} ({res.side}): {group(printable(res.message))}", width, "", "  ")
    else:
        out.append("not stopped: every requested connection was established")
    if res.queued:
        out += wrap(f"{_n(res.queued)} more were completed by the kernel but wait in the target's accept queue "
                    "(not accepted by the server; not counted as achieved)", width, "", "  ")
    b = res.prediction.binding
    if b is not None:
        out += wrap(f"predicted ceiling: {_n(b.ceiling)} ({b.name})"
                    + (f"; achieved/predicted = {res.achieved / b.ceiling:.3f}" if b.ceiling else ""), width, "", "  ")
    out += [""] + table(["LIMIT", "CEILING", "HOW IT IS COUNTED"],
                        [[x.name, _n(x.ceiling), group(printable(x.detail))] for x in res.prediction.limits],
                        width, flex=(2,))
    for s in res.prediction.skipped:
        out += wrap(f"skipped {s.name}: {printable(s.reason)}", width, "", "  ")
    return "\n".join(out) + "\n"


def render_probe(res, fmt: CapacityFormat, width: int | None = None) -> str:
    if fmt == CapacityFormat.TABLE:
        return probe_table(res, width)
    elif fmt == CapacityFormat.JSON:
        return json.dumps(probe_dict(res), indent=2) + "\n"
    else:
        assert_never(fmt)
