"""The rule catalogue through the CLI (list/show/profiles, docs/rules.md), profile inheritance and
parameter overrides, the citation contract, and the engine/loader extensions the rules use (hints,
host.* facts)."""

from __future__ import annotations

import json
import re
import textwrap

import pytest
from rule_helpers import REPO, book, snapshot
from typer.testing import CliRunner

from tuneup.cli import app
from tuneup.engine import evaluate
from tuneup.errors import RuleFileError
from tuneup.model import Hint, Rule, Scope, Severity, Status
from tuneup.rulebook import loader

runner = CliRunner()
PRIMARY = re.compile(r"^https://(docs\.kernel\.org|git\.kernel\.org|elixir\.bootlin\.com|man7\.org|"
                     r"www\.freedesktop\.org/software/systemd|0pointer\.net|www\.erlang\.org|github\.com/docker-library|"
                     # the servers' own documentation (rules/servers.toml)
                     r"nginx\.org|docs\.haproxy\.org|redis\.io|raw\.githubusercontent\.com/redis|ninenines\.eu)/")
SECTIONS = {"file descriptors and processes", "per-process limits", "erlang", "accept path", "ports and TIME_WAIT",
            "orphans", "keepalive", "memory", "conntrack", "live sockets", "boot", "servers"}


def invoke(*args):
    r = runner.invoke(app, list(args))
    assert r.exit_code == 0, r.output
    return r.output


# -- the knowledge base as a whole -----------------------------------------------------------------
def test_at_least_35_rules_across_every_section():
    rules = book().rules.values()
    assert len(rules) >= 35
    assert {r.section for r in rules} == SECTIONS
    counts = {s: sum(r.section == s for r in rules) for s in SECTIONS}
    assert all(n >= 2 for s, n in counts.items() if s != "erlang"), counts


@pytest.mark.parametrize("rule_id", sorted(book().rules))
def test_every_rule_is_cited_and_explained_in_one_sentence(rule_id):
    r = book().rules[rule_id]
    assert r.refs and all(x.strip() for x in r.refs)
    assert PRIMARY.match(r.refs[0]), f"{rule_id}: first ref is not a primary source: {r.refs[0]}"
    assert r.rationale.endswith(".") and len(r.rationale) <= 400
    assert r.rationale.count(". ") == 0, f"{rule_id}: rationale should be one sentence"
    assert r.scope in (Scope.NETNS, Scope.HOST, Scope.PROCESS, Scope.LISTENER)


def test_scopes_follow_the_kernel():
    by_key = {r.fact: r.scope for r in book().rules.values()}
    for key in ("fs.file-max", "fs.nr_open", "net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans",
                "net.core.netdev_max_backlog", "kernel.threads-max", "net.netfilter.nf_conntrack_max"):
        assert by_key[key] is Scope.HOST, key
    for key in ("net.core.somaxconn", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_tw_reuse",
                "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_rmem", "net.ipv4.tcp_keepalive_time"):
        assert by_key[key] is Scope.NETNS, key


def test_fix_specs_where_a_setting_fixes_it():
    no_fix = {r.id for r in book().rules.values() if r.fix is None}
    # observations, cross-checks an operator resolves by choice, and the memory of the host itself
    assert no_fix <= {"FD-FILE-NR-HEADROOM", "CT-COUNT-HEADROOM", "PROC-FD-USAGE", "BEAM-MAX-PORTS", "BEAM-PORTS-WITHIN-NOFILE",
                      "BEAM-MAX-PROCESSES", "NET-TCP-MEM-RAM", "NET-TCP-MEM-ORDER", "NET-TCP-RMEM-ORDER",
                      "NET-TCP-WMEM-ORDER", "MEM-LOAD-FITS-RAM", "NET-RESERVED-PORTS", "NET-KEEPALIVE-DEAD-PEER",
                      # cgroup limits: TasksMax=/MemoryMax= drop-ins are not rendered by `fix` yet
                      "PROC-CGROUP-PIDS-MAX", "PROC-CGROUP-MEMORY-MAX", "MEM-KERNEL-SOCKETS"} \
        | {r.id for r in book().rules.values() if r.section == "live sockets"} \
        | {r.id for r in book().rules.values() if r.section == "boot"} \
        | {r.id for r in book().rules.values() if r.section == "servers"}
    # boot: fixed by moving a line, not by a value; servers: their own files (tuneup.fixes.servers)


# -- profiles ---------------------------------------------------------------------------------------
def test_profile_inheritance():
    b = book()
    ids = {p: {r.id for r in b.rules_for(p)} for p in b.profile_defs}
    assert ids["baseline"] < ids["web"] < ids["proxy"]
    assert ids["web"] < ids["websocket"] < ids["erlang"]     # BEAM servers hold long-lived, idle connections
    assert "NET-TW-REUSE" in ids["proxy"] and "NET-TW-REUSE" not in ids["websocket"]
    assert "NET-KEEPALIVE-TIME" in ids["websocket"] and "NET-KEEPALIVE-TIME" in ids["erlang"]
    assert {"PROC-NOFILE-TOO-HIGH", "BEAM-MAX-PORTS"} <= ids["erlang"] - ids["web"]
    assert "FD-FILE-MAX" not in ids["baseline"]          # sized rules need a target load


def test_parameters_inherit_and_override():
    b = book()
    proxy = b.profile("proxy")
    assert proxy.params["fds_per_connection"] == 2 and proxy.params["connections"] == 100000
    ws = b.profile("websocket", {"connections": 2_000_000})
    # rates derive from the connections and the profile's time constants
    assert ws.params["connections"] == 2_000_000 and ws.params["close_rate_per_s"] == 556   # 2M / 3600 s
    assert ws.params["accept_rate_per_s"] == 33334                                         # 2M / 60 s
    assert b.profile("web", {"connections": 10_000}).params["close_rate_per_s"] == 134     # 10K / 75 s
    assert b.profile("web", {"close_rate_per_s": 7}).params["close_rate_per_s"] == 7       # --set wins
    assert b.profile("erlang").params["tcp_buffer_bytes_per_connection"] == 4096   # websocket's
    for name in b.params:
        assert re.search(r"(connections|_s|_ms|_bytes|_pct|_per_s|_fds|_per_connection|_destinations)$", name), name


def test_set_overrides_reach_the_audit_through_the_cli(tmp_path):
    from rule_helpers import DATA_DIR
    snap = str(DATA_DIR / "debian12-stock.json")
    out = json.loads(invoke("audit", "--snapshot", snap, "-p", "proxy", "-f", "json", "--fail-on", "never",
                            "--set", "connections=1_000_000", "--set", "upstream_destinations=1"))
    assert out["params"]["connections"] == 1_000_000 and out["params"]["fds_per_connection"] == 2
    f = {x["rule"]: x for x in out["findings"]}
    assert f["FD-NR-OPEN"]["expected"] == ">= 2204096"
    assert f["NET-PORT-RANGE-SPAN"]["status"] == "fail" and "Even the widest range" in f["NET-PORT-RANGE-SPAN"]["message"]
    r = runner.invoke(app, ["audit", "--snapshot", snap, "--set", "conections=5"])
    assert r.exit_code != 0


def test_profiles_command_lists_parameters():
    text = invoke("profiles")
    for name in ("baseline", "web", "proxy", "websocket", "erlang"):
        assert name in text
    # each profile shows what it changes; the parameter list shows every default
    assert "connections = 100,000:" in text and "fds_per_connection=2" in text and "app_keepalive_s = " in text
    data = json.loads(invoke("profiles", "-f", "json"))
    assert data["params"]["bytes_per_connection"]["default"] == 45000
    assert {p["name"]: p["extends"] for p in data["profiles"]}["erlang"] == "websocket"
    assert "derives: close_rate_per_s=1,334, accept_rate_per_s=1,667" in text and "close_rate_per_s=28" in text


# -- rules list / show / docs ------------------------------------------------------------------------
def test_rules_list_json_contract_and_profile_filter():
    items = json.loads(invoke("rules", "list", "-f", "json"))
    assert len(items) == len(book().rules)
    for i in items:
        assert {"id", "title", "severity", "key", "scope", "rationale", "refs", "profiles"} <= set(i)
        assert i["refs"] and i["profiles"]
    ws = {i["id"] for i in json.loads(invoke("rules", "list", "-p", "websocket", "-f", "json"))}
    assert "NET-KEEPALIVE-TIME" in ws and "NET-TW-REUSE" not in ws
    assert "NET-SOMAXCONN" in invoke("rules", "list", "-p", "web")


def test_rules_show_evaluates_the_threshold_for_the_parameters():
    text = invoke("rules", "show", "proc-nofile-soft", "-p", "proxy", "--set", "connections=1000000")
    assert "for proxy: >= 2204096" in text and "connections=1000000" in text and "fds_per_connection=2" in text
    assert "select()" in text and "refs:" in text and "systemd LimitNOFILE" in text
    text = invoke("rules", "show", "NET-SYN-BACKLOG")
    assert "depends on the audited host (reads net.core.somaxconn)" in text and "applies when" in text
    text = invoke("rules", "show", "NET-TW-RECYCLE")
    assert "when absent: pass (net.ipv4.tcp_tw_recycle was removed in Linux 4.12)" in text


def test_docs_rules_md_is_generated_from_the_rules():
    current = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    assert current == invoke("rules", "list", "--format", "markdown"), \
        "docs/rules.md is stale: run `python -m tuneup rules list --format markdown > docs/rules.md`"
    for rid in book().rules:
        assert f"### {rid}:" in current


# -- engine and loader extensions --------------------------------------------------------------------
def _rule(**kw) -> Rule:
    base = dict(id="T-HINT", title="t", severity=Severity.WARNING, fact="rlimit.nofile.soft", op=">=",
                expected="100000", scope=Scope.PROCESS, rationale="r.", refs=("ref",))
    return Rule(**{**base, **kw})


def test_hints_only_on_failure_and_only_when_their_condition_holds():
    r = _rule(scope=Scope.HOST,
              hints=(Hint("raise it yourself from {value} to {expected}", "fact('rlimit.nofile.hard') >= expected"),
                     Hint("always"), Hint("never", "value > 10**9"),
                     Hint("needs a missing fact", "fact('nosuch') > 0")))
    (f,) = evaluate([r], snapshot({"rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 524288}), {})
    assert f.status is Status.FAIL
    assert f.message.endswith(". raise it yourself from 1024 to 100000 always")
    (f,) = evaluate([r], snapshot({"rlimit.nofile.soft": 1024, "rlimit.nofile.hard": 4096}), {})
    assert f.message.endswith(". always")
    (f,) = evaluate([r], snapshot({"rlimit.nofile.soft": 200000, "rlimit.nofile.hard": 524288}), {})
    assert f.status is Status.PASS and "always" not in f.message


def test_host_facts_come_from_the_host_identity():
    r = _rule(fact="host.ram_bytes", expected="2 * 2**30", scope=Scope.HOST)
    (f,) = evaluate([r], snapshot(host={"mem_total_bytes": 2**30}), {})
    assert f.status is Status.FAIL and f.actual == 2**30 and "host identity" in f.source
    (f,) = evaluate([r], snapshot({"host.ram_bytes": 4 * 2**30}, host={"mem_total_bytes": 2**30}), {})
    assert f.status is Status.PASS          # a collected fact wins over the identity
    (f,) = evaluate([r], snapshot(host={"mem_total_bytes": None}), {})
    assert f.status is Status.UNKNOWN


@pytest.mark.parametrize("hints, msg", [
    ("hints = \"text\"", "hints must be a list"),
    ("hints = [{ when = \"value > 1\" }]", "each hint needs a text"),
    ("hints = [{ text = \"t\", extra = 1 }]", "each hint needs a text"),
    ("hints = [{ text = \"t\", when = \"nosuch > 1\" }]", "hints[0].when uses unknown name(s) nosuch"),
    ("hints = [{ text = \"t\", when = \"value >\" }]", "hints[0].when"),
])
def test_bad_hints_fail_the_load_with_file_and_line(tmp_path, hints, msg):
    (tmp_path / "x.toml").write_text(textwrap.dedent(f'''
        [[rule]]
        id = "USER-HINT"
        title = "t"
        severity = "info"
        fact = "net.core.somaxconn"
        op = ">="
        expected = "1"
        scope = "netns"
        rationale = "r"
        refs = ["https://docs.kernel.org/"]
        {hints}
        '''))
    with pytest.raises(RuleFileError, match=re.escape(msg)) as info:
        loader.load([tmp_path])
    assert "x.toml:3" in str(info.value)


def test_fact_keys_include_what_hints_read():
    assert "fs.nr_open" in book().fact_keys() and "rlimit.nofile.hard" in book().fact_keys()
