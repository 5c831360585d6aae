"""Rendering fixes from in-memory snapshots: values validated, forbidden values refused, files that
sort last, grammar of what is written (limits.conf(5), systemd-analyze verify), container forms."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tuneup import run
from tuneup.facts import configfiles as cf
from tuneup.fixes import conf_name, plan_fixes
from tuneup.fixes.render import render_files
from tuneup.fixes.values import FixValueError, int_value, rlimit_pair, safe

from .conftest import snapshot, write

RULE = """
[[rule]]
id = "{id}"
title = "test rule"
severity = "critical"
fact = "{fact}"
op = "{op}"
expected = "{expected}"
scope = "{scope}"
rationale = "test"
refs = ["test"]
fix = {fix}
"""


def rules_dir(tmp_path: Path, *rules: dict) -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "extra.toml").write_text("".join(RULE.format(**{"scope": "netns", **r}) for r in rules))
    return d


def fixes(values, *, profile="web", extra=None, host=None, service=None, origin="test", sources=None):
    p = run.plan(profile, {}, [extra] if extra else [])
    snap = snapshot(values, host=host, sources=sources, origin=origin)
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap), service)
    return fp, render_files(fp)


def sysctl_lines(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for line in text.splitlines()
            if line and not line.startswith("#") for k, _, v in [line.partition("=")]}


def test_sysctl_file_has_rule_reason_and_before_and_only_valid_lines():
    fp, files = fixes({"net.core.somaxconn": 128, "net.ipv4.tcp_syncookies": 0, "net.ipv4.tcp_max_syn_backlog": 64})
    text = files["etc/sysctl.d/60-tuneup.conf"]
    lines = sysctl_lines(text)
    assert lines["net.core.somaxconn"] == "65535" and lines["net.ipv4.tcp_syncookies"] == "1"
    assert "# NET-SOMAXCONN: net.core.somaxconn is 128" in text and "# before: 128 (test:net.core.somaxconn)" in text
    assert "apply.sh" in files and "sysctl -e -p \"/etc/sysctl.d/60-tuneup.conf\"" in files["apply.sh"]


def test_dependent_thresholds_converge():
    """syn_backlog must follow the raised somaxconn, not the value it had before the fix."""
    fp, files = fixes({"net.core.somaxconn": 128, "net.ipv4.tcp_syncookies": 0, "net.ipv4.tcp_max_syn_backlog": 64},
                      extra=None)
    vals = {i.key: i.value for i in fp.items}
    if "net.ipv4.tcp_max_syn_backlog" in vals:
        assert vals["net.ipv4.tcp_max_syn_backlog"] >= vals["net.core.somaxconn"]


def test_a_value_another_rule_forbids_is_never_written(tmp_path):
    extra = rules_dir(tmp_path, {"id": "TEST-RECYCLE-ON", "fact": "net.ipv4.tcp_tw_recycle", "op": "==",
                                 "expected": "1", "fix": '{ kind = "sysctl" }'})
    fp, files = fixes({"net.ipv4.tcp_tw_recycle": 0}, extra=extra)
    assert not any(i.key == "net.ipv4.tcp_tw_recycle" for i in fp.items)
    assert all("tcp_tw_recycle" not in t for t in files.values())
    (sk,) = [s for s in fp.skipped if s.rule == "TEST-RECYCLE-ON"]
    assert "NET-TW-RECYCLE" in sk.reason and "not written" in sk.reason


def test_the_first_value_that_every_rule_accepts_is_chosen(tmp_path):
    # a stricter rule on the same key: the plain fix (expected) would fail it, so its own value wins
    extra = rules_dir(tmp_path, {"id": "TEST-BIG-BACKLOG", "fact": "net.core.somaxconn", "op": ">=",
                                 "expected": "60000", "fix": '{ kind = "sysctl", value = "60000" }'})
    fp, _ = fixes({"net.core.somaxconn": 128}, extra=extra)
    (item,) = [i for i in fp.items if i.key == "net.core.somaxconn"]
    assert item.value >= 60000 and {"NET-SOMAXCONN", "TEST-BIG-BACKLOG"} <= set(item.rules)


@pytest.mark.parametrize("expr", ["'1\\nkernel.core_pattern = |/bin/sh'", "'65535'", "1.5", "True", "(1, 'a')"])
def test_values_that_are_not_integers_never_reach_a_file(tmp_path, expr):
    extra = rules_dir(tmp_path, {"id": "TEST-INJECT", "fact": "net.ipv4.tcp_fin_timeout", "op": "<=",
                                 "expected": "5", "fix": "{ kind = 'sysctl', value = '''%s''' }" % expr})
    fp, files = fixes({"net.ipv4.tcp_fin_timeout": 60}, extra=extra)
    assert not any("TEST-INJECT" in i.rules for i in fp.items)
    assert any(s.rule == "TEST-INJECT" for s in fp.skipped)
    assert all("core_pattern" not in t for t in files.values())


def test_validation_helpers():
    assert int_value(4096.0, "x") == 4096 and int_value((1024, 65535), "x") == (1024, 65535)
    for bad in ("1", None, True, 1.5, (), ("a",)):
        with pytest.raises(FixValueError):
            int_value(bad, "x")
    with pytest.raises(FixValueError):
        safe("a\nb", "x")
    with pytest.raises(FixValueError):
        safe("a\x1b[31m", "x")
    assert rlimit_pair(1000, 524288) == (1000, 524288) and rlimit_pair(1000, 10) == (1000, 1000)
    with pytest.raises(FixValueError):
        rlimit_pair((10, 5), None)


@pytest.mark.parametrize("setters,name", [
    ((), "60-tuneup.conf"),
    (("/usr/lib/sysctl.d/50-default.conf",), "60-tuneup.conf"),
    (("/etc/sysctl.d/60-zzz.conf",), "61-tuneup.conf"),
    (("/etc/sysctl.d/99-sysctl.conf",), "99-tuneup.conf"),        # 't' sorts after 's'
    (("/etc/sysctl.d/99-zz.conf", "/usr/lib/sysctl.d/10-a.conf"), "z-tuneup.conf"),
    (("/etc/sysctl.d/60-tuneup.conf",), "60-tuneup.conf"),        # our own earlier file does not count
])
def test_file_name_sorts_after_every_setter(setters, name):
    got = conf_name(setters)
    assert got == name
    assert all(got > s.rsplit("/", 1)[-1] for s in setters if "tuneup" not in s)


def test_generated_sysctl_file_wins_at_boot_over_the_files_that_set_the_key(tmp_path):
    write(tmp_path, "etc/sysctl.d/99-sysctl.conf", "net.core.somaxconn = 128\n")
    write(tmp_path, "usr/lib/sysctl.d/50-default.conf", "net.core.somaxconn = 256\n")
    p = run.plan("web", {}, [])
    from tuneup.facts.collect import collect_root

    snap = collect_root(p.book.fact_keys(), tmp_path)
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap))
    files = render_files(fp)
    (path,) = [k for k in files if k.startswith("etc/sysctl.d/")]
    assert path == "etc/sysctl.d/99-tuneup.conf"
    write(tmp_path, path, files[path])
    assert cf.boot_sysctl(tmp_path, {"net.core.somaxconn"})["net.core.somaxconn"].value == "65535"


def test_limits_d_lines_follow_limits_conf_grammar():
    fp, files = fixes({"rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 4096},
                      host={"limits_of": "a server started from a login shell"})
    (path,) = [k for k in files if k.startswith("etc/security/limits.d/")]
    entries = cf.parse_limits(files[path], path, strict=True)
    assert {(e.domain, e.type, e.item) for e in entries} == {("*", "soft", "nofile"), ("*", "hard", "nofile")}
    assert all(int(e.value) >= 114096 for e in entries)
    assert any("limits.d" in n for n in fp.notes)


def _verify(unit_dir: Path, unit: str) -> subprocess.CompletedProcess:
    """systemd-analyze verify with unit_dir (unit file and its .d drop-ins) before the default path."""
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run(["systemd-analyze", "verify", str(unit_dir / unit)], capture_output=True, text=True,
                          timeout=60, env=env)


def test_service_drop_in_passes_systemd_analyze_verify(tmp_path):
    fp, files = fixes({"rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 524288}, service="tuneupfx",
                      host={"limits_of": "tuneupfx.service (from its unit files)"})
    (path,) = [k for k in files if k.startswith("etc/systemd/system/")]
    assert path == "etc/systemd/system/tuneupfx.service.d/60-tuneup-limits.conf"
    text = files[path]
    assert "[Service]" in text and "LimitNOFILE=114096:524288" in text   # hard never lowered
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units"
    write(units, "tuneupfx.service", "[Unit]\nDescription=tuneup test\n[Service]\nType=oneshot\nExecStart=/bin/true\n")
    dropin = write(units, "tuneupfx.service.d/" + path.rsplit("/", 1)[-1], text)
    p = _verify(units, "tuneupfx.service")
    assert p.returncode == 0 and p.stderr.strip() == "", p.stderr
    # the checker is real: a broken drop-in is reported
    dropin.write_text(text.replace("LimitNOFILE=114096:524288", "LimitNOFILE=lots"))
    bad = _verify(units, "tuneupfx.service")
    assert "Failed to parse" in bad.stderr


def test_root_tree_without_service_uses_default_limit_in_system_conf_d(tmp_path):
    p = run.plan("web", {}, [])
    from tuneup.facts.collect import collect_root

    snap = collect_root(p.book.fact_keys(), tmp_path)
    fp = plan_fixes(list(p.book.rules.values()), p.rules, snap, p.profile.params, p.audit(snap))
    files = render_files(fp)
    (path,) = [k for k in files if k.startswith("etc/systemd/system.conf.d/")]
    assert "[Manager]" in files[path] and "DefaultLimitNOFILE=114096:524288" in files[path]
    if shutil.which("systemd-analyze") is not None:
        p2 = subprocess.run(["systemd-analyze", "cat-config", "--root", str(tmp_path), "systemd/system.conf"],
                            capture_output=True, text=True, timeout=60)
        assert p2.returncode in (0, 1)   # the tree is a fragment; parse-ability is checked below
    write(tmp_path, path, files[path])
    assert cf.manager_default(tmp_path)[0] == (114096, 524288)


def test_child_namespace_gets_container_forms_and_host_only_apart(tmp_path):
    vals = {"net.core.somaxconn": 128, "net.ipv4.ip_local_port_range": [40000, 40100], "fs.file-max": 1000,
            "net.ipv4.tcp_tw_reuse": 0}
    fp, files = fixes(vals, profile="proxy", host={"netns": "child"})
    ns = sysctl_lines(files["etc/sysctl.d/60-tuneup.conf"])
    assert "fs.file-max" not in ns and ns["net.ipv4.ip_local_port_range"] == "1024 65535"
    assert "fs.file-max" in sysctl_lines(files["host/etc/sysctl.d/60-tuneup.conf"])
    docker = files["container/docker-sysctl.txt"]
    assert "--sysctl 'net.ipv4.ip_local_port_range=1024 65535'" in docker and "fs.file-max" not in docker
    k8s = files["container/kubernetes-sysctls.yaml"]
    assert "fs.file-max" not in k8s
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        doc = yaml.safe_load(k8s)
        got = {s["name"]: s["value"] for s in doc["spec"]["securityContext"]["sysctls"]}
        assert got["net.core.somaxconn"] == "65535" and got["net.ipv4.ip_local_port_range"] == "1024 65535"
    assert "fs.file-max" in files["container/host-only.txt"]
    assert not any(p.startswith("host/") for p in files["apply.sh"].split() if "install" in p)
    assert "host/" not in files["apply.sh"]


def test_modprobe_fix(tmp_path):
    extra = rules_dir(tmp_path, {"id": "TEST-HASHSIZE", "fact": "net.netfilter.nf_conntrack_buckets", "op": ">=",
                                 "expected": "65536", "scope": "host",
                                 "fix": '{ kind = "modprobe", key = "nf_conntrack.hashsize" }'})
    fp, files = fixes({"net.netfilter.nf_conntrack_buckets": 16384}, extra=extra)
    (path,) = [k for k in files if k.startswith("etc/modprobe.d/")]
    assert "\noptions nf_conntrack hashsize=" in files[path]


def test_nothing_failing_renders_nothing():
    fp, files = fixes({"net.core.somaxconn": 65535})
    assert not [i for i in fp.items if i.key == "net.core.somaxconn"]
