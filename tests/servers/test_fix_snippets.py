"""`tuneup fix` renders the servers' own settings as snippets to review: printed, or written under
review/ of --out-dir, never part of apply.sh, and the rendered values satisfy the rules again."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tuneup import engine
from tuneup.facts.servers import nginx, redis
from tuneup.fixes import servers as server_fixes
from tuneup.model import Report, Snapshot, Status
from tuneup.rulebook import loader

from .conftest import tuneup_cmd


def _stock_nginx(tmp_path: Path) -> Path:
    conf = tmp_path / "nginx.conf"
    conf.write_text("worker_processes 2;\nevents {\n    worker_connections 768;\n}\n"
                    "http {\n  keepalive_timeout 65;\n  server { listen 80; location / { proxy_pass http://u; } }\n}\n")
    return conf


def _audit(snap: Snapshot, params: dict) -> Report:
    book = loader.load()
    prof = book.profile("web", params)
    return engine.build_report(book.rules_for("web"), snap, "web", prof.params)


def test_rendered_values_pass_the_rules(tmp_path):
    conf = _stock_nginx(tmp_path)
    rconf = tmp_path / "redis.conf"
    rconf.write_text("maxclients 1000\ntcp-keepalive 0\n")
    facts = {**nginx.offline(conf, 2), **redis.offline(rconf)}
    snap = Snapshot(host={"cpus": 2, "hostname": "h\nx"}, facts=facts)
    params = {"connections": 20000}
    report = _audit(snap, params)
    failing = {f.rule for f in report.findings if f.status is Status.FAIL}
    assert {"NGINX-CONNECTIONS", "REDIS-MAXCLIENTS", "REDIS-KEEPALIVE"} <= failing
    changes = server_fixes.plan(report, snap, _audit(snap, params).params)
    wc = next(c.value for c in changes if c.setting == "worker_connections")
    # proxy: 2 connections per client over 2 workers, the listener, the master channel, 1/16 kept free
    assert wc - wc // 16 - 2 >= 20000 and (wc - 1) - (wc - 1) // 16 - 2 < 20000
    # put the values into the facts as the server would read them: the rules pass
    conf.write_text(conf.read_text().replace("worker_connections 768", f"worker_connections {wc}"))
    rconf.write_text("".join(f"{c.setting} {c.value}\n" for c in changes if c.file == "redis"))
    snap2 = Snapshot(host={"cpus": 2}, facts={**nginx.offline(conf, 2), **redis.offline(rconf)})
    again = {f.rule: f.status for f in _audit(snap2, params).findings}
    assert again["NGINX-CONNECTIONS"] is Status.PASS
    assert again["REDIS-MAXCLIENTS"] is Status.PASS and again["REDIS-KEEPALIVE"] is Status.PASS
    files = server_fixes.render(changes, "h\nx", "web")
    assert set(files) == {"review/nginx-tuneup.conf", "review/redis-tuneup.conf"}
    assert f"# events {{ worker_connections {wc}; }}" in files["review/nginx-tuneup.conf"]
    assert "maxclients 20000\n" in files["review/redis-tuneup.conf"]
    assert all("h x" in t and "h\nx" not in t for t in files.values())


def test_fix_cli_writes_review_snippets_apart_from_apply(tmp_path):
    conf = _stock_nginx(tmp_path)
    out = tmp_path / "out"
    (tmp_path / "empty-root").mkdir()
    r = subprocess.run([*tuneup_cmd(), "fix", "--app-config", f"nginx={conf}", "--set", "connections=20000",
                        "--root", str(tmp_path / "empty-root"), "--out-dir", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "server snippet(s) to review, never applied by tuneup" in r.stdout
    snippet = out / "review" / "nginx-tuneup.conf"
    assert "worker_rlimit_nofile" in snippet.read_text()
    apply_sh = out / "apply.sh"
    assert not apply_sh.exists() or "review/" not in apply_sh.read_text()
    assert conf.read_text().count("worker_connections 768") == 1        # the server's file is untouched


def test_one_line_per_setting(tmp_path):
    """Two rules asking for Redis's tcp-backlog (within somaxconn, and big enough for a storm)
    give one line, the larger value, naming both rules."""
    rconf = tmp_path / "redis.conf"
    rconf.write_text("tcp-backlog 511\n")
    facts = dict(redis.offline(rconf))
    from tuneup.model import Fact

    facts["net.core.somaxconn"] = Fact("net.core.somaxconn", 128, "test")
    snap = Snapshot(host={"cpus": 2}, facts=facts)
    report = _audit(snap, {"connections": 1000, "accept_rate_per_s": 10000})   # 10K/s x 0.5 s = 5000
    changes = [c for c in server_fixes.plan(report, snap, report.params) if c.setting == "tcp-backlog"]
    assert len(changes) == 1 and changes[0].value == 5000
    assert set(changes[0].rule.split(", ")) == {"REDIS-BACKLOG-SOMAXCONN", "REDIS-BACKLOG-STORM"}
