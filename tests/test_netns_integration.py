"""The installed CLI inside a fresh network namespace with deliberately low per-namespace values.

Only per-namespace keys are written, and only inside the throwaway namespace (see conftest.netns).
"""

from __future__ import annotations

import json

from conftest import tuneup_cmd


def test_low_values_in_a_child_namespace_fail_and_host_keys_are_not_the_containers(netns):
    netns.sysctl("net.core.somaxconn", "128")
    netns.sysctl("net.ipv4.tcp_max_syn_backlog", "64")
    netns.sysctl("net.ipv4.tcp_syncookies", "0")
    netns.sysctl("net.ipv4.ip_local_port_range", "40000 40100")
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0")
    p = netns.run(*tuneup_cmd(), "audit", "-p", "proxy", "-f", "json", check=False)
    assert p.returncode == 1, p.stderr
    data = json.loads(p.stdout)
    assert data["host"]["netns"] == "child"
    f = {x["rule"]: x for x in data["findings"]}
    assert (f["NET-SOMAXCONN"]["status"], f["NET-SOMAXCONN"]["actual"]) == ("fail", 128)
    assert f["NET-SYNCOOKIES"]["status"] == "fail" and f["NET-SYNCOOKIES"]["actual"] == 0
    assert f["NET-SYN-BACKLOG"]["status"] == "fail" and f["NET-SYN-BACKLOG"]["expected"] == ">= 128"
    assert f["NET-PORT-RANGE-SPAN"]["status"] == "fail" and f["NET-PORT-RANGE-SPAN"]["actual"] == [40000, 40100]
    assert f["NET-TW-REUSE"]["status"] == "fail"
    # tcp_mem is host-global: invisible from a child namespace, so skipped with the reason
    assert f["NET-TCP-MEM"]["status"] == "skip" and "host-global" in f["NET-TCP-MEM"]["message"]
    for x in data["findings"]:
        if x["status"] == "fail" and x["scope"] == "host":
            assert x["host_only"] and "only the host" in x["message"]

    # the same audit with only per-namespace problems fixed exits 0 at --fail-on critical
    # unless host-global failures are counted on request
    q = netns.run(*tuneup_cmd(), "audit", "-p", "web", "--fail-on", "never", check=False)
    assert q.returncode == 0 and "FAIL" in q.stdout


def test_healthy_namespace_values_pass(netns):
    netns.sysctl("net.core.somaxconn", "65535")
    netns.sysctl("net.ipv4.tcp_max_syn_backlog", "65535")
    p = netns.run(*tuneup_cmd(), "audit", "-p", "web", "-f", "json", check=False)
    f = {x["rule"]: x for x in json.loads(p.stdout)["findings"]}
    assert f["NET-SOMAXCONN"]["status"] == "pass" and f["NET-SOMAXCONN"]["actual"] == 65535
    # with SYN cookies on (a fresh namespace's default) tcp_max_syn_backlog is not used: not applicable
    assert f["NET-SYN-BACKLOG"]["status"] == "skip" and "tcp_syncookies" in f["NET-SYN-BACKLOG"]["message"]
