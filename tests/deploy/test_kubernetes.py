"""examples/kubernetes: the DaemonSet manifest validated against the Kubernetes API schemas with
kubernetes-validate (strict: unknown fields are errors), for the oldest and newest Kubernetes
versions it knows, and the properties that make it audit the node rather than the pod."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

MANIFEST = REPO / "examples" / "kubernetes" / "tuneup-daemonset.yaml"


def _docs() -> list[dict]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is a test dependency")
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def test_manifest_is_valid_against_the_kubernetes_schemas():
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the test extra")
    from kubernetes_validate import utils

    versions = sorted(utils.all_versions(), key=lambda v: tuple(int(x) for x in v.split(".")))
    assert versions
    for version in {versions[-1], "1.27.0" if "1.27.0" in versions else versions[0]}:
        for doc in _docs():
            kv.validate(doc, version, strict=True)          # raises ValidationError on any problem
    bad = [d for d in _docs() if d["kind"] == "DaemonSet"][0]
    bad["spec"]["template"]["spec"]["hostPid"] = True      # a typo: strict validation catches it
    with pytest.raises(utils.ValidationError):
        kv.validate(bad, versions[-1], strict=True)


def test_daemonset_audits_the_node_read_only_and_needs_no_rbac():
    docs = _docs()
    kinds = [d["kind"] for d in docs]
    assert "DaemonSet" in kinds and not {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"} & set(kinds)
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True and pod["hostPID"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"operator": "Exists"} in pod["tolerations"]
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    script = " ".join(c["args"])
    assert "/opt/tuneup/bin/tuneup audit" in script and "--format prometheus" in script
    assert "--fail-on never" in script and "-o /textfile/tuneup.prom" in script and "--force" in script
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["textfile"]["hostPath"]["path"] == "/var/lib/node_exporter/textfile_collector"
    assert mounts["textfile"]["mountPath"] == "/textfile"
    assert all(m.get("readOnly") for n, m in mounts.items() if n != "textfile")
    ns = next(d for d in docs if d["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_configmap_tuneup_toml_is_accepted_by_tuneup(tmp_path):
    cm = next(d for d in _docs() if d["kind"] == "ConfigMap")
    cfg = tmp_path / "tuneup.toml"
    cfg.write_text(cm["data"]["tuneup.toml"])
    out = subprocess.run([sys.executable, "-m", "tuneup", "audit", "--config", str(cfg), "-f", "json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr                      # fail_on = "never" from the file
    report = json.loads(out.stdout)
    assert report["profile"] == "web" and report["params"]["connections"] == 100000
