"""limits.conf / systemd limit sources, persistence findings, and `audit --root` naming file:line."""

from __future__ import annotations

import json
import subprocess

import pytest

from tuneup import run
from tuneup.facts import configfiles as cf
from tuneup.model import RLIM_INFINITY, Status

from .conftest import snapshot, tuneup_cmd, write


def test_service_limit_precedence(tmp_path):
    # nothing set: systemd's own default for services
    facts, label = cf.service_limit_facts(tmp_path, "nginx")
    assert (facts["rlimit.nofile.soft"].value, facts["rlimit.nofile.hard"].value) == (1024, 524288)
    # DefaultLimitNOFILE in system.conf, then a system.conf.d drop-in overrides it
    write(tmp_path, "etc/systemd/system.conf", "[Manager]\nDefaultLimitNOFILE=2048:4096\n")
    assert cf.service_limit_facts(tmp_path, "nginx")[0]["rlimit.nofile.hard"].value == 4096
    write(tmp_path, "usr/lib/systemd/system.conf.d/10-x.conf", "[Manager]\nDefaultLimitNOFILE=8192\n")
    f = cf.service_limit_facts(tmp_path, "nginx")[0]["rlimit.nofile.soft"]
    assert (f.value, f.source) == (8192, "usr/lib/systemd/system.conf.d/10-x.conf:2")
    # the unit beats DefaultLimitNOFILE; a drop-in beats the unit; etc masks usr/lib by name
    write(tmp_path, "usr/lib/systemd/system/nginx.service", "[Unit]\nDescription=x\n[Service]\nLimitNOFILE=100\n")
    assert cf.service_limit_facts(tmp_path, "nginx")[0]["rlimit.nofile.soft"].value == 100
    write(tmp_path, "usr/lib/systemd/system/nginx.service.d/50-a.conf", "[Service]\nLimitNOFILE=200:300\n")
    write(tmp_path, "etc/systemd/system/nginx.service.d/50-a.conf", "[Service]\nLimitNOFILE=infinity\n")
    f = cf.service_limit_facts(tmp_path, "nginx.service")[0]
    assert f["rlimit.nofile.soft"].value == RLIM_INFINITY
    assert f["rlimit.nofile.soft"].source == "etc/systemd/system/nginx.service.d/50-a.conf:2"
    # an empty assignment resets to the default again
    write(tmp_path, "etc/systemd/system/nginx.service.d/90-reset.conf", "[Service]\nLimitNOFILE=\n")
    assert cf.service_limit_facts(tmp_path, "nginx")[0]["rlimit.nofile.soft"].value == 8192
    # limits.conf never reaches a service
    write(tmp_path, "etc/security/limits.conf", "* soft nofile 99999\n")
    assert cf.service_limit_facts(tmp_path, "nginx")[0]["rlimit.nofile.soft"].value == 8192


def test_pam_limits_wildcard_last_wins_and_domain_fallback(tmp_path):
    write(tmp_path, "etc/security/limits.conf", "# c\n*  soft  nofile  1000\nbob hard nofile 5\n")
    write(tmp_path, "etc/security/limits.d/20-b.conf", "*\t-\tnofile\t65536\n")
    facts = cf.pam_facts(tmp_path)
    assert facts["pam.nofile.soft"].value == 65536 and facts["pam.nofile.soft"].source == "etc/security/limits.d/20-b.conf:1"
    assert facts["pam.nofile.hard"].value == 65536


@pytest.mark.parametrize("line,ok", [
    ("*  soft  nofile  1048576", True), ("@admins hard nofile unlimited", True), ("nginx - nofile 4096", True),
    ("%staff soft nproc 10", True), ("1000:2000 soft nofile 10", True),
    ("* soft nofile", False), ("* medium nofile 1", False), ("* soft nofiles 1", False), ("* soft nofile 1x", False),
])
def test_limits_grammar(line, ok):
    if ok:
        assert len(cf.parse_limits(line, "x", strict=True)) == 1
    else:
        with pytest.raises(cf.ConfigFileError, match="x:1"):
            cf.parse_limits(line, "x", strict=True)


def _plan():
    return run.plan("web", {}, [])


def test_reverts_on_reboot_is_a_warning_when_the_boot_value_fails():
    p = _plan()
    snap = snapshot({"net.core.somaxconn": 65535, "boot.net.core.somaxconn": 128},
                    sources={"boot.net.core.somaxconn": "/etc/sysctl.d/10-old.conf:3"})
    f = [x for x in p.audit(snap).findings if x.rule == "BOOT-REVERTS"]
    assert len(f) == 1 and f[0].status is Status.FAIL and f[0].severity.name == "WARNING"
    assert "/etc/sysctl.d/10-old.conf:3" in f[0].message and "reverts on reboot" in f[0].message
    assert "NET-SOMAXCONN" in f[0].message


def test_equal_live_and_boot_values_give_no_persistence_finding():
    p = _plan()
    snap = snapshot({"net.core.somaxconn": 65535, "boot.net.core.somaxconn": 65535})
    assert not [x for x in p.audit(snap).findings if x.rule.startswith("BOOT-")]


def test_no_boot_facts_no_persistence_findings():
    assert not [x for x in _plan().audit(snapshot({"net.core.somaxconn": 4096})).findings if x.rule.startswith("BOOT-")]


def test_pam_entry_for_a_systemd_service_is_flagged():
    snap = snapshot({"proc.42.unit": "nginx.service", "pam.nofile.soft": 65536},
                    sources={"pam.nofile.soft": "/etc/security/limits.d/90-nginx.conf:1"})
    f = [x for x in _plan().audit(snap).findings if x.rule == "BOOT-PAM-LIMITS"]
    assert f and "never sees it" in f[0].message and "/etc/security/limits.d/90-nginx.conf:1" in f[0].message


def test_waiver_may_name_a_persistence_check():
    from tuneup.waivers import check_rules, parse

    from tuneup.persistence import CHECKS

    ws = parse({"waiver": [{"rule": "BOOT-CONFLICT", "reason": "vendor file, known", "expires": "2099-01-01"}]}, "", "w.toml")
    check_rules(ws, [*_plan().book.rules, *CHECKS])


def test_audit_root_names_file_and_line(tmp_path):
    write(tmp_path, "usr/lib/sysctl.d/50-vendor.conf", "net.core.somaxconn = 4096\n")
    write(tmp_path, "etc/sysctl.d/30-site.conf", "net.core.somaxconn = 128\nnet.ipv4.tcp_syncookies = 0\n")
    write(tmp_path, "etc/systemd/system/app.service.d/10-x.conf", "[Service]\nLimitNOFILE=4096\n")
    write(tmp_path, "etc/security/limits.d/10-x.conf", "* soft nofile 1048576\n")
    p = subprocess.run([*tuneup_cmd(), "audit", "--root", str(tmp_path), "--service", "app", "-f", "json"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr
    data = json.loads(p.stdout)
    f = {(x["rule"], x["key"]): x for x in data["findings"]}
    cookies = f[("NET-SYNCOOKIES", "net.ipv4.tcp_syncookies")]
    assert cookies["status"] == "fail" and "etc/sysctl.d/30-site.conf:2" in cookies["message"]
    # 30-site sorts before 50-vendor: the vendor value wins, and the conflict says so
    assert f[("NET-SOMAXCONN", "net.core.somaxconn")]["actual"] == 4096
    conflict = f[("BOOT-CONFLICT", "net.core.somaxconn")]
    assert "usr/lib/sysctl.d/50-vendor.conf:1 wins" in conflict["message"]
    nofile = f[("PROC-NOFILE-SOFT", "rlimit.nofile.soft")]
    assert nofile["actual"] == 4096 and "app.service.d/10-x.conf:2" in nofile["message"]
    assert ("BOOT-PAM-LIMITS", "pam.nofile.soft") in f


def test_audit_root_rejects_a_missing_directory(tmp_path):
    p = subprocess.run([*tuneup_cmd(), "audit", "--root", str(tmp_path / "nope")], capture_output=True, text=True)
    assert p.returncode == 2 and "not a directory" in p.stderr and "Traceback" not in p.stderr
