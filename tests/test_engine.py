"""The engine on in-memory snapshots with hand-made rules: every status and its reason."""

from __future__ import annotations

from conftest import make_snapshot

from tuneup.engine import build_report, evaluate, failing, render
from tuneup.model import RLIM_INFINITY, Rule, Scope, Severity, Status


def rule(**kw) -> Rule:
    base = dict(id="T-RULE", title="t", severity=Severity.WARNING, fact="net.core.somaxconn", op=">=",
                expected="max(4096, connections // 20)", scope=Scope.NETNS, rationale="because", refs=("ref",))
    base.update(kw)
    return Rule(**base)


PARAMS = {"connections": 100000}


def one(r: Rule, snap, params=PARAMS):
    (f,) = evaluate([r], snap, params)
    return f


def test_pass_and_fail_with_threshold_from_params():
    f = one(rule(), make_snapshot({"net.core.somaxconn": 4096}), {"connections": 100000})
    assert f.status is Status.FAIL and f.expected_value == 5000
    f = one(rule(), make_snapshot({"net.core.somaxconn": 4096}), {"connections": 1000})
    assert f.status is Status.PASS and f.expected == ">= 4096"
    f = one(rule(), make_snapshot({"net.core.somaxconn": 128}), {"connections": 500000})
    assert f.status is Status.FAIL
    assert f.actual == 128 and f.expected == ">= 25000"
    assert "net.core.somaxconn is 128, want >= 25000" in f.message


def test_absent_unreadable_and_not_collected_are_different_states():
    r = rule()
    absent = one(r, make_snapshot({"net.core.somaxconn": None}))
    unreadable = one(r, make_snapshot({}, errors={"net.core.somaxconn": "permission denied"}))
    missing = one(r, make_snapshot({}))
    assert absent.status is Status.SKIP and "absent on this kernel" in absent.message
    assert unreadable.status is Status.UNKNOWN and "permission denied" in unreadable.message
    assert missing.status is Status.UNKNOWN and "not collected" in missing.message


def test_removed_key_can_pass_when_absent():
    r = rule(fact="net.ipv4.tcp_tw_recycle", op="==", expected="0", absent=Status.PASS,
             absent_reason="removed in 4.12")
    assert one(r, make_snapshot({"net.ipv4.tcp_tw_recycle": None})).status is Status.PASS
    assert one(r, make_snapshot({"net.ipv4.tcp_tw_recycle": 1})).status is Status.FAIL
    assert one(r, make_snapshot({"net.ipv4.tcp_tw_recycle": 0})).status is Status.PASS


def test_when_condition_skips_with_reason():
    r = rule(when="kernel >= (5, 4)")
    f = one(r, make_snapshot({"net.core.somaxconn": 128}, host={"kernel_version": [4, 19, 0]}))
    assert f.status is Status.SKIP and "kernel >= (5, 4)" in f.message
    f = one(r, make_snapshot({"net.core.somaxconn": 128}, host={"kernel_version": [6, 1, 0]}))
    assert f.status is Status.FAIL


def test_cross_key_threshold_and_missing_dependency():
    r = rule(fact="net.ipv4.tcp_max_syn_backlog", expected="fact('net.core.somaxconn')")
    snap = make_snapshot({"net.ipv4.tcp_max_syn_backlog": 2048, "net.core.somaxconn": 4096})
    assert one(r, snap).status is Status.FAIL
    f = one(r, make_snapshot({"net.ipv4.tcp_max_syn_backlog": 2048}))
    assert f.status is Status.UNKNOWN and "net.core.somaxconn" in f.message


def test_tuple_actual_expression_and_span():
    mem = rule(fact="net.ipv4.tcp_mem", actual="value[2]", expected="ceil(connections * 16384 / page_size)",
               scope=Scope.HOST)
    f = one(mem, make_snapshot({"net.ipv4.tcp_mem": (100, 200, 300000)}))
    assert f.status is Status.FAIL and f.actual == 300000 and f.expected_value == 400000
    span = rule(fact="net.ipv4.ip_local_port_range", op="span>=", expected="28000")
    assert one(span, make_snapshot({"net.ipv4.ip_local_port_range": (32768, 60999)})).status is Status.PASS
    assert one(span, make_snapshot({"net.ipv4.ip_local_port_range": (40000, 40100)})).status is Status.FAIL


def test_type_error_in_rule_is_an_error_not_a_crash():
    r = rule(fact="net.ipv4.tcp_rmem", expected="4096")   # tuple >= scalar
    f = one(r, make_snapshot({"net.ipv4.tcp_rmem": (4096, 131072, 6291456)}))
    assert f.status is Status.ERROR and "cannot compare" in f.message
    r = rule(expected="connections // 0")
    assert one(r, make_snapshot({"net.core.somaxconn": 1})).status is Status.ERROR


def test_process_rules_run_per_target_and_render_unlimited():
    r = rule(fact="rlimit.nofile.soft", scope=Scope.PROCESS, expected="connections")
    snap = make_snapshot({"proc.10.rlimit.nofile.soft": 1024, "proc.11.rlimit.nofile.soft": RLIM_INFINITY,
                          "rlimit.nofile.soft": 20000},
                         processes=[{"pid": 10, "name": "nginx"}, {"pid": 11, "name": "beam.smp"}])
    a, b = evaluate([r], snap, PARAMS)
    assert (a.status, a.key, a.target) == (Status.FAIL, "proc.10.rlimit.nofile.soft", "pid 10 (nginx)")
    assert "pid 10 (nginx)" in a.message
    assert b.status is Status.PASS and render(b.actual) == "unlimited"
    # no server named: tuneup's own limits are never judged
    (own,) = evaluate([r], make_snapshot({"rlimit.nofile.soft": 20000}), PARAMS)
    assert own.status is Status.SKIP and "no server named (use --pid, --process or --service)" in own.message
    # a tree: systemd's DefaultLimitNOFILE, labelled, at most a warning
    crit = rule(fact="rlimit.nofile.soft", scope=Scope.PROCESS, expected="connections", severity=Severity.CRITICAL)
    snap = make_snapshot({"rlimit.nofile.soft": 1024},
                         host={"limits_of": "any systemd service (DefaultLimitNOFILE; give --service NAME for one unit)"})
    (dflt,) = evaluate([crit], snap, PARAMS)
    assert dflt.status is Status.FAIL and dflt.severity is Severity.WARNING and "DefaultLimitNOFILE" in dflt.target


def test_host_global_failure_in_child_netns_is_not_the_containers_failure():
    r = rule(fact="fs.file-max", scope=Scope.HOST, expected="connections", severity=Severity.CRITICAL)
    snap = make_snapshot({"fs.file-max": 8192}, host={"netns": "child"})
    report = build_report([r], snap, "web", PARAMS)
    (f,) = report.findings
    assert f.status is Status.FAIL and f.host_only and "only the host" in f.message
    assert failing(report, Severity.WARNING) == []
    assert failing(report, Severity.WARNING, include_host=True) == [f]
    # a host-global key that is not visible from a child namespace is skipped, not failed
    r2 = rule(fact="net.ipv4.tcp_mem", scope=Scope.HOST, op="each>=", expected="1")
    (g,) = evaluate([r2], make_snapshot({"net.ipv4.tcp_mem": None}, host={"netns": "child"}), PARAMS)
    assert g.status is Status.SKIP and "host-global" in g.message


def test_failing_respects_threshold_and_never():
    rules = [rule(id="T-A", severity=Severity.INFO), rule(id="T-B", severity=Severity.CRITICAL, expected="1")]
    report = build_report(rules, make_snapshot({"net.core.somaxconn": 128}), "web", PARAMS)
    assert [f.rule for f in failing(report, Severity.INFO)] == ["T-A"]
    assert failing(report, Severity.WARNING) == []
    assert failing(report, None) == []
    assert report.summary()["fail"] == 1 and report.summary()["pass"] == 1


def test_builtin_rules_evaluate_without_errors_on_a_stock_host():
    from tuneup.rulebook import loader

    book = loader.load()
    snap = make_snapshot({
        "fs.file-max": 9223372036854775807, "fs.nr_open": 1048576, "fs.file-nr": (1000, 0, 9223372036854775807),
        "net.core.somaxconn": 4096, "net.ipv4.tcp_max_syn_backlog": 512, "net.ipv4.tcp_syncookies": 1,
        "net.ipv4.ip_local_port_range": (32768, 60999), "net.ipv4.tcp_tw_reuse": 2, "net.ipv4.tcp_tw_recycle": None,
        "net.ipv4.tcp_max_tw_buckets": 16384, "net.ipv4.tcp_fin_timeout": 60, "net.core.netdev_max_backlog": 1000,
        "net.ipv4.tcp_mem": (94011, 125350, 188022), "proc.42.rlimit.nofile.soft": 1024,
        "proc.42.rlimit.nofile.hard": 524288,
    }, processes=[{"pid": 42, "name": "nginx"}])
    for name in book.profile_defs:
        prof = book.profile(name)
        report = build_report(book.rules_for(name), snap, name, prof.params)
        assert not [f for f in report.findings if f.status is Status.ERROR], name
        fails = {f.rule for f in report.findings if f.status is Status.FAIL}
        if name != "baseline":   # baseline holds only load-independent rules
            buffers_pages = prof.params["connections"] * prof.params["tcp_buffer_bytes_per_connection"] / 4096
            assert {"PROC-NOFILE-SOFT"} | ({"NET-TCP-MEM"} if buffers_pages > 188022 else set()) <= fails, name
