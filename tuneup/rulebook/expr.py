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


# Every integer an expression builds stays below MAX_BITS bits (about 3,000 decimal digits):
# operations whose result would be larger are refused before they run, whatever the operands, so
# no rule or parameter can make an evaluation hang or eat memory.
MAX_BITS = 10_000
_MAX_NDIGITS = 64


class ExprTooLarge(ExprError):
    """An intermediate result would exceed MAX_BITS (also found at load time for constants)."""


def _round(x: Any, ndigits: Any = None) -> Any:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > _MAX_NDIGITS):
        raise ExprError(f"round() digits must be an integer between -{_MAX_NDIGITS} and {_MAX_NDIGITS}")
    return round(x) if ndigits is None else round(x, ndigits)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "max": max,
    "min": min,
    "int": int,
    "float": float,
    "round": _round,
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

    __slots__ = ("text", "_tree", "names", "_keys")

    def __init__(self, text: str) -> None:
        if not isinstance(text, str):
            raise ExprError(f"expression must be a string, got {type(text).__name__}")
        if len(text) > 500:
            raise ExprError("expression longer than 500 characters")
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ExprError(f"invalid expression {text!r}: {exc.msg}") from None
        except (RecursionError, MemoryError):
            raise ExprError(f"expression nested too deeply: {text!r}") from None
        self.text = text
        self.names: set[str] = set()
        self._keys: set[str] = set()   # fact()/has() keys, gathered by _check's walk
        try:
            constant: list[ast.AST] = []
            self._check(tree.body, constant)
            self._tree = tree.body
            self._fold_constants(constant)
        except RecursionError:
            raise ExprError(f"expression nested too deeply: {text!r}") from None

    def _fold_constants(self, constant: list[ast.AST]) -> None:
        """Evaluate every constant part (no names, no facts) once, at load time, so that a constant
        too large to compute (`(9**64)**64`) is a load error, not a failing audit. `constant`: the
        largest subtrees without a name or a fact()/has() call, left to right (from _check's walk)."""
        for node in constant:
            try:
                _Eval({}, None, None, self.text).run(node)
            except ExprTooLarge:
                raise
            except Exception:   # noqa: BLE001 - other failures (1/0 in an untaken branch) wait for evaluation
                pass

    def _check(self, node: ast.AST, constant: list[ast.AST]) -> bool:
        """Refuse what the language does not allow; gather names and fact keys. Returns whether the
        subtree holds a name (a call's function name included) or fact()/has(); a subtree that
        holds neither is put in `constant` in place of its own constant parts, unless it is a bare
        literal. One walk, dispatched on the node's type (ast.parse makes no subclasses)."""
        t = type(node)
        if t is ast.Constant:
            v = node.value
            if not isinstance(v, (int, float, str, bool)) or v is None:
                raise ExprError(f"constant {v!r} not allowed in {self.text!r}")
            return False
        if t is ast.Name:
            name = node.id
            if name in FUNCTIONS or name in CONTEXT_FUNCTIONS:
                raise ExprError(f"{name} is a function; call it in {self.text!r}")
            if name not in ("True", "False"):
                self.names.add(name)
            return True
        mark = len(constant)
        d = False
        if t is ast.BinOp:
            if type(node.op) not in _BINOPS:
                raise ExprError(f"operator {type(node.op).__name__} not allowed in {self.text!r}")
            d = self._check(node.left, constant)
            d = self._check(node.right, constant) or d
        elif t is ast.Compare:
            for op in node.ops:
                if type(op) not in _CMPOPS:
                    raise ExprError(f"comparison {type(op).__name__} not allowed in {self.text!r}")
            d = self._check(node.left, constant)
            for c in node.comparators:
                d = self._check(c, constant) or d
        elif t is ast.Call and type(node.func) is ast.Name and not node.keywords:
            fname, args = node.func.id, node.args
            if fname not in FUNCTIONS and fname not in CONTEXT_FUNCTIONS:
                raise ExprError(f"unknown function {fname}() in {self.text!r}")
            if fname in CONTEXT_FUNCTIONS:
                if len(args) != 1 or type(args[0]) is not ast.Constant or not isinstance(args[0].value, str):
                    raise ExprError(f"{fname}() takes one quoted fact key in {self.text!r}")
                self._keys.add(args[0].value)
            for a in args:
                self._check(a, constant)
            d = True        # the function's name is a Name node of its own
        elif t is ast.Tuple or t is ast.List:
            for e in node.elts:
                d = self._check(e, constant) or d
        elif t is ast.UnaryOp:
            if type(node.op) not in (ast.USub, ast.UAdd, ast.Not):
                raise ExprError(f"operator {type(node.op).__name__} not allowed in {self.text!r}")
            d = self._check(node.operand, constant)
        elif t is ast.BoolOp:
            for v in node.values:
                d = self._check(v, constant) or d
        elif t is ast.IfExp:
            d = self._check(node.test, constant)
            d = self._check(node.body, constant) or d
            d = self._check(node.orelse, constant) or d
        elif t is ast.Subscript:
            d = self._check(node.value, constant)
            d = self._check(node.slice, constant) or d
        else:
            raise ExprError(f"{t.__name__} not allowed in {self.text!r}")
        if not d:           # constant: it stands for its constant parts
            del constant[mark:]
            constant.append(node)
        return d

    def fact_keys(self) -> set[str]:
        """Fact keys this expression reads with fact()/has()."""
        return set(self._keys)

    def evaluate(self, names: Mapping[str, Any], fact: Callable[[str], Any] | None = None,
                 has: Callable[[str], bool] | None = None) -> Any:
        try:
            return _Eval(names, fact, has, self.text).run(self._tree)
        except ExprError:
            raise
        except RecursionError:
            raise ExprError(f"{self.text!r}: nested too deeply") from None
        except (TypeError, ValueError, ZeroDivisionError, IndexError, OverflowError, ArithmeticError) as exc:
            raise ExprError(f"{self.text!r}: {exc}") from None

    def __repr__(self) -> str:
        return f"Expr({self.text!r})"


def _bits(v: Any) -> int:
    """Bits of an int operand (bools are ints); floats count as their 1024-bit range at most."""
    if isinstance(v, int):
        return v.bit_length()
    return 0


class _Eval:
    __slots__ = ("names", "fact", "has", "text")

    def __init__(self, names, fact, has, text) -> None:
        self.names = names
        self.fact = fact
        self.has = has
        self.text = text

    def _too_large(self) -> ExprTooLarge:
        return ExprTooLarge(f"result would exceed {MAX_BITS} bits (about {MAX_BITS * 3 // 10} digits) "
                            f"in {self.text!r}")

    def _bound(self, op: ast.operator, a: Any, b: Any) -> None:
        """Refuse, before computing it, an integer result larger than MAX_BITS."""
        if isinstance(a, int) and isinstance(b, int):
            if isinstance(op, ast.Pow):
                if b > 0 and abs(a) > 1 and (_bits(a) - 1) * b > MAX_BITS:
                    raise self._too_large()
            elif isinstance(op, ast.Mult):
                if _bits(a) + _bits(b) > MAX_BITS + 1:
                    raise self._too_large()
        for v in (a, b):
            if isinstance(v, int) and _bits(v) > MAX_BITS:
                raise self._too_large()

    def _checked(self, v: Any) -> Any:
        if isinstance(v, int) and _bits(v) > MAX_BITS:
            raise self._too_large()
        return v

    def run(self, node: ast.AST) -> Any:
        t = type(node)      # dispatched on the exact type: ast.parse makes no subclasses
        if t is ast.Constant:
            return node.value
        if t is ast.Name:
            name = node.id
            if name == "True":
                return True
            if name == "False":
                return False
            try:
                return self.names[name]
            except KeyError:
                raise ExprError(f"unknown name {name!r} in {self.text!r}") from None
        if t is ast.BinOp:
            op = node.op
            a, b = self.run(node.left), self.run(node.right)
            if type(op) is ast.Pow and isinstance(b, (int, float)) and abs(b) > _MAX_POW:
                raise ExprTooLarge(f"exponent {b} too large (at most {_MAX_POW}) in {self.text!r}")
            if type(op) is ast.Mult and (isinstance(a, (str, tuple)) or isinstance(b, (str, tuple))):
                raise ExprError(f"cannot multiply sequences in {self.text!r}")
            if type(op) is ast.Mod and isinstance(a, str):
                raise ExprError(f"no string formatting in {self.text!r}")
            self._bound(op, a, b)
            return self._checked(_BINOPS[type(op)](a, b))
        if t is ast.Call:
            fname = node.func.id
            if fname in CONTEXT_FUNCTIONS:
                key = node.args[0].value
                fn = self.fact if fname == "fact" else self.has
                if fn is None:
                    raise ExprError(f"{fname}() not available here: {self.text!r}")
                return fn(key)
            return self._checked(FUNCTIONS[fname](*(self.run(a) for a in node.args)))
        if t is ast.Compare:
            left = self.run(node.left)
            for op, c in zip(node.ops, node.comparators):
                right = self.run(c)
                if not _CMPOPS[type(op)](left, right):
                    return False
                left = right
            return True
        if t is ast.Tuple or t is ast.List:
            return tuple(self.run(e) for e in node.elts)
        if t is ast.UnaryOp:
            o = self.run(node.operand)
            op = type(node.op)
            if op is ast.Not:
                return not o
            if op is ast.USub:
                return -o
            if op is ast.UAdd:
                return +o
        if t is ast.BoolOp:
            if type(node.op) is ast.And:
                result = True
                for v in node.values:
                    result = self.run(v)
                    if not result:
                        return result
                return result
            result = False
            for v in node.values:
                result = self.run(v)
                if result:
                    return result
            return result
        if t is ast.IfExp:
            return self.run(node.body) if self.run(node.test) else self.run(node.orelse)
        if t is ast.Subscript:
            seq, idx = self.run(node.value), self.run(node.slice)
            if not isinstance(idx, int) or not isinstance(seq, (tuple, str)):
                raise ExprError(f"only integer indexing of tuples in {self.text!r}")
            return seq[idx]
        raise ExprError(f"cannot evaluate {type(node).__name__} in {self.text!r}")  # pragma: no cover
