"""Rule files and profiles: the built-in set loads, and each kind of bad input names file and line."""

from __future__ import annotations

import textwrap

import pytest

from tuneup.errors import ProfileError, RuleFileError, UsageError
from tuneup.rulebook import loader

GOOD = '''
[[rule]]
id = "USER-SOMAXCONN"
title = "t"
severity = "warning"
fact = "net.core.somaxconn"
op = ">="
expected = "max(1024, connections // 100)"
scope = "netns"
rationale = "r"
refs = ["https://docs.kernel.org/networking/ip-sysctl.html"]
profiles = ["web"]
'''


def write(tmp_path, text, name="user.toml"):
    (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def test_builtin_rules_and_profiles_load():
    book = loader.load()
    assert len(book.rules) >= 15
    assert {"baseline", "web", "proxy", "websocket", "erlang"} <= set(book.profile_defs)
    assert book.default_profile in book.profile_defs
    for r in book.rules.values():
        assert r.refs and r.rationale and r.origin


def test_user_rules_dir_adds_rules_to_profiles(tmp_path):
    book = loader.load([write(tmp_path, GOOD)])
    assert "USER-SOMAXCONN" in [r.id for r in book.rules_for("proxy")]      # proxy extends web
    assert "USER-SOMAXCONN" not in [r.id for r in book.rules_for("baseline")]


def test_profile_inheritance_and_overrides():
    book = loader.load()
    proxy = book.profile("proxy")
    assert proxy.params["fds_per_connection"] == 2
    assert proxy.params["connections"] == book.profile("web").params["connections"]
    assert book.profile("proxy", {"connections": 500000}).params["connections"] == 500000
    assert set(r.id for r in book.rules_for("web")) <= set(r.id for r in book.rules_for("proxy"))
    with pytest.raises(UsageError, match="unknown parameter 'conections'"):
        book.profile("web", {"conections": 1})
    with pytest.raises(ProfileError, match="unknown profile"):
        book.profile("nope")


BAD_RULES = [
    ('[[rule]]\nid = "A-B"\ntitle = \n', r":3:\d+: invalid TOML"),
    (GOOD.replace('severity = "warning"', 'severity = "fatal"'), r":3: rule USER-SOMAXCONN: severity must be"),
    (GOOD.replace('op = ">="', 'op = "=>"'), r":3: rule USER-SOMAXCONN: unknown operator '=>'"),
    (GOOD.replace("connections // 100", "conections // 100"), r"expected uses unknown name\(s\) conections"),
    (GOOD.replace("max(1024", "__import__(1024"), r"unknown function __import__"),
    (GOOD.replace('scope = "netns"', 'scope = "global"'), r"scope must be netns, host, process or listener"),
    (GOOD.replace('refs = ["https://docs.kernel.org/networking/ip-sysctl.html"]', "refs = []"), r"refs must be a non-empty"),
    (GOOD.replace('rationale = "r"\n', ""), r"missing field 'rationale'"),
    (GOOD.replace('profiles = ["web"]', 'profiles = ["webb"]'), r"unknown profile 'webb'"),
    (GOOD.replace('id = "USER-SOMAXCONN"', 'id = "lower_case"'), r"rule id 'lower_case' must look like"),
    (GOOD + 'colour = "red"\n', r"unknown field\(s\) colour"),
    (GOOD + GOOD, r":15: rule USER-SOMAXCONN already defined at .*:3"),
    ('[rules]\nx = 1\n', r"unknown top-level table"),
    (GOOD + 'fix = { kind = "registry" }\n', r"fix.kind must be one of"),
]


@pytest.mark.parametrize("text,pattern", BAD_RULES)
def test_bad_rule_files_name_file_and_line(tmp_path, text, pattern):
    d = write(tmp_path, text)
    with pytest.raises(RuleFileError, match=pattern) as info:
        loader.load([d])
    assert str(info.value).startswith(str(d / "user.toml"))


def test_duplicate_of_a_builtin_rule_is_rejected(tmp_path):
    text = GOOD.replace("USER-SOMAXCONN", "NET-SOMAXCONN")
    with pytest.raises(RuleFileError, match="NET-SOMAXCONN already defined"):
        loader.load([write(tmp_path, text)])


def test_bad_profiles_file(tmp_path):
    write(tmp_path, '[profile.loop]\nextends = "loop"\n', "profiles.toml")
    with pytest.raises(ProfileError, match="extends itself"):
        loader.load([tmp_path])
    write(tmp_path, '[profile.x]\nextends = "nothere"\n', "profiles.toml")
    with pytest.raises(ProfileError, match="extends unknown profile 'nothere'"):
        loader.load([tmp_path])
    write(tmp_path, '[profile.x]\nparams = { bogus = 1 }\n', "profiles.toml")
    with pytest.raises(ProfileError, match=r"profiles.toml:1: profile 'x' sets undeclared parameter 'bogus'"):
        loader.load([tmp_path])


def test_missing_rules_dir():
    with pytest.raises(UsageError, match="does not exist"):
        loader.load([loader.Path("/nonexistent/rules")])


def test_fact_keys_cover_rule_facts_and_expression_facts():
    keys = loader.load().fact_keys()
    assert {"net.core.somaxconn", "net.ipv4.tcp_max_syn_backlog", "fs.file-max"} <= keys


def test_a_derived_parameter_takes_its_default_from_the_others():
    """accept_rate_per_s and close_rate_per_s have no default of their own: `profiles -f json`
    shows what they derive to from the other defaults (100,000 / 60 s and / 75 s)."""
    book = loader.load()
    assert book.params["accept_rate_per_s"].default == 1667
    assert book.params["close_rate_per_s"].default == 1334


def test_a_user_parameter_with_default_and_derive_or_neither_is_refused(tmp_path):
    write(tmp_path, '[param.my_rate]\ndefault = 5\nderive = "connections // 10"\n', "profiles.toml")
    with pytest.raises(ProfileError, match=r"profiles.toml:1: param 'my_rate': give a default or a derive"):
        loader.load([tmp_path])
    write(tmp_path, '[param.my_rate]\ndescription = "x"\n', "profiles.toml")
    with pytest.raises(ProfileError, match=r"profiles.toml:1: param 'my_rate' needs a default"):
        loader.load([tmp_path])
    write(tmp_path, '[param.my_rate]\nderive = "connections // 10"\n', "profiles.toml")
    assert loader.load([tmp_path]).params["my_rate"].default == 10000


def test_header_line_is_the_per_name_regex():
    """The profiles file's [param.NAME]/[profile.NAME] lines are found as the per-name regex found them."""
    import random
    import re

    rnd = random.Random(15)
    alphabet = ["a", "b", "_", "-", ".", "]", "[", " ", '"', "*", "\\", "é", "1"]
    names = ["connections", "web", "a.b", "x]", "w*", "", "é1"] + [
        "".join(rnd.choice(alphabet) for _ in range(rnd.randint(1, 5))) for _ in range(300)]
    for table in ("param", "profile"):
        for name in names:
            lines = [f"[{table}.{name}]", f"[{table}.{name}.params]", f" [{table}.{name}]", f"[{table}.{name}x]",
                     f"[{table}.{name}", f"[{table}.{name}. ]", f"[{table}.{name}]]"]
            rnd.shuffle(lines)
            lines = [f"# {table}", *lines]
            rx = re.compile(r"^\[" + table + r"\." + re.escape(name) + r"[\].]")
            want = next((n for n, line in enumerate(lines, 1) if rx.search(line)), None)
            assert loader._header_line(lines, table, name) == want, (table, name, lines)
