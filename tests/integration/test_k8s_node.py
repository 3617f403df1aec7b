# SPDX-License-Identifier: Apache-2.0
"""`dagfs-provision --mode node`: a publisher Deployment and Service, a
privileged DaemonSet mirroring it (dagfs:URL,source=NAME sources) and
mounting under a hostPath with Bidirectional propagation, the Airflow
pods reading that hostPath with HostToContainer and no privileged
container. Rendered documents against the schemas; the daemon accepts
both configurations; and the node simulated with real processes and
mount namespaces: the rendered publisher command serving a git source
on loopback, the rendered DaemonSet command mirroring it into a shared
"hostPath", two "Airflow pods" slave to it reading through; the node's
dagfs killed and restarted, the pods read the next revision without a
restart.
"""

import base64
import os
import shutil
import subprocess

import pytest
import yaml

from conftest import build_dir, skip_or_fail, wait_for
from test_k8s import (Container, free_port, git_daemon, git_repo,  # noqa: F401
                      git_servers, load_values, readyz, run_prov, stop,
                      validate)

COMPONENTS = ("dagProcessor", "triggerer", "scheduler", "apiServer")


def render(out, *extra):
    run_prov("render", out, "--mode", "node", "--image", "reg.example/dagfs:1",
             "--source", "git:https://e.com/a.git,at=team_a", "--source",
             "s3:bucket/b/,at=team_b,name=b", *extra)
    return out


def docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def containers_of(v):
    """Every container the values put into Airflow pods."""
    out = []
    for comp in COMPONENTS:
        for k in ("extraInitContainers", "extraContainers"):
            out += v.get(comp, {}).get(k, [])
    for k in ("extraInitContainers", "extraContainers"):
        out += v["workers"]["kubernetes"].get(k, [])
    return out


def test_node_mode_renders_publisher_daemonset_and_unprivileged_pods(tmp_path):
    out = render(tmp_path / "out")
    files = ["namespace.yaml", "storage.yaml", "secrets.yaml",
             "dagfs-config.yaml", "dagfs-service.yaml", "dagfs-node.yaml",
             "dagfs-airflow.yaml", "pod-template.yaml"]
    validate(*(out / f for f in files))
    validate(out / "values.yaml", airflow_values=True, merge=True)
    v = load_values(out)
    node = {d["kind"]: d for d in docs(out / "dagfs-node.yaml")}
    ds = node["DaemonSet"]["spec"]["template"]["spec"]
    host = {x["name"]: x for x in ds["volumes"]}["host"]["hostPath"]["path"]
    c = ds["containers"][0]
    assert c["securityContext"]["privileged"] is True
    assert {m["name"]: m.get("mountPropagation") for m in
            c["volumeMounts"]}["host"] == "Bidirectional"
    assert "--allow-other /host/mnt" in c["command"][2]
    # Airflow pods: the same hostPath, HostToContainer, nothing privileged
    for comp in ("dagProcessor", "triggerer"):
        vol = {x["name"]: x for x in v[comp]["extraVolumes"]}["dagfs-dags"]
        assert vol["hostPath"]["path"] == host
        mnt = v[comp]["extraVolumeMounts"][0]
        assert (mnt["mountPropagation"], mnt["readOnly"]) == \
            ("HostToContainer", True)
    kube = v["workers"]["kubernetes"]
    assert kube["extraVolumes"][0]["hostPath"]["path"] == host
    for ct in containers_of(v):
        assert ct["name"] == "dagfs-wait"
        assert not ct["securityContext"].get("privileged")
        assert ct["securityContext"]["runAsNonRoot"] is True
    pod = yaml.safe_load((out / "pod-template.yaml").read_text())
    assert all(not x.get("securityContext", {}).get("privileged")
               for x in pod["spec"]["initContainers"] +
               pod["spec"]["containers"])
    assert v["config"]["core"]["dags_folder"] == "/opt/airflow/dags/mnt"
    # the publisher: no privilege, serves, signs
    pub = node["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert not pub["securityContext"].get("privileged")
    assert "--serve" in pub["command"] and "--materialize" in pub["command"]
    svc = yaml.safe_load((out / "dagfs-service.yaml").read_text())
    assert svc["spec"]["selector"]["app.kubernetes.io/name"] == \
        "dagfs-publisher"
    conf = node["ConfigMap"]["data"]["node.conf"]
    url = f"http://airflow-dagfs-publisher.airflow.svc:8081/store"
    for name, at in (("a", "team_a"), ("b", "team_b")):
        assert f"[source {name}]\ntype = dagfs\nlocation = {url}\n" \
               f"source = {name}\nat = {at}\n" in conf
    # the signing key only in the Secret, its public half in the ConfigMap
    key = (out / ".secrets" / "serve-key.pem").read_text()
    sec = {d["metadata"]["name"]: d for d in docs(out / "secrets.yaml")}
    assert base64.b64decode(sec["dagfs-serve"]["data"]["serve-key.pem"]
                            ).decode() == key
    assert "PRIVATE" not in (out / "dagfs-node.yaml").read_text()
    assert node["ConfigMap"]["data"]["serve.pub"].startswith(
        "-----BEGIN PUBLIC KEY-----")
    render(tmp_path / "out")  # kept: a re-render signs with the same key
    assert (out / ".secrets" / "serve-key.pem").read_text() == key
    # scraped: the node daemons and the publisher, not the Airflow pods
    mon = render(tmp_path / "mon", "--prometheus-operator")
    svcs = [d for d in docs(mon / "prometheus-operator.yaml")
            if d["kind"] == "Service"]
    assert [d["spec"]["selector"] for d in svcs] == [
        {"app.kubernetes.io/name": "dagfs-node", "release": "airflow"}]
    sm = [d for d in docs(mon / "prometheus-operator.yaml")
          if d["kind"] == "ServiceMonitor"][0]["spec"]["selector"]
    pub = yaml.safe_load((mon / "dagfs-service.yaml").read_text())
    assert sm["matchLabels"].items() <= pub["metadata"]["labels"].items()


def test_node_mode_bad_combinations(tmp_path):
    for extra, msg in ((["--target", "vm"], "--mode node: the Kubernetes"),
                       (["--worker", "pinned", "--bundle", "none"],
                        "--mode node: task pods read")):
        r = run_prov("render", tmp_path / "x", "--mode", "node", "--source",
                     "git:https://e.com/a.git", *extra, check=False)
        assert r.returncode == 2 and msg in r.stderr, r.stderr


def pod_files(out, root):
    """The node's ConfigMap and Secret as the pods would see them."""
    node = {d["kind"]: d for d in docs(out / "dagfs-node.yaml")}
    sec = {d["metadata"]["name"]: d for d in docs(out / "secrets.yaml")}
    for sub in ("serve", "node"):
        (root / sub).mkdir(parents=True)
    for k, b64 in sec["dagfs-serve"]["data"].items():
        (root / "serve" / k).write_bytes(base64.b64decode(b64))
    for k, text in node["ConfigMap"]["data"].items():
        (root / "node" / k).write_text(text)
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    (root / "dagfs.conf").write_text(conf["data"]["dagfs.conf"])
    return node


def localise(cmd, root, old_port, new_port):
    for a, b in (("/etc/dagfs/serve", f"{root}/serve"),
                 ("/etc/dagfs/node", f"{root}/node"),
                 ("/etc/dagfs/dagfs.conf", f"{root}/dagfs.conf"),
                 (f"0.0.0.0:{old_port}", f"127.0.0.1:{new_port}")):
        cmd = cmd.replace(a, b)
    return cmd


def test_node_simulation_publisher_daemonset_and_pods(tmp_path, git_daemon,
                                                     git_repo):
    if not os.path.exists("/dev/fuse") or shutil.which("unshare") is None:
        skip_or_fail("needs /dev/fuse and unshare")
    env = dict(os.environ, PATH=f"{build_dir() / 'sidecar'}:{os.environ['PATH']}")
    git_repo.write("etl.py", "revision 1\n")
    git_repo.commit("1")
    port = free_port()
    out = tmp_path / "out"
    run_prov("render", out, "--mode", "node", "--dagfs-http-port", port,
             "--source", f"git:{git_daemon.url(git_repo)},name=dags,"
             "period=200ms,at=team")
    root = tmp_path / "pod"
    node = pod_files(out, root)
    pub_c = node["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    pub_cmd = [localise(a, root, port, port) for a in pub_c["command"]]
    pub_cmd = [a.replace("/var/lib/dagfs/out", str(tmp_path / "pub-out"))
               .replace("/var/cache/dagfs", str(tmp_path / "pub-cache"))
               for a in pub_cmd]
    node_port = free_port()
    conf = root / "node" / "node.conf"
    conf.write_text(localise(conf.read_text(), root, port, port).replace(
        f"http://airflow-dagfs-publisher.airflow.svc:{port}",
        f"http://127.0.0.1:{port}"))
    ds = node["DaemonSet"]["spec"]["template"]["spec"]["containers"][0]
    base = tmp_path / "hostpath"  # the node's directory, a shared mount
    base.mkdir()
    node_cmd = localise(ds["command"][2], root, port, node_port).replace(
        "/var/cache/dagfs", str(tmp_path / "node-cache")).replace(
        "/host/", f"{base}/")
    check = subprocess.run(["dagfs", "check-config", "--config", str(conf)],
                           env=env, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    subprocess.run(["mount", "--bind", base, base], check=True)
    subprocess.run(["mount", "--make-rshared", base], check=True)
    procs, pods = [], []

    def start_node():
        p = subprocess.Popen(["unshare", "-m", "--propagation", "unchanged",
                              *ds["command"][:2], node_cmd], env=env,
                             stderr=open(tmp_path / "node.log", "ab"))
        procs.append(p)
        return p

    try:
        procs.append(subprocess.Popen(pub_cmd, env=env, stderr=open(
            tmp_path / "pub.log", "ab")))
        wait_for(lambda: readyz(port), timeout=30, what="the publisher")
        nd = start_node()
        wait_for(lambda: readyz(node_port), timeout=30, what="the node's dagfs")
        pods = [Container(base), Container(base)]  # HostToContainer
        for c in pods:
            assert c.read("mnt/team/etl.py") == "ok revision 1|"
        nd.kill()  # the node's dagfs dies under running pods
        nd.wait()
        assert pods[0].read("mnt/never-looked-up.py") in ("err 107", "err 103")
        git_repo.write("etl.py", "revision 2\n")
        git_repo.commit("2")
        start_node()
        wait_for(lambda: readyz(node_port), timeout=30,
                 what="the node's dagfs again")
        for c in pods:  # the same processes, not restarted
            wait_for(lambda: c.read("mnt/team/etl.py") == "ok revision 2|",
                     timeout=30, what="the pods read revision 2")
    finally:
        for p in procs:
            stop(p)
        for c in pods:
            c.close()
        subprocess.run(["umount", "-R", "-l", str(base)])
