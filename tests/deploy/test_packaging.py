"""Packaging, for real: the distribution name, the licence, Python 3.9 syntax (vermin), and the
air-gapped install documented in docs/install.md (a wheelhouse, then `pip install --no-index
--find-links`) run with no network at all (a fresh, empty network namespace via `unshare -n`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tuneup.compat import tomllib

from .conftest import DIST, REPO, clean_copy, offline as _offline



def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def test_distribution_name_is_ours_and_not_the_index_tuneup():
    proj = _project()
    assert proj["name"] == DIST
    assert proj["scripts"] == {"tuneup": "tuneup.entry:main"}          # the command is unchanged
    assert proj["requires-python"] == ">=3.9"
    # every documented install names the distribution, a wheel or a clone, never "pip install tuneup"
    docs = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
            *sorted((REPO / "examples").rglob("*.yml")), *sorted((REPO / "examples").rglob("*.yaml")),
            *sorted((REPO / "examples").rglob("*.ini")), *sorted((REPO / "examples").rglob("*.md"))]
    for doc in docs:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            words = line.replace('"', " ").replace("'", " ").split()
            for i, w in enumerate(words[1:-1], 1):
                if words[i - 1].endswith(("pip", "pip3")) and w == "install" and words[i + 1] == "tuneup":
                    pytest.fail(f"{doc.relative_to(REPO)}:{n} installs the index's 'tuneup': {line.strip()}")
            assert not line.strip().startswith("tuneup_package: tuneup") or "-limits" in line, \
                f"{doc}:{n}"


def test_license_file_is_the_apache_2_text():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert _project()["license"] == "Apache-2.0"


def _vermin(*args: str) -> subprocess.CompletedProcess:
    pytest.importorskip("vermin", reason="vermin is in the test extra")
    # vermin has no __main__: call its console entry point with this interpreter
    return subprocess.run([sys.executable, "-c", "import sys; from vermin.main import main; sys.exit(main())", "-q", "--no-tips", "--violations", "-t=3.9-", *args],
                          capture_output=True, text=True, timeout=120)


def test_no_syntax_or_library_newer_than_3_9_in_tuneup():
    # --eval-annotations: cli.py's annotations are evaluated at run time by typer, so judge every
    # annotation as if it were (an `int | None` there would break 3.9).
    out = _vermin("--eval-annotations", str(REPO / "tuneup"))
    assert out.returncode == 0, out.stdout + out.stderr


def test_vermin_check_catches_3_10_code(tmp_path):
    bad = tmp_path / "bad.py"
    # parseable by every Python vermin may run on (a match statement is not, on 3.9)
    bad.write_text("import tomllib\n\ndef f(x):\n    return list(zip([1], [2], strict=True))\n")
    out = _vermin(str(bad))
    assert out.returncode != 0 and "3.10" in out.stdout and "3.11" in out.stdout, out.stdout


# --- the air-gapped install --------------------------------------------------------------------

def test_air_gapped_install_from_a_wheelhouse_and_offline_sdist_build(tmp_path, deps_wheelhouse):
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(deps_wheelhouse, wheelhouse)
    src = clean_copy(tmp_path / "src")
    py = sys.executable
    # 1. build the sdist offline: hatchling comes from the wheelhouse
    _offline([py, "-m", "venv", str(tmp_path / "build-venv")], tmp_path)
    bpy = str(tmp_path / "build-venv" / "bin" / "python")
    _offline([bpy, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse), "hatchling"], tmp_path)
    _offline([bpy, "-m", "hatchling", "build", "-t", "sdist", "-d", str(tmp_path / "dist")], src)
    sdists = list((tmp_path / "dist").glob("tuneup_limits-*.tar.gz"))
    assert len(sdists) == 1, list((tmp_path / "dist").iterdir())
    with tarfile.open(sdists[0]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for want in ("LICENSE", "README.md", "pyproject.toml", "examples/ansible/site.yml",
                 "examples/node_exporter/tuneup-textfile.service", "docs/install.md", "rules/profiles.toml"):
        assert want in names, want
    # 2. the sdist becomes a wheel offline (pip's isolated build finds hatchling in the wheelhouse)
    _offline([bpy, "-m", "pip", "wheel", "-q", "--no-index", "--find-links", str(wheelhouse), "--no-deps",
              "-w", str(wheelhouse), str(sdists[0])], tmp_path)
    wheels = list(wheelhouse.glob("tuneup_limits-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as whl:
        meta = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(meta).decode()
        assert "Name: tuneup-limits" in text and "Requires-Python: >=3.9" in text
        assert any(n.endswith("licenses/LICENSE") for n in whl.namelist())
        assert "tuneup/rules/profiles.toml" in whl.namelist()
    # 3. the host's step, exactly as documented: no index, only the wheelhouse
    _offline([py, "-m", "venv", str(tmp_path / "host-venv")], tmp_path)
    hbin = tmp_path / "host-venv" / "bin"
    _offline([str(hbin / "pip"), "install", "-q", "--no-index", "--find-links", str(wheelhouse), DIST], tmp_path)
    rules = json.loads(_offline([str(hbin / "tuneup"), "rules", "list", "-f", "json"], tmp_path).stdout)
    assert any(r["id"] == "NET-SOMAXCONN" for r in rules)
    out = _offline([str(hbin / "tuneup"), "audit", "--fail-on", "never", "-f", "json"], tmp_path)
    assert json.loads(out.stdout)["schema"] == "tuneup.report/1"
