"""The kernel-defaults model against this machine's kernel.

A fresh network namespace starts with every per-namespace key at its kernel default, so the model
for this kernel version, this RAM (MemTotal) and these CPUs must reproduce each one it models
exactly; host-global keys are compared where no sysctl.d file on this machine sets them and
nothing has changed them since boot is assumed only for those (estimated ones: within 1%).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tuneup import kdefaults
from tuneup.facts import configfiles as cf
from tuneup.facts.host import kernel_tuple
from tuneup.facts.sysctl import parse_value

NETNS_PREFIXES = ("net.ipv4.", "net.core.somaxconn", "net.netfilter.")


def _memtotal() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def _model():
    return kdefaults.kernel_defaults(kernel_tuple(os.uname().release), _memtotal(), os.cpu_count())


@pytest.fixture(scope="module")
def fresh_netns_values():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    name = f"tuneup-kd-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        out = {}
        for key in _model():
            r = subprocess.run(["ip", "netns", "exec", name, "cat", "/proc/sys/" + key.replace(".", "/")],
                               capture_output=True, text=True)
            if r.returncode == 0:
                out[key] = parse_value(r.stdout.strip())
        return out
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_per_namespace_defaults_are_reproduced_exactly(fresh_netns_values):
    model = _model()
    per_ns = {k: v for k, v in fresh_netns_values.items() if k.startswith(NETNS_PREFIXES) and k in model
              and k not in ("net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans")}   # host-global, visible in the netns
    assert len(per_ns) >= 15
    wrong = {k: (v, model[k].value) for k, v in per_ns.items() if model[k].exact and model[k].value != v}
    assert not wrong, wrong
    matched = sum(1 for k, v in per_ns.items() if model[k].value == v)
    print(f"\nper-namespace keys matched exactly: {matched} of {len(per_ns)}")


def test_host_global_defaults_no_file_sets(fresh_netns_values):
    model = _model()
    set_by_files = set(cf.boot_sysctl(Path("/"), set(model)))
    host_keys = {k: d for k, d in model.items() if not k.startswith(NETNS_PREFIXES) or k in
                 ("net.ipv4.tcp_mem", "net.ipv4.tcp_max_orphans")}
    compared = 0
    for k, d in host_keys.items():
        if k in set_by_files:
            continue
        live = parse_value(Path("/proc/sys/" + k.replace(".", "/")).read_text().strip())
        compared += 1
        if d.exact:
            assert live == d.value, (k, live, d.value)
        else:
            got = d.value if isinstance(d.value, tuple) else (d.value,)
            want = live if isinstance(live, tuple) else (live,)
            for a, b in zip(got, want):
                assert abs(a - b) <= 0.01 * b, (k, live, d.value)
    assert compared >= 5
