"""Waivers (live, expired, host globs, bad files) and tuneup.toml defaults."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from fleet_samples import cli, main, snap, write

from tuneup import run
from tuneup.model import Status
from tuneup.waivers import Waiver, WaiverError, apply, load

TODAY = dt.date.today()
FUTURE = TODAY + dt.timedelta(days=30)
PAST = TODAY - dt.timedelta(days=1)


@pytest.fixture
def bad_snap(tmp_path):
    return write(tmp_path / "db-1.json", snap("db-1", net__core__somaxconn=128))


def _findings(out: str) -> dict:
    return {f["rule"]: f for f in json.loads(out)["findings"]}


# -- the pure step ---------------------------------------------------------------------------
def test_apply_waives_live_and_keeps_expired_failing():
    report = run.plan("web", {}).audit(snap("db-1", net__core__somaxconn=128))
    live = apply(report, [Waiver("NET-SOMAXCONN", "redis passes 511 anyway", FUTURE, origin="w.toml:1")], TODAY)
    f = next(x for x in live.findings if x.rule == "NET-SOMAXCONN")
    assert f.status is Status.WAIVED and "redis passes 511 anyway" in f.message and f.waiver
    assert live.summary()["waived"] == 1 and live.summary()["fail"] == 0
    expired = apply(report, [Waiver("NET-SOMAXCONN", "old reason", PAST, origin="w.toml:1")], TODAY)
    f = next(x for x in expired.findings if x.rule == "NET-SOMAXCONN")
    assert f.status is Status.FAIL
    assert f"waiver expired on {PAST}" in f.message and "old reason" in f.message
    # the day of expiry itself is still covered
    same_day = apply(report, [Waiver("NET-SOMAXCONN", "r", TODAY)], TODAY)
    assert next(x for x in same_day.findings if x.rule == "NET-SOMAXCONN").status is Status.WAIVED


def test_apply_host_globs_and_passing_findings_untouched():
    report = run.plan("web", {}).audit(snap("web-7", net__core__somaxconn=128))
    other = apply(report, [Waiver("NET-SOMAXCONN", "r", FUTURE, hosts=("db-*",))], TODAY)
    assert other is report
    mine = apply(report, [Waiver("NET-*", "r", FUTURE, hosts=("db-*", "web-?"))], TODAY)
    statuses = {f.rule: f.status for f in mine.findings}
    assert statuses["NET-SOMAXCONN"] is Status.WAIVED
    assert statuses["NET-SYNCOOKIES"] is Status.PASS                # passes stay passes


# -- the CLI ---------------------------------------------------------------------------------
def test_cli_live_waiver_makes_the_run_pass(tmp_path, bad_snap):
    w = tmp_path / "waivers.toml"
    w.write_text(f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "redis hard-codes 511"\nexpires = {FUTURE}\n')
    plain = cli(["audit", "--snapshot", str(bad_snap), "-f", "json"])
    assert plain.exit_code == 1
    res = cli(["audit", "--snapshot", str(bad_snap), "-f", "json", "--waivers", str(w)])
    assert res.exit_code == 0, res.output
    f = _findings(res.stdout)["NET-SOMAXCONN"]
    assert f["status"] == "waived" and "redis hard-codes 511" in f["waiver"]


def test_cli_expired_waiver_fails_and_says_so(tmp_path, bad_snap):
    w = tmp_path / "waivers.toml"
    w.write_text(f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "until the migration"\nexpires = "{PAST}"\n')
    res = cli(["audit", "--snapshot", str(bad_snap), "-f", "json", "--waivers", str(w)])
    assert res.exit_code == 1
    f = _findings(res.stdout)["NET-SOMAXCONN"]
    assert f["status"] == "fail" and f"waiver expired on {PAST}" in f["message"]


def test_cli_waiver_for_other_hosts_does_not_apply(tmp_path, bad_snap):
    w = tmp_path / "waivers.toml"
    w.write_text(f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "r"\nexpires = {FUTURE}\nhosts = ["web-*"]\n')
    assert cli(["audit", "--snapshot", str(bad_snap), "--waivers", str(w)]).exit_code == 1


@pytest.mark.parametrize("body, where, words", [
    ('[[waiver]]\nrule = "NET-SOMAXCONN"\nexpires = 2030-01-01\n', ":1", "missing field 'reason'"),
    ('# c\n\n[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "r"\nexpires = "someday"\n', ":3", "not a date"),
    ('[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "r"\nexpires = 2030-01-01\nhost = "x"\n', ":1", "unknown field"),
    ('[[waiver]]\nrule = "NET-SOMAXCON"\nreason = "r"\nexpires = 2030-01-01\n', ":1", "no such rule"),
    ('[[waiver]\nrule = 1\n', ":1", "invalid TOML"),
])
def test_cli_bad_waiver_file_is_one_line_exit_2(tmp_path, bad_snap, capsys, body, where, words):
    w = tmp_path / "waivers.toml"
    w.write_text(body)
    code, out, err = main(["audit", "--snapshot", str(bad_snap), "--waivers", str(w)], capsys)
    assert code == 2
    line = err.strip()
    assert "\n" not in line and "Traceback" not in err
    assert f"{w}{where}" in line and words in line


def test_missing_waiver_file(tmp_path, bad_snap, capsys):
    code, _, err = main(["audit", "--snapshot", str(bad_snap), "--waivers", str(tmp_path / "nope.toml")], capsys)
    assert code == 2 and "nope.toml: no such file" in err


def test_load_accepts_string_dates_and_single_host(tmp_path):
    w = tmp_path / "w.toml"
    w.write_text('[[waiver]]\nrule = "ct-max"\nreason = " spaced   out "\nexpires = "2030-01-02"\nhosts = "db-*"\n')
    [x] = load(w)
    assert (x.rule, x.reason, x.expires, x.hosts, x.origin) == ("CT-MAX", "spaced out", dt.date(2030, 1, 2),
                                                                ("db-*",), f"{w}:1")
    with pytest.raises(WaiverError):
        load(tmp_path / "missing.toml")


# -- tuneup.toml -----------------------------------------------------------------------------
def test_tuneup_toml_in_working_directory_sets_defaults(tmp_path, monkeypatch, bad_snap):
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "waivers.toml").write_text(
        f'[[waiver]]\nrule = "NET-SOMAXCONN"\nreason = "from the file"\nexpires = {FUTURE}\n')
    (tmp_path / "tuneup.toml").write_text(
        'profile = "proxy"\nfail_on = "critical"\nwaivers = "ops/waivers.toml"\n\n[params]\nconnections = 1000\n\n'
        f'[[waiver]]\nrule = "NET-SYN-BACKLOG"\nreason = "inline"\nexpires = {FUTURE}\n')
    monkeypatch.chdir(tmp_path)
    res = cli(["audit", "--snapshot", str(bad_snap), "-f", "json"])
    data = json.loads(res.stdout)
    assert data["profile"] == "proxy" and data["params"]["connections"] == 1000
    f = _findings(res.stdout)
    assert f["NET-SOMAXCONN"]["status"] == "waived" and "from the file" in f["NET-SOMAXCONN"]["waiver"]
    assert res.exit_code == 0
    # the command line wins over the file
    res = cli(["audit", "--snapshot", str(bad_snap), "-f", "json", "-p", "web", "--set", "connections=5"])
    data = json.loads(res.stdout)
    assert data["profile"] == "web" and data["params"]["connections"] == 5


def test_config_option_and_fail_on_from_file(tmp_path, bad_snap):
    cfg = tmp_path / "ci.toml"
    cfg.write_text('fail_on = "never"\n')
    assert cli(["audit", "--snapshot", str(bad_snap), "--config", str(cfg)]).exit_code == 0
    assert cli(["audit", "--snapshot", str(bad_snap), "--config", str(cfg), "--fail-on", "info"]).exit_code == 1


@pytest.mark.parametrize("body, words", [
    ('profil = "web"\n', "unknown key(s) profil"),
    ('fail_on = "sometimes"\n', "fail_on must be one of"),
    ('[params]\nconections = 5\n', "unknown parameter(s) conections"),
    ('waivers = "missing.toml"\n', "missing.toml: no such file"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, bad_snap, capsys, body, words):
    cfg = tmp_path / "tuneup.toml"
    cfg.write_text(body)
    code, _, err = main(["audit", "--snapshot", str(bad_snap), "--config", str(cfg)], capsys)
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert str(tmp_path) in err
