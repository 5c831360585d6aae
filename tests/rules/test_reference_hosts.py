"""Whole-profile audits of reference snapshots (tests/rules/data): a well-tuned EMQX-like node must
not fail, a stock Debian 12 VM must fail exactly where an operator would expect, and a container
must not be blamed for host-global keys."""

from __future__ import annotations

import json

import pytest
from rule_helpers import DATA_DIR, book
from typer.testing import CliRunner

from tuneup import snapshot
from tuneup.cli import EXIT_FINDINGS, EXIT_OK, app
from tuneup.engine import build_report, failing
from tuneup.model import Fact, Severity, Status

runner = CliRunner()

# EMQX's workload: 1.3M mostly idle MQTT connections, one Erlang process each, MQTT keepalive pings.
EMQX_PARAMS = {"connections": 1_300_000, "close_rate_per_s": 200, "tcp_buffer_bytes_per_connection": 4096,
               "bytes_per_connection": 16384, "app_keepalive_s": 60, "beam_processes_per_connection": 1}


def audit(name: str, profile: str, params: dict | None = None, snap=None):
    b = book()
    prof = b.profile(profile, params)
    snap = snap or snapshot.load(str(DATA_DIR / name))
    report = build_report(b.rules_for(profile), snap, profile, prof.params)
    assert not [f for f in report.findings if f.status is Status.ERROR], profile
    return report


def failed(report, min_severity=Severity.INFO) -> set[str]:
    return {f.rule for f in report.findings if f.status is Status.FAIL and f.severity >= min_severity}


@pytest.mark.parametrize("profile", ["websocket", "erlang", "web"])
def test_tuned_emqx_node_has_no_false_failure(profile):
    report = audit("emqx-1m3.json", profile, EMQX_PARAMS)
    assert failed(report, Severity.WARNING) == set()
    # the only advice left is the orphan retry count the write-up leaves at its default (info)
    assert failed(report) == ({"NET-ORPHAN-RETRIES"} if profile == "websocket" else set())
    statuses = {f.rule: f.status for f in report.findings}
    assert statuses["CT-MAX"] is Status.SKIP                      # nf_conntrack not loaded
    assert statuses["NET-TW-RECYCLE"] is Status.PASS              # removed key: absent passes
    if profile == "erlang":
        assert statuses["BEAM-MAX-PORTS"] is Status.PASS and statuses["PROC-NOFILE-TOO-HIGH"] is Status.PASS


def test_emqx_write_up_conntrack_and_ulimit_values_are_below_the_load():
    snap = snapshot.load(str(DATA_DIR / "emqx-1m3.json"))
    snap.facts["net.netfilter.nf_conntrack_max"] = Fact("net.netfilter.nf_conntrack_max", 1_000_000, "write-up")
    snap.facts["proc.2001.rlimit.nofile.soft"] = Fact("proc.2001.rlimit.nofile.soft", 1_048_576, "write-up")
    report = audit("emqx-1m3.json", "websocket", EMQX_PARAMS, snap)
    assert {"CT-MAX", "PROC-NOFILE-SOFT"} <= failed(report, Severity.CRITICAL)


EXPECTED_STOCK_FAILS = {
    "web": {"PROC-NOFILE-SOFT", "NET-SOMAXCONN", "NET-NETDEV-BACKLOG"},
    "proxy": {"PROC-NOFILE-SOFT", "NET-SOMAXCONN", "NET-NETDEV-BACKLOG", "NET-TW-REUSE", "NET-TCP-MEM"},
    "websocket": {"PROC-NOFILE-SOFT", "NET-SOMAXCONN", "NET-NETDEV-BACKLOG", "NET-KEEPALIVE-TIME",
                  "NET-KEEPALIVE-DEAD-PEER", "NET-ORPHAN-RETRIES"},
    "erlang": {"PROC-NOFILE-SOFT", "NET-SOMAXCONN", "NET-NETDEV-BACKLOG"},
    "baseline": set(),
}


@pytest.mark.parametrize("profile", sorted(EXPECTED_STOCK_FAILS))
def test_stock_debian_fails_where_an_operator_expects(profile):
    report = audit("debian12-stock.json", profile)
    assert failed(report) == EXPECTED_STOCK_FAILS[profile]
    soft = next((f for f in report.findings if f.rule == "PROC-NOFILE-SOFT"), None)
    if soft:
        assert "select()" in soft.message and "raise its soft limit" in soft.message


def test_stock_debian_at_a_million_connections_needs_kernel_limits_too():
    report = audit("debian12-stock.json", "web", {"connections": 1_000_000})
    assert failed(report) == EXPECTED_STOCK_FAILS["web"] | {"PROC-NOFILE-HARD", "NET-TCP-MEM", "MEM-LOAD-FITS-RAM"}
    # not FD-FILE-MAX / FD-NR-OPEN: systemd raised them to their maximum at boot


def test_container_is_not_blamed_for_host_global_keys():
    report = audit("container-child-netns.json", "web")
    by_rule = {f.rule: f for f in report.findings}
    fm = by_rule["FD-FILE-MAX"]
    assert fm.status is Status.FAIL and fm.host_only and "only the host can change it" in fm.message
    assert by_rule["NET-TCP-MEM"].status is Status.SKIP and "host-global" in by_rule["NET-TCP-MEM"].message
    assert by_rule["NET-MAX-ORPHANS"].status is Status.SKIP
    assert all(f.host_only for f in report.findings if f.status is Status.FAIL)
    assert failing(report, Severity.INFO) == []
    assert [f.rule for f in failing(report, Severity.INFO, include_host=True)] == ["FD-FILE-MAX"]


def test_include_host_through_the_cli():
    path = str(DATA_DIR / "container-child-netns.json")
    r = runner.invoke(app, ["audit", "--snapshot", path, "-p", "web", "-f", "json"])
    assert r.exit_code == EXIT_OK, r.output
    data = json.loads(r.output)
    fm = next(f for f in data["findings"] if f["rule"] == "FD-FILE-MAX")
    assert fm["status"] == "fail" and fm["host_only"] is True
    r = runner.invoke(app, ["audit", "--snapshot", path, "-p", "web", "-f", "json", "--include-host"])
    assert r.exit_code == EXIT_FINDINGS, r.output


@pytest.mark.parametrize("profile", ["web", "proxy", "websocket", "erlang"])
def test_every_fix_spec_plans_a_value_on_the_worst_host(profile):
    """Each failing rule with a fix gets a value under which every rule on that key passes
    (e.g. the port-range fixes keep both ip_unprivileged_port_start and the parity rule happy)."""
    path = str(DATA_DIR / "worst-host.json")
    report = audit("worst-host.json", profile, {"threads_per_connection": 1})
    fixable = {f.rule for f in report.findings if f.status is Status.FAIL and book().rules[f.rule].fix}
    assert len(fixable) >= 15
    r = runner.invoke(app, ["fix", "--snapshot", path, "-p", profile, "--set", "threads_per_connection=1"])
    assert r.exit_code == EXIT_OK, r.output
    assert "not written" not in r.output and "rror" not in r.output
    # NET-SYN-BACKLOG needs no value of its own: the NET-SYNCOOKIES fix makes it not applicable
    for rule_id in fixable - {"NET-SYN-BACKLOG"}:
        assert rule_id in r.output, rule_id
