"""Equality, hash and repr for frozen dataclasses, written once instead of generated per class.

``@dataclass(frozen=True)`` compiles an ``__eq__``, a ``__hash__`` and a ``__repr__`` for every class
when its module is imported (exec of generated source: about 1 ms for a 20-field class, and a start-up
cost every command pays for every class it imports). A class declared
``@dataclass(frozen=True, eq=False, repr=False)`` that derives from Record gets the same three
methods, compiled once with this module:

- ``a == b``: the ``compare`` fields of two instances of the very same class, as a tuple;
  NotImplemented for any other class (as the generated ``__eq__``)
- ``hash(a)``: the hash of the tuple of the fields that take part in hashing (``hash`` if given,
  else ``compare``), as the generated ``__hash__`` of a frozen, eq dataclass
- ``repr(a)``: ``QualName(field=value!r, ...)`` over the ``repr`` fields; "..." where an instance
  contains itself (as dataclasses' recursive_repr)

Frozen goes further for the classes an audit creates at every start: the class writes its
``__init__`` out (compiled once, into the .pyc, like any other code) and Frozen refuses assignment
and deletion, so ``@dataclass(init=False, eq=False, repr=False)`` compiles nothing at import.
Mutable is the same for a class whose instances change, as a plain ``@dataclass``: the same
``__eq__`` and ``__repr__``, and unhashable as ``@dataclass`` (eq) makes it. A field whose dataclass
default is a ``default_factory`` has FRESH as its default in the written-out ``__init__``, which
then calls the factory (the generated ``__init__`` has a sentinel default there too).
``fields``, ``replace`` and the rest stay with dataclasses. Standard library only, and cheap to
import: the socket fast path uses it too.
"""

from __future__ import annotations

import dataclasses
from _thread import get_ident
from operator import attrgetter
from typing import Any, Callable

class _Fresh:
    """The default of a written-out ``__init__``'s parameter whose field has a default_factory."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


FRESH: Any = _Fresh()

_FIELDS: dict[type, tuple[Callable[[Any], tuple], Callable[[Any], tuple], tuple[str, ...]]] = {}
_IN_REPR: set[tuple[int, int]] = set()


def _getter(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """obj -> the tuple of those attributes (operator.attrgetter, in C, for two or more)."""
    if len(names) >= 2:
        return attrgetter(*names)
    if names:
        name = names[0]
        return lambda obj: (getattr(obj, name),)
    return lambda obj: ()


def _fields(cls: type) -> tuple[Callable[[Any], tuple], Callable[[Any], tuple], tuple[str, ...]]:
    """(compare tuple getter, hash tuple getter, repr field names) of a dataclass, made once per class."""
    got = _FIELDS.get(cls)
    if got is None:
        fields = dataclasses.fields(cls)
        got = _FIELDS[cls] = (
            _getter(tuple(f.name for f in fields if f.compare)),
            _getter(tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash))),
            tuple(f.name for f in fields if f.repr),
        )
    return got


class Record:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            key = _fields(self.__class__)[0]
            return key(self) == key(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_fields(self.__class__)[1](self))

    def __repr__(self) -> str:
        key = (id(self), get_ident())
        if key in _IN_REPR:
            return "..."
        _IN_REPR.add(key)
        try:
            return self.__class__.__qualname__ + "(" + ", ".join(
                [f"{n}={getattr(self, n)!r}" for n in _fields(self.__class__)[2]]) + ")"
        finally:
            _IN_REPR.discard(key)


class Frozen(Record):
    """A Record whose class writes its ``__init__`` out, declared
    ``@dataclass(init=False, eq=False, repr=False)``: immutable as a frozen dataclass (assigning or
    deleting any attribute raises FrozenInstanceError with the same message), without the
    ``__init__``, ``__setattr__`` and ``__delattr__`` a frozen dataclass compiles at import. The
    ``__init__`` sets every field, in order, through ``object.__setattr__``, with the fields' names
    and defaults (tests/test_record.py holds each such class to the signature and instances a
    frozen dataclass of the same fields gives)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


class Mutable(Record):
    """A Record whose class writes its ``__init__`` out, declared
    ``@dataclass(init=False, eq=False, repr=False)``, with instances that change as a plain
    ``@dataclass``'s do: the same ``__eq__`` and ``__repr__``, unhashable (``@dataclass`` with eq sets
    ``__hash__`` to None), without the three methods it compiles at import (tests/test_record.py
    holds each such class to the signature and instances a plain dataclass of its fields gives)."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]
