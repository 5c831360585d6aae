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

# EMQX's workload: 1.3M mostly idle MQTT connections, one Erlang process each, MQTT keepalive pings;
# connections live ~1.8 h on average (200 closes/s).
EMQX_PARAMS = {"connections": 1_300_000, "mean_connection_lifetime_s": 6500, "tcp_buffer_bytes_per_connection": 4096,
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


def critical(report) -> set[str]:
    return failed(report, Severity.CRITICAL)


@pytest.mark.parametrize("profile", ["websocket", "erlang", "web"])
def test_tuned_emqx_node_has_no_false_failure(profile):
    report = audit("emqx-1m3.json", profile, EMQX_PARAMS)
    assert failed(report, Severity.WARNING) == set()
    # the only advice left is the orphan retry count the write-up leaves at its default (info)
    assert failed(report) == ({"NET-ORPHAN-RETRIES"} if profile in ("websocket", "erlang") else set())
    statuses = {f.rule: f.status for f in report.findings}
    assert statuses["CT-MAX"] is Status.SKIP                      # nf_conntrack not loaded
    assert statuses["NET-TW-RECYCLE"] is Status.PASS              # removed key: absent passes
    if profile == "erlang":
        assert statuses["BEAM-MAX-PORTS"] is Status.PASS and statuses["PROC-NOFILE-TOO-HIGH"] is Status.PASS
        assert statuses["BEAM-MAX-PROCESSES"] is Status.PASS


def test_emqx_write_up_conntrack_and_ulimit_values_are_below_the_load():
    snap = snapshot.load(str(DATA_DIR / "emqx-1m3.json"))
    snap.facts["net.netfilter.nf_conntrack_max"] = Fact("net.netfilter.nf_conntrack_max", 1_000_000, "write-up")
    snap.facts["proc.2001.rlimit.nofile.soft"] = Fact("proc.2001.rlimit.nofile.soft", 1_048_576, "write-up")
    report = audit("emqx-1m3.json", "websocket", EMQX_PARAMS, snap)
    assert {"CT-MAX", "PROC-NOFILE-SOFT"} <= critical(report)
    # at the guide's own 1M target its LimitNOFILE=1048576 covers the need, not the 10% headroom
    report = audit("emqx-1m3.json", "websocket", {**EMQX_PARAMS, "connections": 1_000_000}, snap)
    soft = next(f for f in report.findings if f.rule == "PROC-NOFILE-SOFT")
    assert soft.status is Status.FAIL and soft.severity is Severity.WARNING and "within the margin" in soft.message


def test_an_erlang_node_without_plus_p_fails_at_400k():
    """The release default (262144) cannot hold 400K connections at one process each: a critical."""
    snap = snapshot.load(str(DATA_DIR / "emqx-1m3.json"))
    snap.facts["proc.2001.beam.process_limit"] = Fact("proc.2001.beam.process_limit", 262144,
                                                      "erts version unknown: 262144 assumed")
    report = audit("emqx-1m3.json", "erlang", {**EMQX_PARAMS, "connections": 400_000}, snap)
    assert critical(report) == {"BEAM-MAX-PROCESSES"}


# The stock 32 GiB Debian 12 snapshot (no server named): process rules skip, nothing is critical at
# 100K; what remains are the per-key defaults an operator tunes.
EXPECTED_STOCK_FAILS = {
    "web": {"NET-NETDEV-BACKLOG"},
    "proxy": {"NET-NETDEV-BACKLOG", "NET-TW-REUSE", "NET-TCP-MEM"},
    "websocket": {"NET-NETDEV-BACKLOG", "NET-KEEPALIVE-TIME", "NET-KEEPALIVE-DEAD-PEER", "NET-ORPHAN-RETRIES"},
    "erlang": {"NET-NETDEV-BACKLOG", "NET-KEEPALIVE-TIME", "NET-KEEPALIVE-DEAD-PEER", "NET-ORPHAN-RETRIES"},
    "baseline": set(),
}


@pytest.mark.parametrize("profile", sorted(EXPECTED_STOCK_FAILS))
def test_stock_debian_fails_where_an_operator_expects(profile):
    report = audit("debian12-stock.json", profile)
    assert failed(report) == EXPECTED_STOCK_FAILS[profile]
    assert critical(report) == set()
    soft = next((f for f in report.findings if f.rule == "PROC-NOFILE-SOFT"), None)
    if soft:   # the shell that ran `collect` is not the server
        assert soft.status is Status.SKIP and "no server named" in soft.message


def test_stock_debian_at_a_million_connections_needs_kernel_limits_too():
    report = audit("debian12-stock.json", "web", {"connections": 1_000_000})
    assert failed(report) == {"NET-NETDEV-BACKLOG", "NET-SOMAXCONN", "NET-TCP-MEM", "MEM-LOAD-FITS-RAM",
                              "NET-TW-BUCKETS", "NET-MAX-ORPHANS"}
    assert critical(report) == set()       # memory is an estimate; the kernel's own share fits in 32 GiB
    # not FD-FILE-MAX / FD-NR-OPEN: systemd raised them to their maximum at boot


# -- reference hosts computed from the kernel's formulas (tests/rules/refhosts.py) ------------------
REF_HOSTS = [f"ref-{d}-{g}g" for d in ("debian12", "ubuntu2404", "rhel9") for g in (8, 64)]
LOADS = (10_000, 100_000, 1_000_000)


def expected_criticals(host: str, profile: str, connections: int) -> dict[str, str]:
    """Every CRITICAL a stock host must get, with the reason it cannot hold the load."""
    out = {}
    rhel = host.startswith("ref-rhel9")
    small = host.endswith("-8g")
    if rhel and (connections >= 1_000_000 or (profile == "proxy" and connections >= 100_000)):
        out["CT-MAX"] = "firewalld loads nf_conntrack: 262144 entries cannot track the connections plus TIME_WAIT"
    if profile == "proxy" and connections >= 1_000_000:
        out["NET-PORT-RANGE-SPAN"] = "250000 upstream connections per (address, port) exceed any port range"
        if small:
            out["FD-EPOLL-WATCHES"] = "2M sockets exceed the 8 GiB default of ~1.68M epoll watches"
    return out


def test_reference_files_are_what_the_kernel_formulas_give():
    import refhosts

    for name, snap in refhosts.all_hosts().items():
        assert (DATA_DIR / f"{name}.json").read_text(encoding="utf-8") == refhosts.dump(snap), \
            f"{name}.json is stale: run `python tests/rules/refhosts.py`"
    f = snapshot.load(str(DATA_DIR / "ref-debian12-8g.json")).facts
    # ehash 65536 on 8 GiB: orphans and TIME_WAIT buckets 32768, SYN backlog 512
    assert (f["net.ipv4.tcp_max_orphans"].value, f["net.ipv4.tcp_max_tw_buckets"].value,
            f["net.ipv4.tcp_max_syn_backlog"].value) == (32768, 32768, 512)
    f = snapshot.load(str(DATA_DIR / "ref-rhel9-64g.json")).facts
    # ehash capped at 512K on 64 GiB
    assert (f["net.ipv4.tcp_max_orphans"].value, f["net.ipv4.tcp_max_syn_backlog"].value) == (262144, 4096)


@pytest.mark.parametrize("host", REF_HOSTS)
@pytest.mark.parametrize("profile", ["web", "proxy", "websocket", "erlang"])
def test_stock_reference_hosts_critical_only_where_they_cannot_hold_the_load(host, profile):
    for n in LOADS:
        report = audit(f"{host}.json", profile, {"connections": n})
        assert critical(report) == set(expected_criticals(host, profile, n)), (n, critical(report))
        # process rules judge what a new service gets, labelled so, at most a warning
        soft = next(f for f in report.findings if f.rule == "PROC-NOFILE-SOFT")
        assert "DefaultLimitNOFILE" in (soft.target or "") and soft.severity <= Severity.WARNING
    # and a load no 8 GiB host can hold is critical: 3M sockets need 11.8 GB of kernel slab
    if host.endswith("-8g"):
        report = audit(f"{host}.json", profile, {"connections": 3_000_000})
        assert "MEM-KERNEL-SOCKETS" in critical(report)


# Hosts configured as published write-ups, audited at their role and load. Every failure that remains
# is named with its reason; none is critical.
WRITEUPS = {
    "writeup-phoenix-2m": ("erlang", {"connections": 2_000_000, "app_keepalive_s": 30}, {
        "NET-SOMAXCONN": "3.13's default 128 is left in place: a reconnect storm of 2M clients overflows the "
                         "accept queue (the benchmark ramped up slowly and never hit it)",
        "NET-NETDEV-BACKLOG": "info: the default 1000 per CPU, advice only",
        "NET-ORPHAN-RETRIES": "info: tcp_orphan_retries left at 8 for vanished mobile clients",
    }),
    "writeup-migratorydata-12m": ("websocket", {"connections": 12_000_000, "bytes_per_connection": 6144,
                                                "tcp_buffer_bytes_per_connection": 1024, "app_keepalive_s": 60}, {
        "NET-ORPHAN-RETRIES": "info: tcp_orphan_retries left at 8",
    }),
    "writeup-haproxy-1m": ("proxy", {"connections": 1_000_000, "upstream_destinations": 20,
                                     "bytes_per_connection": 40000}, {}),
}


@pytest.mark.parametrize("name", sorted(WRITEUPS))
def test_published_write_ups_have_no_false_failure(name):
    profile, params, remaining = WRITEUPS[name]
    report = audit(f"{name}.json", profile, params)
    assert critical(report) == set()
    assert failed(report) == set(remaining), {f.rule: f.message for f in report.findings if f.status is Status.FAIL}


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
