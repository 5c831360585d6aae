"""Fleet audits (repeated --snapshot, directories, globs) and `tuneup diff`."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest
from fleet_samples import REPO, cli, main, snap, write


@pytest.fixture
def fleet_dir(tmp_path):
    d = tmp_path / "snaps"
    write(d / "web-1.json", snap("web-1"))
    write(d / "web-2.json", snap("web-2", net__core__somaxconn=128))
    write(d / "db-1.json", snap("db-1", net__core__somaxconn=128, **{"fs.file-max": 1000}))
    write(d / "db-2.json", snap("db-2", net__core__somaxconn=256))   # below a 100K reconnect storm's need
    (d / "notes.txt").write_text("not a snapshot")
    return d


def test_fleet_json_from_a_directory(fleet_dir):
    res = cli(["audit", "--snapshot", str(fleet_dir), "-f", "json"])
    assert res.exit_code == 1
    data = json.loads(res.stdout)
    assert data["schema"] == "tuneup.fleet/1"
    assert sorted(h["host"]["hostname"] for h in data["hosts"]) == ["db-1", "db-2", "web-1", "web-2"]
    assert all(h["schema"] == "tuneup.report/1" and h["findings"] for h in data["hosts"])
    rules = {r["rule"]: r for r in data["summary"]["rules"]}
    assert rules["NET-SOMAXCONN"]["hosts_failing"] == 3
    assert sorted(rules["NET-SOMAXCONN"]["hosts"]) == ["db-1", "db-2", "web-2"]
    assert rules["FD-FILE-MAX"]["hosts"] == ["db-1"]
    order = [(-["info", "warning", "critical"].index(r["severity"]), -r["hosts_failing"])
             for r in data["summary"]["rules"]]
    assert order == sorted(order)       # most severe first (a critical on one host above warnings on three)
    assert data["summary"]["rules"][0]["rule"] == "FD-FILE-MAX"
    assert data["summary"]["hosts"] == 4 and data["summary"]["failing_hosts"] == 3


def test_fleet_repeated_option_and_glob(fleet_dir):
    res = cli(["audit", "--snapshot", str(fleet_dir / "web-*.json"), "--snapshot", str(fleet_dir / "db-2.json"),
               "-f", "json"])
    data = json.loads(res.stdout)
    assert [h["host"]["hostname"] for h in data["hosts"]] == ["web-1", "web-2", "db-2"]
    one = cli(["audit", "--snapshot", str(fleet_dir / "web-1*.json"), "-f", "json"])
    assert json.loads(one.stdout)["schema"] == "tuneup.fleet/1"             # a glob means a fleet
    assert one.exit_code == 0
    single = cli(["audit", "--snapshot", str(fleet_dir / "web-1.json"), "-f", "json"])
    assert json.loads(single.stdout)["schema"] == "tuneup.report/1"          # one file: the plain report


def test_fleet_table_markdown_html_show_the_fleet_view(fleet_dir):
    table = cli(["audit", "--snapshot", str(fleet_dir)]).stdout
    assert "tuneup fleet audit of 4 hosts" in table and "3 of 4 hosts failing" in table
    assert "NET-SOMAXCONN" in table and "3/4" in table
    md = cli(["audit", "--snapshot", str(fleet_dir), "-f", "markdown"]).stdout
    assert md.startswith("## tuneup fleet audit: 3 of 4 hosts failing") and "| 3/4 |" in md
    html = cli(["audit", "--snapshot", str(fleet_dir), "-f", "html"]).stdout
    assert "Fleet: 3 of 4 hosts failing" in html


def test_fleet_waivers_apply_per_host(fleet_dir, tmp_path):
    w = tmp_path / "w.toml"
    w.write_text(f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "db tier"\nexpires = {dt.date.today()}\nhosts = "db-*"\n')
    data = json.loads(cli(["audit", "--snapshot", str(fleet_dir), "-f", "json", "--waivers", str(w)]).stdout)
    rules = {r["rule"]: r for r in data["summary"]["rules"]}
    assert rules["NET-SOMAXCONN"]["hosts"] == ["web-2"]


def test_fleet_errors_name_the_file(fleet_dir, tmp_path, capsys):
    (fleet_dir / "broken.json").write_text("{")
    code, _, err = main(["audit", "--snapshot", str(fleet_dir)], capsys)
    assert code == 2 and "broken.json:1" in err
    code, _, err = main(["audit", "--snapshot", str(tmp_path / "nothing-*.json")], capsys)
    assert code == 2 and "pattern matches no files" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = main(["audit", "--snapshot", str(empty)], capsys)
    assert code == 2 and "no *.json snapshots" in err


def test_duplicate_hostnames_are_told_apart(tmp_path):
    a = write(tmp_path / "a.json", snap("same", net__core__somaxconn=128))
    b = write(tmp_path / "b.json", snap("same"))
    data = json.loads(cli(["audit", "--snapshot", str(a), "--snapshot", str(b), "-f", "json"]).stdout)
    [rule] = [r for r in data["summary"]["rules"] if r["rule"] == "NET-SOMAXCONN"]
    assert rule["hosts"] == [f"same ({a})"]


def test_progress_bar_only_on_a_terminal(monkeypatch):
    from tuneup import cli as climod

    assert climod._progress(1000) is None                     # pytest's stderr is no terminal

    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass
    tty = Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert climod._progress(5) is None                        # few snapshots: no bar
    show = climod._progress(200)
    for i in range(1, 201):
        show(i, 200)
    assert "200/200" in tty.text and "\r" in tty.text and tty.text.endswith("\x1b[K")


# -- diff ------------------------------------------------------------------------------------
def test_diff_two_snapshots(tmp_path):
    a = write(tmp_path / "a.json", snap("web-1", net__core__somaxconn=128))
    b = write(tmp_path / "b.json", snap("web-1", net__ipv4__tcp_fin_timeout=30))
    res = cli(["diff", str(a), str(b), "-f", "json"])
    assert res.exit_code == 1
    d = json.loads(res.stdout)
    assert d["schema"] == "tuneup.diff/1" and d["identical"] is False
    facts = {f["key"]: f for f in d["facts"]}
    assert set(facts) == {"net.core.somaxconn", "net.ipv4.tcp_fin_timeout"}
    assert (facts["net.core.somaxconn"]["a"], facts["net.core.somaxconn"]["b"]) == (128, 65535)
    findings = {f["rule"]: f for f in d["findings"]}
    assert findings["NET-SOMAXCONN"]["a"]["status"] == "fail" and findings["NET-SOMAXCONN"]["b"]["status"] == "pass"
    assert "NET-FIN-TIMEOUT" in findings                      # same status, different value
    text = cli(["diff", str(a), str(b)]).stdout
    assert "Facts that differ (2)" in text and "NET-SOMAXCONN" in text
    md = cli(["diff", str(a), str(b), "-f", "markdown"]).stdout
    assert md.startswith("## tuneup diff") and "| `net.core.somaxconn` | `128` | `65535` |" in md


def test_diff_identical_exits_0_and_reports_missing_keys(tmp_path):
    a = write(tmp_path / "a.json", snap("web-1"))
    res = cli(["diff", str(a), str(a)])
    assert res.exit_code == 0 and "No differences" in res.stdout
    s = snap("web-1")
    del s.facts["net.ipv4.tcp_tw_reuse"]
    b = write(tmp_path / "b.json", s)
    d = json.loads(cli(["diff", str(a), str(b), "-f", "json"]).stdout)
    assert d["facts"] == [{"key": "net.ipv4.tcp_tw_reuse", "a": 2, "b": None, "a_error": None, "b_error": None,
                           "a_present": True, "b_present": False}]


def test_diff_against_the_live_host_and_bad_input(tmp_path, capsys):
    a = write(tmp_path / "a.json", snap("web-1"))
    out = subprocess.run([sys.executable, "-m", "tuneup", "diff", str(a), "-f", "json"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    d = json.loads(out.stdout)
    assert d["b"] == "live host" and d["facts"]                # a real host differs from the sample
    code, _, err = main(["diff", str(a), str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "missing.json: no such file" in err
    code, _, err = main(["diff", str(a), str(a), "-f", "xml"], capsys)
    assert code == 2 and "--format" in err


def test_rules_are_loaded_once_per_fleet_run(tmp_path, monkeypatch):
    from tuneup.rulebook import loader

    for i in range(30):
        write(tmp_path / "f" / f"h{i}.json", snap(f"h{i}"))
    calls = []
    real = loader.load
    monkeypatch.setattr(loader, "load", lambda *a, **k: calls.append(1) or real(*a, **k))
    res = cli(["audit", "--snapshot", str(tmp_path / "f"), "-f", "json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)["hosts"]) == 30
    assert len(calls) == 1
