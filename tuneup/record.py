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

Everything else (``__init__``, frozenness, ``fields``, ``replace``) stays with dataclasses.
Standard library only, and cheap to import: the socket fast path uses it too.
"""

from __future__ import annotations

import dataclasses
from _thread import get_ident

_NAMES: dict[type, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
_IN_REPR: set[tuple[int, int]] = set()


def _names(cls: type) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(compare, hash, repr) field names of a dataclass, computed once per class."""
    names = _NAMES.get(cls)
    if names is None:
        fields = dataclasses.fields(cls)
        names = _NAMES[cls] = (
            tuple(f.name for f in fields if f.compare),
            tuple(f.name for f in fields if (f.compare if f.hash is None else f.hash)),
            tuple(f.name for f in fields if f.repr),
        )
    return names


class Record:
    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            names = _names(self.__class__)[0]
            return tuple([getattr(self, n) for n in names]) == tuple([getattr(other, n) for n in names])
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple([getattr(self, n) for n in _names(self.__class__)[1]]))

    def __repr__(self) -> str:
        key = (id(self), get_ident())
        if key in _IN_REPR:
            return "..."
        _IN_REPR.add(key)
        try:
            return self.__class__.__qualname__ + "(" + ", ".join(
                [f"{n}={getattr(self, n)!r}" for n in _names(self.__class__)[2]]) + ")"
        finally:
            _IN_REPR.discard(key)
