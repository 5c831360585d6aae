"""A small, safe expression language for thresholds and conditions.

Expressions are Python syntax restricted by an AST whitelist and evaluated by walking the tree:
never ``eval``. Allowed: int/float/str/bool literals, tuples, names (profile parameters, host
values such as ``ram_bytes``/``cpus``/``page_size``/``kernel``, and ``value``/``expected`` where a
rule provides them), arithmetic (+ - * / // % **), comparisons (chained too), ``and``/``or``/
``not``, ``x if c else y``, subscripts with an integer index (``value[2]``), and calls to the
functions in ``FUNCTIONS`` plus ``fact("key")`` and ``has("key")``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

from tuneup.errors import ExprError

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


def _span(rng: tuple[int, int]) -> int:
    return rng[1] - rng[0] + 1


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "max": max,
    "min": min,
    "int": int,
    "float": float,
    "round": round,
    "abs": abs,
    "ceil": math.ceil,
    "floor": math.floor,
    "len": len,
    "span": _span,           # span((lo, hi)) = hi - lo + 1
    "log2": math.log2,
}
# resolved per evaluation by the caller's Context
CONTEXT_FUNCTIONS = ("fact", "has")

_MAX_POW = 64


class Expr:
    """A parsed, validated expression. Parse once (at rule load), evaluate many times."""

    __slots__ = ("text", "_tree", "names")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ExprError(f"expression must be a string, got {type(text).__name__}")
        if len(text) > 500:
            raise ExprError("expression longer than 500 characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"invalid expression {text!r}: {exc.msg}") from None
        self.text = text
        self.names: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _check(self, node: ast.AST) -> None:
        match node:
            case ast.Constant(value=v):
                if not isinstance(v, (int, float, str, bool)) or v is None:
                    raise ExprError(f"constant {v!r} not allowed in {self.text!r}")
            case ast.Name(id=name):
                if name in FUNCTIONS or name in CONTEXT_FUNCTIONS:
                    raise ExprError(f"{name} is a function; call it in {self.text!r}")
                if name not in ("True", "False"):
                    self.names.add(name)
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                for e in elts:
                    self._check(e)
            case ast.BinOp(left=l, op=op, right=r):
                if type(op) not in _BINOPS:
                    raise ExprError(f"operator {type(op).__name__} not allowed in {self.text!r}")
                self._check(l)
                self._check(r)
            case ast.UnaryOp(op=op, operand=o):
                if not isinstance(op, (ast.USub, ast.UAdd, ast.Not)):
                    raise ExprError(f"operator {type(op).__name__} not allowed in {self.text!r}")
                self._check(o)
            case ast.BoolOp(values=vals):
                for v in vals:
                    self._check(v)
            case ast.Compare(left=l, ops=ops, comparators=comps):
                for op in ops:
                    if type(op) not in _CMPOPS:
                        raise ExprError(f"comparison {type(op).__name__} not allowed in {self.text!r}")
                self._check(l)
                for c in comps:
                    self._check(c)
            case ast.IfExp(test=t, body=b, orelse=o):
                self._check(t)
                self._check(b)
                self._check(o)
            case ast.Subscript(value=v, slice=s):
                self._check(v)
                self._check(s)
            case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]):
                if fname not in FUNCTIONS and fname not in CONTEXT_FUNCTIONS:
                    raise ExprError(f"unknown function {fname}() in {self.text!r}")
                if fname in CONTEXT_FUNCTIONS and (
                    len(args) != 1 or not isinstance(args[0], ast.Constant) or not isinstance(args[0].value, str)
                ):
                    raise ExprError(f"{fname}() takes one quoted fact key in {self.text!r}")
                for a in args:
                    self._check(a)
            case _:
                raise ExprError(f"{type(node).__name__} not allowed in {self.text!r}")

    def fact_keys(self) -> set[str]:
        """Fact keys this expression reads with fact()/has()."""
        keys = set()
        for node in ast.walk(self._tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CONTEXT_FUNCTIONS:
                keys.add(node.args[0].value)
        return keys

    def evaluate(self, names: Mapping[str, Any], fact: Callable[[str], Any] | None = None,
                 has: Callable[[str], bool] | None = None) -> Any:
        try:
            return _Eval(names, fact, has, self.text).run(self._tree)
        except ExprError:
            raise
        except (TypeError, ValueError, ZeroDivisionError, IndexError, OverflowError) as exc:
            raise ExprError(f"{self.text!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"


class _Eval:
    __slots__ = ("names", "fact", "has", "text")

    def __init__(self, names, fact, has, text) -> None:
        self.names = names
        self.fact = fact
        self.has = has
        self.text = text

    def run(self, node: ast.AST) -> Any:
        match node:
            case ast.Constant(value=v):
                return v
            case ast.Name(id="True"):
                return True
            case ast.Name(id="False"):
                return False
            case ast.Name(id=name):
                try:
                    return self.names[name]
                except KeyError:
                    raise ExprError(f"unknown name {name!r} in {self.text!r}") from None
            case ast.Tuple(elts=elts) | ast.List(elts=elts):
                return tuple(self.run(e) for e in elts)
            case ast.BinOp(left=l, op=op, right=r):
                a, b = self.run(l), self.run(r)
                if isinstance(op, ast.Pow) and isinstance(b, (int, float)) and abs(b) > _MAX_POW:
                    raise ExprError(f"exponent {b} too large in {self.text!r}")
                if isinstance(op, ast.Mult) and (isinstance(a, (str, tuple)) or isinstance(b, (str, tuple))):
                    raise ExprError(f"cannot multiply sequences in {self.text!r}")
                return _BINOPS[type(op)](a, b)
            case ast.UnaryOp(op=ast.Not(), operand=o):
                return not self.run(o)
            case ast.UnaryOp(op=ast.USub(), operand=o):
                return -self.run(o)
            case ast.UnaryOp(op=ast.UAdd(), operand=o):
                return +self.run(o)
            case ast.BoolOp(op=ast.And(), values=vals):
                result = True
                for v in vals:
                    result = self.run(v)
                    if not result:
                        return result
                return result
            case ast.BoolOp(op=ast.Or(), values=vals):
                result = False
                for v in vals:
                    result = self.run(v)
                    if result:
                        return result
                return result
            case ast.Compare(left=l, ops=ops, comparators=comps):
                left = self.run(l)
                for op, c in zip(ops, comps):
                    right = self.run(c)
                    if not _CMPOPS[type(op)](left, right):
                        return False
                    left = right
                return True
            case ast.IfExp(test=t, body=b, orelse=o):
                return self.run(b) if self.run(t) else self.run(o)
            case ast.Subscript(value=v, slice=s):
                seq, idx = self.run(v), self.run(s)
                if not isinstance(idx, int) or not isinstance(seq, (tuple, str)):
                    raise ExprError(f"only integer indexing of tuples in {self.text!r}")
                return seq[idx]
            case ast.Call(func=ast.Name(id="fact"), args=[ast.Constant(value=key)]):
                if self.fact is None:
                    raise ExprError(f"fact() not available here: {self.text!r}")
                return self.fact(key)
            case ast.Call(func=ast.Name(id="has"), args=[ast.Constant(value=key)]):
                if self.has is None:
                    raise ExprError(f"has() not available here: {self.text!r}")
                return self.has(key)
            case ast.Call(func=ast.Name(id=fname), args=args):
                return FUNCTIONS[fname](*(self.run(a) for a in args))
        raise ExprError(f"cannot evaluate {type(node).__name__} in {self.text!r}")  # pragma: no cover
