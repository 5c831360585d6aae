from __future__ import annotations

import pytest

from tuneup.errors import ExprError
from tuneup.rulebook.ops import OPERATORS, describe


@pytest.mark.parametrize("op,actual,expected,want", [
    (">=", 4096, 4096, True),
    (">=", 128, 4096, False),
    ("<=", 60, 60, True),
    ("==", 1, 1, True),
    ("!=", 1, 1, False),
    (">=", (4096, 131072, 6291456), (4096, 87380, 4194304), True),    # element-wise
    (">=", (4096, 16384, 4194304), (4096, 87380, 4194304), False),
    ("each>=", (1024, 4096, 16384), 1024, True),
    ("each>=", (512, 4096, 16384), 1024, False),
    ("span>=", (32768, 60999), 28232, True),
    ("span>=", (32768, 60999), 28233, False),
    ("parity-differs", (32768, 60999), True, True),
    ("parity-differs", (32768, 61000), True, False),
    ("in", 2, (1, 2), True),
    ("not in", 0, (1, 2), True),
    ("between", 5, (1, 10), True),
    ("between", 11, (1, 10), False),
    ("==", "cubic", "cubic", True),
])
def test_operators(op, actual, expected, want):
    assert OPERATORS[op](actual, expected) is want


@pytest.mark.parametrize("op,actual,expected", [
    (">=", (1, 2, 3), 5),          # tuple against a scalar needs each>=
    (">=", (1, 2), (1, 2, 3)),     # length mismatch
    ("span>=", 5, 1),              # not a range
    ("each>=", 5, 1),
    (">=", "abc", "abd"),          # strings are not ordered
])
def test_type_mismatches_raise(op, actual, expected):
    with pytest.raises(ExprError):
        OPERATORS[op](actual, expected)


def test_describe_reads_like_a_requirement():
    assert describe(">=", 4096, str) == ">= 4096"
    assert describe("span>=", 28232, str) == "span >= 28232"
    assert describe("parity-differs", True, str) == "ends of different parity"
    assert describe("in", (1, 2), str) == "in {1, 2}"
