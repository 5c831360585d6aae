"""Comparison operators of rules. Each takes (actual, expected) and returns bool.

Tuples are first-class: ``>=`` and friends compare element by element when both sides are tuples
of the same length (tcp_rmem against a minimum triple); ``each>=`` compares every element with one
scalar; ``span>=`` and ``parity-differs`` read a (low, high) range such as ip_local_port_range.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from tuneup.errors import ExprError

_SCALAR: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}


def _num(x: Any, what: str) -> int | float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ExprError(f"{what} must be a number, got {x!r}")
    return x


def _pair(x: Any) -> tuple[int, int]:
    if not isinstance(x, tuple) or len(x) != 2:
        raise ExprError(f"expected a (low, high) range, got {x!r}")
    return _num(x[0], "range low"), _num(x[1], "range high")


def _scalar_or_tuple(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        if isinstance(actual, tuple) or isinstance(expected, tuple):
            if not (isinstance(actual, tuple) and isinstance(expected, tuple)) or len(actual) != len(expected):
                raise ExprError(f"cannot compare {actual!r} with {expected!r}: use each{_name(fn)} for one bound")
            return all(fn(a, e) for a, e in zip(actual, expected))
        if isinstance(actual, str) or isinstance(expected, str):
            if fn not in (operator.eq, operator.ne):
                raise ExprError(f"cannot order strings {actual!r} and {expected!r}")
        return fn(actual, expected)
    return compare


def _name(fn: Callable[[Any, Any], bool]) -> str:
    return next(k for k, v in _SCALAR.items() if v is fn)


def _each(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        if not isinstance(actual, tuple):
            raise ExprError(f"each-operator needs a tuple value, got {actual!r}")
        if isinstance(expected, tuple):
            if len(expected) != len(actual):
                raise ExprError(f"{expected!r} and {actual!r} differ in length")
            return all(fn(_num(a, "element"), _num(e, "bound")) for a, e in zip(actual, expected))
        return all(fn(_num(a, "element"), _num(expected, "bound")) for a in actual)
    return compare


def _span_ge(actual: Any, expected: Any) -> bool:
    lo, hi = _pair(actual)
    return hi - lo + 1 >= _num(expected, "span")


def _parity_differs(actual: Any, expected: Any) -> bool:
    lo, hi = _pair(actual)
    return (lo % 2 != hi % 2) == bool(expected)


def _between(actual: Any, expected: Any) -> bool:
    lo, hi = _pair(expected)
    return lo <= _num(actual, "value") <= hi


def _in(actual: Any, expected: Any) -> bool:
    if not isinstance(expected, tuple):
        expected = (expected,)
    return actual in expected


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    **{k: _scalar_or_tuple(v) for k, v in _SCALAR.items()},
    **{f"each{k}": _each(v) for k, v in _SCALAR.items() if k in (">=", "<=", ">", "<")},
    "in": _in,
    "not in": lambda a, e: not _in(a, e),
    "span>=": _span_ge,
    "parity-differs": _parity_differs,
    "between": _between,
}

# How each operator reads in a report ("want >= 4096").
def describe(op: str, expected: Any, render: Callable[[Any], str]) -> str:
    if op == "parity-differs":
        return "ends of different parity" if expected else "ends of the same parity"
    if op == "span>=":
        return f"span >= {render(expected)}"
    if op == "between":
        lo, hi = expected if isinstance(expected, tuple) and len(expected) == 2 else (expected, expected)
        return f"between {render(lo)} and {render(hi)}"
    if op in ("in", "not in"):
        items = expected if isinstance(expected, tuple) else (expected,)
        return f"{op} {{{', '.join(render(i) for i in items)}}}"
    return f"{op} {render(expected)}"
