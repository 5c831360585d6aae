"""Record's shared __eq__/__hash__/__repr__ behave as the methods @dataclass(frozen=True) generates,
for every class that uses it (compared with a reference dataclass built from the same fields)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

import tuneup
from tuneup.record import FRESH, Frozen, Mutable, Record


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
    return sorted({c for c in out if dataclasses.is_dataclass(c)}, key=lambda c: (c.__module__, c.__qualname__))


CLASSES = _record_classes()


def test_the_start_up_classes_use_record():
    names = {f"{c.__module__}.{c.__qualname__}" for c in CLASSES}
    assert {"tuneup.model.Rule", "tuneup.model.Finding", "tuneup.model.Fact", "tuneup.facts.sockets.Census",
            "tuneup.facts.configfiles.BootValue", "tuneup.facts.counters.Counters", "tuneup.run.Plan"} <= names


def _reference(cls: type, frozen: bool = True) -> type:
    specs = []
    for f in dataclasses.fields(cls):
        kw = dict(compare=f.compare, repr=f.repr, hash=f.hash)
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        specs.append((f.name, f.type, dataclasses.field(**kw)))
    return dataclasses.make_dataclass(cls.__qualname__, specs, frozen=frozen)


FROZEN_RECORDS = [c for c in CLASSES if not issubclass(c, Mutable)]
MUTABLE = [c for c in CLASSES if issubclass(c, Mutable)]


@pytest.mark.parametrize("cls", FROZEN_RECORDS, ids=lambda c: c.__qualname__)
def test_record_methods_are_the_generated_ones(cls):
    assert dataclasses.is_dataclass(cls) and (cls.__dataclass_params__.frozen or issubclass(cls, Frozen))
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


def test_the_start_up_classes_that_change_use_mutable():
    assert {"Snapshot", "HostRow", "Rulebook"} <= {c.__qualname__ for c in MUTABLE}


@pytest.mark.parametrize("cls", MUTABLE, ids=lambda c: c.__qualname__)
def test_mutable_methods_are_the_generated_ones(cls):
    """What a plain @dataclass generates: __eq__ over the fields for the very same class, the
    repr, unhashable; attributes can be set."""
    assert dataclasses.is_dataclass(cls) and not cls.__dataclass_params__.frozen
    assert "__eq__" not in cls.__dict__ and "__repr__" not in cls.__dict__
    ref = _reference(cls, frozen=False)
    fields = dataclasses.fields(cls)
    values = {f.name: (f"v-{f.name}", i, (i, "x"), None)[i % 4] for i, f in enumerate(fields)}
    a, b, r = cls(**values), cls(**values), ref(**values)
    assert repr(a) == repr(r)
    assert a == b and not (a != b)
    assert a.__eq__(r) is NotImplemented and a != r
    for obj in (a, r):
        with pytest.raises(TypeError):
            hash(obj)
    setattr(b, fields[0].name, "changed")
    setattr(r, fields[0].name, "changed")
    assert a != b and repr(b) == repr(r)


def _shape(f, factory_default=None):
    """(name, kind, default) of f's parameters; a default_factory field's sentinel as FRESH."""
    import inspect

    return [(p.name, p.kind, FRESH if p.default is factory_default and factory_default is not None else p.default)
            for p in inspect.signature(f).parameters.values()]


@pytest.mark.parametrize("cls", MUTABLE, ids=lambda c: c.__qualname__)
def test_written_out_init_is_the_dataclass_one(cls):
    """Same parameters (names, order, kinds, defaults), the same instance for the same arguments,
    a fresh object from each default_factory for every instance."""
    assert "__init__" in cls.__dict__ and not cls.__dataclass_params__.init
    ref = _reference(cls, frozen=False)
    assert _shape(cls.__init__) == _shape(ref.__init__, dataclasses._HAS_DEFAULT_FACTORY)
    fields = dataclasses.fields(cls)
    values = [(f"v-{f.name}", i, None)[i % 3] for i, f in enumerate(fields)]
    assert vars(cls(*values)) == vars(ref(*values)) == vars(cls(**{f.name: v for f, v in zip(fields, values)}))
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    x, y = cls(*values[:len(required)]), cls(*values[:len(required)])
    assert vars(x) == vars(ref(*values[:len(required)]))
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(x, f.name) is not getattr(y, f.name)
    with pytest.raises(TypeError):
        cls(*values, "one too many")
    assert dataclasses.replace(x, **{fields[-1].name: "r"}) == cls(*values[:len(required)], **{fields[-1].name: "r"})


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


FROZEN = [c for c in CLASSES if issubclass(c, Frozen)]


def test_the_model_writes_its_inits_out():
    assert {"Fact", "Rule", "Finding", "Report"} <= {c.__qualname__ for c in FROZEN}


@pytest.mark.parametrize("cls", FROZEN, ids=lambda c: c.__qualname__)
def test_written_out_init_is_the_frozen_dataclass_one(cls):
    """Same parameters (names, order, kinds, defaults), the same instance for the same arguments
    given by position or by name, and immutable with the same errors as a frozen dataclass."""
    assert "__init__" in cls.__dict__ and not cls.__dataclass_params__.init
    ref = _reference(cls)
    assert _shape(cls.__init__) == _shape(ref.__init__, dataclasses._HAS_DEFAULT_FACTORY)
    fields = dataclasses.fields(cls)
    values = [(f"v-{f.name}", i, None)[i % 3] for i, f in enumerate(fields)]
    by_pos, ref_pos = cls(*values), ref(*values)
    by_name = cls(**{f.name: v for f, v in zip(fields, values)})
    assert vars(by_pos) == vars(ref_pos) == vars(by_name)
    required = [f for f in fields if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    minimal, ref_min = cls(*values[:len(required)]), ref(*values[:len(required)])
    assert vars(minimal) == vars(ref_min)          # the defaults
    for action in (lambda o: setattr(o, fields[0].name, 1), lambda o: setattr(o, "other", 1),
                   lambda o: delattr(o, fields[0].name)):
        with pytest.raises(dataclasses.FrozenInstanceError) as ours:
            action(by_pos)
        with pytest.raises(dataclasses.FrozenInstanceError) as theirs:
            action(ref_pos)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(TypeError):
        cls(*values, "one too many")
    assert dataclasses.replace(by_pos, **{fields[-1].name: "r"}) == cls(*values[:-1], "r")


def test_every_dataclass_an_audit_imports_has_a_docstring():
    """Without one, @dataclass builds __doc__ from inspect.signature(cls) at every start (from 0.15M
    to 1M instructions a class, with or without an __init__ of its own)."""
    import dataclasses
    import inspect
    import subprocess
    import sys

    mods = subprocess.run([sys.executable, "-c", "import sys, io, contextlib\nfrom tuneup.entry import main\n"
                           "sys.argv = ['tuneup', 'audit', '-f', 'json', '--fail-on', 'never']\n"
                           "with contextlib.redirect_stdout(io.StringIO()):\n"
                           "    try:\n        main()\n    except SystemExit:\n        pass\n"
                           "print(' '.join(m for m in sys.modules if m.startswith('tuneup')))"],
                          capture_output=True, text=True, check=True).stdout.split()
    assert "tuneup.facts.sockets" in mods
    import importlib
    undocumented = []
    for m in mods:
        for name, obj in vars(importlib.import_module(m)).items():
            if inspect.isclass(obj) and obj.__module__ == m and dataclasses.is_dataclass(obj):
                if (obj.__doc__ or "").startswith(obj.__name__ + "("):
                    undocumented.append(f"{m}.{name}")
    assert undocumented == []
