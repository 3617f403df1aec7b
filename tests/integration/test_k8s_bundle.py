# SPDX-License-Identifier: Apache-2.0
"""DAG bundles in what dagfs-provision renders: dagfs_airflow.DagfsDagBundle
registered per source (or for the whole tree) in the values, the package
itself as the ConfigMap dagfs-airflow on PYTHONPATH in every Airflow
container (chart-wide volumes, volumeMounts and env, and the standalone
pod templates), the VM target's airflow.cfg and install.sh; and the
rendered package imported by the real Airflow from where the ConfigMap
puts it. test_podman.py runs it in the pod's containers.
"""

import json
import os
import subprocess

import pytest
import yaml

from conftest import REPO
from test_deb import airflow_venv
from test_k8s import load_values, run_prov, validate

PKG = REPO / "airflow" / "src" / "dagfs_airflow"
SOURCES = ["--source", "git:https://e.com/a.git,at=a", "--source",
           "s3:bucket/x/,at=b,name=team-b"]


def render(tmp_path, *extra, name="out"):
    out = tmp_path / name
    run_prov("render", out, "--image", "x/dagfs:1", *SOURCES, *extra)
    return out


def test_bundles_per_source_and_for_the_tree(tmp_path):
    out = render(tmp_path)
    v = load_values(out)
    assert v["dagProcessor"]["dagBundleConfigList"] == [
        {"name": "a", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/opt/airflow/dags/mnt", "source": "a"}},
        {"name": "team-b", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/opt/airflow/dags/mnt", "source": "team-b"}}]
    assert v["config"]["core"]["dags_folder"] == "/opt/airflow/dags/mnt"
    validate(out / "values.yaml", airflow_values=True, merge=True)
    tree = render(tmp_path, "--bundle", "tree", "--mode", "materialize",
                  name="tree")
    assert load_values(tree)["dagProcessor"]["dagBundleConfigList"] == [
        {"name": "dagfs", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/opt/airflow/dags"}}]
    validate(tree / "values.yaml", airflow_values=True, merge=True)
    old = render(tmp_path, "--chart-version", "1.18.0", name="old")
    lst = json.loads(load_values(old)["config"]["dag_processor"][
        "dag_bundle_config_list"])
    assert [b["name"] for b in lst] == ["a", "team-b"]
    validate(old / "values.yaml", airflow_values=True, merge=True,
             chart="1.18.0")
    none = render(tmp_path, "--bundle", "none", name="none")
    v = load_values(none)
    assert "dagBundleConfigList" not in v["dagProcessor"]
    assert "volumes" not in v and not (none / "dagfs-airflow.yaml").exists()


def test_the_package_reaches_every_airflow_container(tmp_path):
    out = render(tmp_path)
    cm = yaml.safe_load((out / "dagfs-airflow.yaml").read_text())
    assert cm["data"] == {f.name: f.read_text() for f in PKG.glob("*.py")}
    validate(out / "dagfs-airflow.yaml")
    v = load_values(out)  # chart-wide: every Airflow container and job
    assert v["volumes"] == [{"name": "dagfs-airflow",
                             "configMap": {"name": "dagfs-airflow"}}]
    assert v["volumeMounts"] == [{
        "name": "dagfs-airflow", "readOnly": True,
        "mountPath": "/opt/dagfs-airflow/dagfs_airflow"}]
    assert {"name": "PYTHONPATH", "value": "/opt/dagfs-airflow"} in v["env"]
    for t in ("pod-template.yaml", "pod-template-pinned.yaml"):
        pod = yaml.safe_load((out / t).read_text())
        base = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in base["env"]}
        assert env["PYTHONPATH"] == "/opt/dagfs-airflow"
        assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]
                          ) == v["dagProcessor"]["dagBundleConfigList"] or \
            t.endswith("pinned.yaml")
        assert "dagfs-airflow" in [m["name"] for m in base["volumeMounts"]]
        assert {"name": "dagfs-airflow", "configMap": {
            "name": "dagfs-airflow"}} in pod["spec"]["volumes"]


def test_vm_target_installs_the_package_and_registers_the_bundles(tmp_path):
    out = tmp_path / "vm"
    run_prov("render", out, "--target", "vm", *SOURCES)
    assert {f.name: f.read_text() for f in (out / "dagfs_airflow").iterdir()} \
        == {f.name: f.read_text() for f in PKG.glob("*.py")}
    cfg = (out / "airflow.cfg").read_text()
    line = [l for l in cfg.splitlines()
            if l.startswith("dag_bundle_config_list = ")][0]
    lst = json.loads(line.split(" = ", 1)[1])
    assert lst[0]["kwargs"] == {"mount": "/opt/airflow/dags", "source": "a"}
    assert "PYTHONPATH=/opt/dagfs-airflow\n" in (out / "airflow.env").read_text()
    sh = (out / "install.sh").read_text()
    assert "install -m 0644 dagfs_airflow/*.py /opt/dagfs-airflow/dagfs_airflow/" \
        in sh
    # the task pods: their own mount path, the package from the ConfigMap
    pod = yaml.safe_load((out / "pod-template.yaml").read_text())
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"]
                      )[0]["kwargs"]["mount"] == "/opt/airflow/dags/mnt"
    assert (out / "dagfs-airflow.yaml").exists()


def test_pinned_workers_and_bundles_conflict(tmp_path):
    r = run_prov("render", tmp_path / "out", *SOURCES, "--worker", "pinned",
                 check=False)
    assert r.returncode == 2 and r.stderr.startswith(
        "dagfs-provision: --worker pinned:"), r.stderr
    r = run_prov("render", tmp_path / "out", *SOURCES, "--bundle", "git",
                 check=False)
    assert r.returncode == 2 and "--bundle: unknown bundle 'git'" in r.stderr


def test_real_airflow_imports_the_rendered_package(tmp_path):
    """The ConfigMap's files where the pods mount them, on PYTHONPATH:
    the real Airflow imports DagfsDagBundle from there, not from an
    installed copy, and builds it from the rendered kwargs."""
    venv = airflow_venv()
    out = render(tmp_path)
    cm = yaml.safe_load((out / "dagfs-airflow.yaml").read_text())
    pkg = tmp_path / "opt" / "dagfs_airflow"
    pkg.mkdir(parents=True)
    for name, text in cm["data"].items():
        (pkg / name).write_text(text)
    conf = load_values(out)["dagProcessor"]["dagBundleConfigList"][0]
    code = ("import json, sys, dagfs_airflow\n"
            "from airflow.dag_processing.bundles.base import BaseDagBundle\n"
            "b = dagfs_airflow.DagfsDagBundle(name=sys.argv[1], "
            "**json.loads(sys.argv[2]))\n"
            "assert isinstance(b, BaseDagBundle) and b.supports_versioning\n"
            "print(dagfs_airflow.__file__, b.source, b.mount)\n")
    r = subprocess.run([f"{venv}/bin/python", "-c", code, conf["name"],
                        json.dumps(conf["kwargs"])], capture_output=True,
                       text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(pkg.parent),
                                AIRFLOW_HOME=str(tmp_path / "home")))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == [str(pkg / "__init__.py"), "a",
                                "/opt/airflow/dags/mnt"]
