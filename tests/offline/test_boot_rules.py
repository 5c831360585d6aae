"""Boot rules on live-host snapshots: module keys set by hand, PAM limits against a unit's own limit,
waivers naming a BOOT-* rule."""

from __future__ import annotations

import datetime as dt

from tuneup import run
from tuneup.model import Fact, Snapshot, Status
from tuneup.waivers import parse

HOST = {"hostname": "h", "kernel": "6.1.0", "kernel_version": [6, 1, 0], "cpus": 8, "mem_total_bytes": 32 * 2**30,
        "page_size": 4096, "netns": "initial", "netns_evidence": "test"}


def snap(facts: dict) -> Snapshot:
    return Snapshot(host=HOST, facts={k: Fact(k, v, src) for k, (v, src) in facts.items()}, origin="live")


def findings(s: Snapshot, waivers=()):
    return {(f.rule, f.key): f for f in run.plan("web", {}, [], waivers, today=dt.date(2026, 1, 1)).audit(s).findings}


def test_module_key_set_by_hand_not_at_boot():
    f = findings(snap({
        "net.netfilter.nf_conntrack_max": (1048576, "/proc/sys/net/netfilter/nf_conntrack_max"),
        "boot.net.netfilter.nf_conntrack_max": (None, "no sysctl.d line that applies at boot sets it"),
        "boot.module_key.net.netfilter.nf_conntrack_max": (
            "/etc/sysctl.d/90-ct.conf:1 sets net.netfilter.nf_conntrack_max = 1048576, but nothing loads nf_conntrack "
            "before systemd-sysctl runs: the line is never applied at boot", "/etc/sysctl.d/90-ct.conf:1"),
    }))
    mod = f[("BOOT-MODULE-KEY", "net.netfilter.nf_conntrack_max")]
    assert mod.status is Status.FAIL and "set by hand, not at boot" in mod.message
    assert ("BOOT-REVERTS", "net.netfilter.nf_conntrack_max") not in f   # not "reverts": it never applied


def _pam(unit_limit: int):
    return snap({"service.unit": ("app.service", "--service"),
                 "pam.nofile.soft": (1048576, "/etc/security/limits.d/90-app.conf:1"),
                 "rlimit.nofile.soft": (unit_limit, "/etc/systemd/system/app.service:3"),
                 "rlimit.nofile.hard": (unit_limit, "/etc/systemd/system/app.service:3")})


def test_pam_limits_passes_a_unit_with_a_sufficient_limit():
    assert not [k for k in findings(_pam(1048576)) if k[0] == "BOOT-PAM-LIMITS"]


def test_pam_limits_fails_a_unit_with_a_short_limit():
    f = findings(_pam(4096))
    assert f[("BOOT-PAM-LIMITS", "pam.nofile.soft")].status is Status.FAIL
    assert "its own /etc/systemd/system/app.service:3 gives 4096" in f[("BOOT-PAM-LIMITS", "pam.nofile.soft")].message


def test_a_boot_rule_can_be_waived():
    ws = parse({"waiver": [{"rule": "BOOT-PAM-LIMITS", "reason": "known", "expires": "2099-01-01"}]}, "", "w.toml")
    f = findings(_pam(4096), ws)
    assert f[("BOOT-PAM-LIMITS", "pam.nofile.soft")].status is Status.WAIVED
