"""The 1,000-host fleet HTML report in a real browser: Debian's chromium, headless, renders it
from a file (no network: the page is self-contained), and its DOM and screenshot are checked.

Skipped when chromium is not installed (.ci/apt-packages lists it)."""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest
from fleet_samples import cli
from fleet_scale_samples import make_fleet

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTH, HEIGHT = 1280, 1600


def chromium(*args: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="tuneup-chromium-") as profile:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_thousand_host_report_renders_with_its_heatmap(tmp_path):
    fleet = make_fleet(tmp_path / "fleet", 1000)
    page = tmp_path / "fleet.html"
    res = cli(["audit", "--snapshot", str(fleet), "-f", "html", "-o", str(page), "--fail-on", "never"])
    assert res.exit_code == 0
    size = page.stat().st_size
    assert 100_000 < size < 3_000_000, size          # bounded: hosts per rule folded, passes left out
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html and 'id="tuneup-heatmap"' in html
    heat = html[html.index('id="tuneup-heatmap"'):html.index("</svg>")]
    assert heat.count("<rect") > 10 and 'fill="#c81e1e"' in heat        # critical failures drawn
    assert "fleet audit of 1000 hosts" in html
    shot = tmp_path / "fleet.png"
    res = chromium(f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars", page.as_uri())
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    assert png_size(shot) == (WIDTH, HEIGHT)
    assert shot.stat().st_size > 20_000               # not a blank page
