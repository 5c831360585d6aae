"""The capacity model on in-memory snapshots: each limit's arithmetic, binding, skips, rendering."""

from __future__ import annotations

import json

import pytest

from tuneup import capacity
from tuneup.formats.capacity import CapacityFormat, capacity_dict, render_capacity
from tuneup.model import RLIM_INFINITY, Fact, Snapshot

HOST = {"hostname": "h", "kernel": "6.1.0", "netns": "initial", "page_size": 4096, "mem_total_bytes": 2**34}
PARAMS = {"connections": 100000, "fds_per_connection": 1, "tcp_buffer_bytes_per_connection": 16384,
          "bytes_per_connection": 45000, "outbound_per_connection": 0, "upstream_destinations": 4}


def snap(values: dict, host: dict | None = None, processes: list | None = None, errors: dict | None = None) -> Snapshot:
    facts = {k: Fact(k, v, f"test:{k}") for k, v in values.items()}
    for k, e in (errors or {}).items():
        facts[k] = Fact(k, None, f"test:{k}", error=e)
    return Snapshot(host={**HOST, **(host or {})}, facts=facts, processes=processes or [], origin="test")


BASE = {
    "rlimit.nofile.soft": 3000, "rlimit.nofile.hard": 3000, "self.fds": 5, "self.cap_sys_admin": 0,
    "fs.nr_open": 1048576, "fs.file-max": 2_000_000, "fs.file-nr": (1000, 0, 2_000_000),
    "net.netfilter.nf_conntrack_max": 262144, "net.netfilter.nf_conntrack_count": 144,
    "net.ipv4.tcp_mem": (100, 200, 300000), "sockstat.tcp.mem": 1000, "mem.available_bytes": 45000 * 500000,
    "net.ipv4.ip_local_port_range": (32768, 60999), "net.ipv4.ip_local_reserved_ports": "",
    "tcp.listen_ports": (22, 40000), "tcp.busiest_destination": "10.0.0.5:5432",
    "tcp.busiest_destination.ports": 232,
}


def by_name(cap: capacity.Capacity) -> dict[str, capacity.Limit]:
    return {x.name: x for x in cap.limits + cap.outbound}


def test_each_ceiling_and_the_binding_one():
    cap = capacity.model(snap(BASE), PARAMS)
    lim = by_name(cap)
    assert lim["nofile"].ceiling == 3000 - 5
    assert lim["nr_open"].ceiling == 1048576 - 5
    assert lim["file-max"].ceiling == 2_000_000 - 1000
    assert lim["conntrack"].ceiling == 262144 - 144
    assert lim["tcp_mem"].ceiling == (300000 - 1000) * 4096 // 16384
    assert lim["memory"].ceiling == 500000
    # 28232 ports - listener 40000 inside the range - 232 toward the busiest destination
    assert lim["ports"].ceiling == 28232 - 1 - 232 and lim["ports"].direction == "outbound"
    assert "10.0.0.5:5432" in lim["ports"].detail
    assert cap.binding.name == "nofile" and cap.binding.ceiling == 2995
    assert [x.ceiling for x in cap.limits] == sorted(x.ceiling for x in cap.limits)
    assert "ports" not in {x.name for x in cap.limits}          # outbound kept apart
    assert cap.outbound_binding.name == "ports"
    assert "LimitNOFILE" in cap.binding.hint and "110005" in cap.binding.hint   # the audit's need plus its 10% headroom


def test_fds_per_connection_divides_fd_ceilings():
    cap = capacity.model(snap(BASE), {**PARAMS, "fds_per_connection": 2})
    lim = by_name(cap)
    assert lim["nofile"].ceiling == (3000 - 5) // 2
    assert lim["file-max"].ceiling == (2_000_000 - 1000) // 2


def test_a_process_target_uses_its_limits_and_open_fds_and_erlang_ports():
    values = {**BASE, "proc.77.rlimit.nofile.soft": 65536, "proc.77.rlimit.nofile.hard": 65536,
              "proc.77.fds": 536, "proc.77.beam.max_ports": 16384, "proc.77.cap_sys_admin": 0}
    cap = capacity.model(snap(values, processes=[{"pid": 77, "name": "beam.smp"}]), PARAMS, pid=77)
    lim = by_name(cap)
    assert lim["nofile"].ceiling == 65000
    assert lim["erlang.max_ports"].ceiling == 16384
    assert cap.binding.name == "erlang.max_ports" and "+Q" in cap.binding.hint
    assert cap.target == "pid 77 (beam.smp)"


def test_missing_and_host_global_facts_are_skipped_with_reasons():
    values = {**BASE, "net.netfilter.nf_conntrack_max": None, "net.ipv4.tcp_mem": None}
    cap = capacity.model(snap(values, host={"netns": "child"}, errors={"fs.nr_open": "permission denied"}), PARAMS)
    skipped = {s.name: s.reason for s in cap.skipped}
    assert "not loaded" in skipped["conntrack"]
    assert "host-global" in skipped["tcp_mem"]
    assert "permission denied" in skipped["nr_open"]
    assert {"conntrack", "tcp_mem", "nr_open"}.isdisjoint(x.name for x in cap.limits)


def test_unlimited_nofile_is_skipped_not_binding():
    cap = capacity.model(snap({**BASE, "rlimit.nofile.soft": RLIM_INFINITY}), PARAMS)
    assert "nofile" in {s.name for s in cap.skipped}
    assert cap.binding.name != "nofile"


def test_cap_sys_admin_is_noted_on_file_max():
    cap = capacity.model(snap({**BASE, "self.cap_sys_admin": 1}), PARAMS)
    assert "CAP_SYS_ADMIN" in by_name(cap)["file-max"].detail


def test_memory_falls_back_to_total_memory():
    values = dict(BASE)
    del values["mem.available_bytes"]
    cap = capacity.model(snap(values), PARAMS)
    assert by_name(cap)["memory"].ceiling == 2**34 // 45000


@pytest.mark.parametrize("reserved,expected", [
    ("", 0), (None, 0), (8080, 0), (40000, 1), ("40000-40009", 10), ("30000-32770,40000,61000-62000", 4),
    ("40000-40009, 40005-40006", 10),
])
def test_reserved_ports_inside_the_range(reserved, expected):
    assert capacity.reserved_in_range(reserved, 32768, 60999) == expected


def test_reserved_ports_and_listeners_are_not_counted_twice():
    lim = capacity.ports_limit((40000, 40999), "40000-40099", (40050, 40500, 8080), 0, "t", "x")
    assert lim.ceiling == 1000 - 100 - 1     # 40050 is reserved already; 8080 is outside


def test_a_proxy_is_capped_inbound_by_upstream_ports():
    values = {**BASE, "rlimit.nofile.soft": 10**6, "tcp.listen_ports": ()}
    cap = capacity.model(snap(values), {**PARAMS, "outbound_per_connection": 1, "upstream_destinations": 2})
    lim = by_name(cap)
    assert lim["ports.upstream"].ceiling == 28232 * 2
    assert lim["ports.upstream"].direction == "inbound"


def test_probe_model_counts_both_sides_and_the_ports_toward_one_destination():
    values = {k: BASE[k] for k in ("fs.file-max", "fs.file-nr", "net.ipv4.ip_local_port_range",
                                   "net.ipv4.ip_local_reserved_ports")}
    values["tcp.listen_ports"] = (40999,)
    values["net.ipv4.ip_local_port_range"] = (40000, 40999)
    sit = capacity.ProbeSituation("127.0.0.1:40999", (capacity.Side("client", 3000, 9, "c"),
                                                      capacity.Side("listener", 3000, 5, "l")), in_use_toward=3)
    cap = capacity.probe_model(snap(values), sit)
    lim = by_name(cap)
    assert lim["nofile.client"].ceiling == 2991 and lim["nofile.listener"].ceiling == 2995
    assert lim["ports"].ceiling == 1000 - 1 - 3 and cap.binding.name == "ports"
    assert lim["file-max"].ceiling == (2_000_000 - 1000) // 2        # both ends hold an fd
    sit_admin = capacity.ProbeSituation("x", sit.sides, all_admin=True)
    assert "file-max" in {s.name for s in capacity.probe_model(snap(values), sit_admin).skipped}


def test_json_has_the_documented_keys():
    data = json.loads(render_capacity(capacity.model(snap(BASE), PARAMS), CapacityFormat.JSON))
    assert data["schema"] == "tuneup.capacity/1"
    assert data["binding"] == {"name": "nofile", "ceiling": 2995, "hint": data["binding"]["hint"]}
    assert all({"name", "ceiling", "source"} <= set(x) for x in data["limits"])
    assert data["outbound"]["binding"]["name"] == "ports"
    assert data == capacity_dict(capacity.model(snap(BASE), PARAMS)) | {}


@pytest.mark.parametrize("fmt", list(CapacityFormat))
def test_every_format_renders(fmt):
    text = render_capacity(capacity.model(snap(BASE), PARAMS), fmt)
    assert "nofile" in text and text.endswith("\n")


def test_the_advised_numbers_pass_the_audit():
    """What `capacity` tells the operator to set (RLIMIT_NOFILE, fs.nr_open, fs.file-max) is what
    the audit's rules ask for: set to the advised value, PROC-NOFILE-SOFT, FD-NR-OPEN and
    FD-FILE-MAX pass (they once advised 110,005 where the audit wanted 114,096)."""
    import re

    from tuneup import engine
    from tuneup.rulebook import loader

    book = loader.load()
    params = dict(book.profile("web", {"connections": 100000}).params)
    cap = capacity.model(snap({**BASE, "fs.nr_open": 1000, "fs.file-max": 1000}), params)
    lims = by_name(cap)
    advised = {name: int(re.search(r">= (\d+)", lims[name].hint).group(1)) for name in ("nofile", "nr_open", "file-max")}
    facts = {"self.rlimit.nofile.soft": advised["nofile"], "fs.nr_open": advised["nr_open"],
             "fs.file-max": advised["file-max"]}
    s = Snapshot(host={**HOST, "limits_of": "the server process"}, facts={
        **{k: Fact(k, v, "advised") for k, v in facts.items()},
        "rlimit.nofile.soft": Fact("rlimit.nofile.soft", advised["nofile"], "advised")}, origin="test")
    rules = [book.rules[r] for r in ("PROC-NOFILE-SOFT", "FD-NR-OPEN", "FD-FILE-MAX")]
    got = {f.rule: f.status.value for f in engine.evaluate(rules, s, params)}
    assert got == {"PROC-NOFILE-SOFT": "pass", "FD-NR-OPEN": "pass", "FD-FILE-MAX": "pass"}, (advised, got)
    assert advised["nofile"] >= 114096
