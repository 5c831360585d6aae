"""Text for `tuneup capacity` and `tuneup probe`: a table or JSON. Returns text; the CLI writes it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tuneup.compat import StrEnum, assert_never
from tuneup.textsafe import block_safe

if TYPE_CHECKING:   # annotations only: the CLI imports CapacityFormat for every command
    from tuneup.capacity import Capacity, Limit


class CapacityFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


CAPACITY_SCHEMA = "tuneup.capacity/1"
PROBE_SCHEMA = "tuneup.probe/1"


def _n(v: int | None) -> str:
    if v is None:
        return "-"
    return f"{v:,}".replace(",", "_")


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


def _rows(limits: tuple[Limit, ...], goal: int | None) -> list[list[str]]:
    rows = []
    for i, lim in enumerate(limits):
        mark = "BINDING" if i == 0 else ""
        if goal:
            mark = (mark + " " if mark else "") + ("short" if lim.ceiling < goal else "ok")
        rows.append([lim.name, _n(lim.ceiling), mark, lim.detail])
    return rows


@block_safe
def capacity_table(cap: Capacity) -> str:
    from tabulate import tabulate

    goal = int(cap.params.get("connections", 0) or 0) or None
    host = cap.host
    out = [f"tuneup capacity of {host.get('hostname', '?')} (kernel {host.get('kernel', '?')}, netns "
           f"{host.get('netns', '?')}) for {cap.target}"
           + (f"; target {_n(goal)} connections" if goal else ""), ""]
    out.append("Inbound: concurrent connections each limit allows")
    out.append(tabulate(_rows(cap.limits, goal), headers=["limit", "ceiling", "", "how"], tablefmt="simple",
                        disable_numparse=True, maxcolwidths=[None, None, None, 90]))
    if cap.outbound:
        out += ["", "Outbound: concurrent connections per destination (address, port) and source address"]
        out.append(tabulate(_rows(cap.outbound, None), headers=["limit", "ceiling", "", "how"], tablefmt="simple",
                            disable_numparse=True, maxcolwidths=[None, None, None, 90]))
    for s in cap.skipped:
        out.append(f"skipped {s.name}: {s.reason}")
    b = cap.binding
    if b is not None:
        out += ["", f"Binding: {b.name} at {_n(b.ceiling)} connections. To raise it: {b.hint}."]
        nxt = next((x for x in cap.limits[1:]), None)
        if nxt is not None:
            out.append(f"Next: {nxt.name} at {_n(nxt.ceiling)}.")
    ob = cap.outbound_binding
    if ob is not None:
        out.append(f"Outbound per destination: {_n(ob.ceiling)} ({ob.name}). To raise it: {ob.hint}.")
    return "\n".join(out) + "\n"


def render_capacity(cap: Capacity, fmt: CapacityFormat) -> str:
    if fmt == CapacityFormat.TABLE:
        return capacity_table(cap)
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
def probe_table(res) -> str:
    from tabulate import tabulate

    who = "the probe's own listener" if res.mode == "self" else "the target"
    out = [f"tuneup probe toward {res.destination} ({who}): {_n(res.achieved)} of {_n(res.requested)} "
           f"connections in {res.seconds:g} s"]
    if res.stopped_by:
        out.append(f"stopped by {res.stopped_by} ({res.side}): {res.message}")
    else:
        out.append("not stopped: every requested connection was established")
    if res.queued:
        out.append(f"{_n(res.queued)} more were completed by the kernel but wait in the target's accept queue "
                   "(not accepted by the server; not counted as achieved)")
    b = res.prediction.binding
    if b is not None:
        out.append(f"predicted ceiling: {_n(b.ceiling)} ({b.name})"
                   + (f"; achieved/predicted = {res.achieved / b.ceiling:.3f}" if b.ceiling else ""))
    out += ["", tabulate([[x.name, _n(x.ceiling), x.detail] for x in res.prediction.limits],
                         headers=["limit", "ceiling", "how"], tablefmt="simple", disable_numparse=True,
                         maxcolwidths=[None, None, 90])]
    for s in res.prediction.skipped:
        out.append(f"skipped {s.name}: {s.reason}")
    return "\n".join(out) + "\n"


def render_probe(res, fmt: CapacityFormat) -> str:
    if fmt == CapacityFormat.TABLE:
        return probe_table(res)
    elif fmt == CapacityFormat.JSON:
        return json.dumps(probe_dict(res), indent=2) + "\n"
    else:
        assert_never(fmt)
