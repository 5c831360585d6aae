from __future__ import annotations

import pytest

from tuneup.errors import ExprError
from tuneup.rulebook.expr import Expr


@pytest.mark.parametrize("text,names,want", [
    ("max(4096, connections // 20)", {"connections": 500000}, 25000),
    ("max(4096, connections // 20)", {"connections": 1000}, 4096),
    ("1.2 * connections * fds_per_connection", {"connections": 100000, "fds_per_connection": 2}, 240000.0),
    ("value[2] * page_size", {"value": (1, 2, 3), "page_size": 4096}, 12288),
    ("kernel >= (4, 12)", {"kernel": (6, 1, 0)}, True),
    ("kernel >= (4, 12)", {"kernel": (4, 9, 0)}, False),
    ("1 if x > 2 else 0", {"x": 3}, 1),
    ("not (a and b) or c", {"a": True, "b": False, "c": False}, True),
    ("span(value)", {"value": (32768, 60999)}, 28232),
    ("ceil(10 / 3)", {}, 4),
    ("-x + 1", {"x": 5}, -4),
    ("3 in (1, 2, 3)", {}, True),
    ("1 < x <= 3", {"x": 3}, True),
])
def test_evaluates(text, names, want):
    assert Expr(text).evaluate(names) == want


def test_fact_and_has_use_the_callers_resolvers():
    e = Expr("fact('net.core.somaxconn') if has('net.core.somaxconn') else 0")
    assert e.evaluate({}, fact=lambda k: 4096, has=lambda k: True) == 4096
    assert e.evaluate({}, fact=lambda k: 4096, has=lambda k: False) == 0
    assert e.fact_keys() == {"net.core.somaxconn"}


@pytest.mark.parametrize("text", [
    "__import__('os').system('true')",   # unknown function
    "open('/etc/passwd')",
    "x.__class__",                         # attribute access
    "lambda: 1",
    "[i for i in range(3)]",
    "{'a': 1}",
    "fact(key)",                           # fact() takes a quoted key only
    "a = 1",                               # statements
    "max",                                 # function as a value
    "f'{x}'",
])
def test_rejects_unsafe_syntax_at_parse_time(text):
    with pytest.raises(ExprError):
        Expr(text)


@pytest.mark.parametrize("text,names", [
    ("2 ** 1000", {}),
    ("'a' * 100000000", {}),
    ("(1, 2) * 100000000", {}),
    ("1 / 0", {}),
    ("value[9]", {"value": (1, 2)}),
    ("missing + 1", {}),
])
def test_evaluation_errors_are_expr_errors(text, names):
    with pytest.raises(ExprError):
        Expr(text).evaluate(names)


def test_names_are_collected_for_load_time_checks():
    assert Expr("max(a, b // c) + fact('x')").names == {"a", "b", "c"}


def _folds_the_old_way(text: str) -> list[str]:
    """The constant parts the folding evaluates, found as before the one-walk marking: a node of a
    foldable kind with no name and no fact()/has() anywhere below it (ast.walk per node)."""
    import ast

    from tuneup.rulebook.expr import CONTEXT_FUNCTIONS

    kinds = (ast.BinOp, ast.UnaryOp, ast.Call, ast.Tuple, ast.List, ast.Compare, ast.BoolOp, ast.IfExp,
             ast.Subscript)
    out: list[str] = []

    def visit(node):
        if not isinstance(node, kinds):
            return
        if not any(isinstance(n, ast.Name) or isinstance(n, ast.Call) and n.func.id in CONTEXT_FUNCTIONS
                   for n in ast.walk(node)):
            out.append(ast.dump(node))
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(text, mode="eval").body)
    return out


@pytest.mark.parametrize("text", [
    "max(4096, connections // 20)", "value + (2 ** 10) * 3", "(1, 2 + 3, x)", "fact('a.b') + (4 - 1)",
    "1 if has('k') else (2 * 3)", "max(1, 2)", "-(3 * 4) + value[1 + 1]", "a < 2 * 3 < b", "(1, (2, 3 + y))",
    "not (1 and 2) or z", "min(fact('x') * 2, 10 ** 3 // 7)",
])
def test_constant_folding_visits_the_same_parts(text, monkeypatch):
    """The one-walk marking folds exactly the parts the per-node ast.walk did."""
    import ast

    from tuneup.rulebook import expr as E

    seen: list[str] = []
    real = E._Eval.run
    depth = [0]

    def spy(self, node):
        if depth[0] == 0:          # the folding's own evaluations, not their recursion
            seen.append(ast.dump(node))
        depth[0] += 1
        try:
            return real(self, node)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(E._Eval, "run", spy)
    Expr(text)
    assert seen == _folds_the_old_way(text)


def test_a_huge_constant_inside_an_expression_is_a_load_error():
    with pytest.raises(ExprError):
        Expr("value + ((9 ** 64) ** 64) ** 64")
