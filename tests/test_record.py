"""Record's shared __eq__/__hash__/__repr__ behave as the methods @dataclass(frozen=True) generates,
for every class that uses it (compared with a reference dataclass built from the same fields)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

import tuneup
from tuneup.record import Record


def _record_classes() -> list[type]:
    for info in pkgutil.walk_packages(tuneup.__path__, "tuneup."):
        if info.name.endswith(("__main__", "probe_server")):
            continue
        importlib.import_module(info.name)
    out, todo = [], list(Record.__subclasses__())
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return sorted(set(out), key=lambda c: (c.__module__, c.__qualname__))


CLASSES = _record_classes()


def test_the_start_up_classes_use_record():
    names = {f"{c.__module__}.{c.__qualname__}" for c in CLASSES}
    assert {"tuneup.model.Rule", "tuneup.model.Finding", "tuneup.model.Fact", "tuneup.facts.sockets.Census",
            "tuneup.facts.configfiles.BootValue", "tuneup.facts.counters.Counters", "tuneup.run.Plan"} <= names


def _reference(cls: type) -> type:
    specs = []
    for f in dataclasses.fields(cls):
        kw = dict(compare=f.compare, repr=f.repr, hash=f.hash)
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        specs.append((f.name, f.type, dataclasses.field(**kw)))
    return dataclasses.make_dataclass(cls.__qualname__, specs, frozen=True)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__qualname__)
def test_record_methods_are_the_generated_ones(cls):
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    assert "__eq__" not in cls.__dict__ and "__repr__" not in cls.__dict__ and "__hash__" not in cls.__dict__
    ref = _reference(cls)
    fields = dataclasses.fields(cls)
    values = {f.name: (f"v-{f.name}", i, (i, "x"), None)[i % 4] for i, f in enumerate(fields)}
    a, b, r = cls(**values), cls(**values), ref(**values)
    assert repr(a) == repr(r)
    assert a == b and not (a != b) and hash(a) == hash(b) == hash(r)
    assert a.__eq__(r) is NotImplemented and a != r          # another class, same fields: not equal
    assert a.__eq__(object()) is NotImplemented
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(a, fields[0].name, "changed")
    for f in fields:
        other = dataclasses.replace(a, **{f.name: "changed"})
        ref_other = dataclasses.replace(r, **{f.name: "changed"})
        assert (a == other) == (r == ref_other) == (not f.compare), f.name
        assert (hash(a) == hash(other)) == (hash(r) == hash(ref_other)), f.name
        assert repr(other) == repr(ref_other)


def test_recursive_repr_is_cut():
    from tuneup.model import Fact

    holder: list = []
    f = Fact("k", holder, "src")
    holder.append(f)
    assert repr(f) == "Fact(key='k', value=[...], source='src', error=None)"


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_any_number_of_fields(n):
    """Zero and one field too (a one-field key is still a 1-tuple, as the generated methods hash it)."""
    specs = [(f"f{i}", int) for i in range(n)]
    ours = dataclasses.make_dataclass("X", specs, bases=(Record,), frozen=True, eq=False, repr=False)
    ref = dataclasses.make_dataclass("X", specs, frozen=True)
    vals = {f"f{i}": i + 1 for i in range(n)}
    a, r = ours(**vals), ref(**vals)
    assert repr(a) == repr(r) and hash(a) == hash(r) and a == ours(**vals)
    if n:
        assert a != ours(**{**vals, "f0": 99})
