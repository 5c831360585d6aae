"""Patterns are compiled when first used, not at import (tuneup.rx), and the three checks every
audit runs without a regex (kernel_tuple, rule_id_ok, _plain_int) say what their pattern says."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tuneup.facts.host import kernel_tuple
from tuneup.rulebook.loader import PLAIN_INT_PATTERN, RULE_ID_PATTERN, _plain_int, rule_id_ok
from tuneup.rx import LazyPattern, lazy

_KERNEL = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
# the characters that make a difference, and some that must not (other digits, other dashes)
_ID_CHARS = st.sampled_from(list("AZBQ0919az-_.* \n\t") + ["\u0661", "\u2011", "\uff21", "\u00c9", "\u0130"])
_VERSION_CHARS = st.sampled_from(list("0123456789.-rc abx\n") + ["\u0663", "\u00b2", "\uff11"])


def _kernel_by_regex(release: str) -> tuple[int, ...]:
    m = _KERNEL.match(release)
    return (0, 0, 0) if not m else tuple(int(x or 0) for x in m.groups())


@settings(max_examples=1000, deadline=None)
@given(st.text(_VERSION_CHARS, max_size=14))
@example("6.1.0-18-amd64")
@example("6.8-rc1")
@example("5.15.0.91")
@example("6.")
@example("6.1.")
@example("\u0663.\u0661.\u0662")       # Arabic-Indic digits: \d matches them, and int() reads them
@example("1\u00b2.3")                  # a superscript is a digit but no decimal: \d does not match
def test_kernel_tuple_is_the_pattern(release):
    assert kernel_tuple(release) == _kernel_by_regex(release)


@settings(max_examples=2000, deadline=None)
@given(st.text(_ID_CHARS, max_size=12))
@example("NET-SOMAXCONN")
@example("FD-NR-OPEN")
@example("A1-2")
@example("1A-B")
@example("A-")
@example("A--B")
@example("-A")
@example("AB")
@example("NET-X\n")
@example("N\u0130-X")
@example("\uff21-B")
def test_rule_id_ok_is_the_pattern(rid):
    assert rule_id_ok(rid) == bool(re.fullmatch(RULE_ID_PATTERN, rid))


@settings(max_examples=1000, deadline=None)
@given(st.text(st.sampled_from(list("0123456789-_. e\n") + ["\u0661", "\u00b2"]), max_size=20))
@example("0")
@example("00")
@example("123456789012345678")
@example("1234567890123456789")
def test_plain_int_is_the_pattern(text):
    assert _plain_int(text) == bool(re.fullmatch(PLAIN_INT_PATTERN, text))


def test_a_lazy_pattern_compiles_at_first_use_and_is_then_the_pattern():
    p = lazy(r"(\d+)-(\d+)", re.ASCII)
    assert isinstance(p, LazyPattern) and "match" not in vars(p)
    assert p.match("12-34").groups() == ("12", "34")
    assert vars(p)["match"] == re.compile(r"(\d+)-(\d+)", re.ASCII).match     # the compiled one's own
    assert p.flags & re.ASCII and p.groups == 2
    for name in ("fullmatch", "search", "findall", "finditer", "split", "sub", "subn"):
        assert callable(getattr(p, name))
    assert p.sub("x", "1-2 a 3-4") == "x a x" and p.split("a1-2b") == ["a", "1", "2", "b"]
    with pytest.raises(AttributeError):
        p.nothing_such


def test_importing_what_an_audit_imports_compiles_no_pattern():
    """Every tuneup module a plain `tuneup audit` imports, imported with re's compiler watched:
    none of them compiles a pattern at import (each costs 0.5M-1.5M instructions of every run)."""
    code = r"""
import io, contextlib, re, sys, traceback
from tuneup.entry import main
sys.argv = ['tuneup', 'audit', '-f', 'json', '--fail-on', 'never']
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit:
        pass
mods = [m for m in sys.modules if m.startswith('tuneup')]
for m in mods:
    del sys.modules[m]
seen = []
real = re._compile
def watch(pattern, flags):
    if (type(pattern), pattern, flags) not in re._cache:
        here = [f for f in traceback.extract_stack() if '/tuneup/' in f.filename]
        if here:
            seen.append(f'{here[-1].filename}:{here[-1].lineno}: {pattern!r}')
    return real(pattern, flags)
re.purge()
re._compile = watch
import importlib
for m in mods:
    importlib.import_module(m)
print('\n'.join(seen))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
