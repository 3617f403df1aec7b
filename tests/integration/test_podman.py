# SPDX-License-Identifier: Apache-2.0
"""The dag-processor pod as the rendered values describe it, in real
containers (Debian's podman with runc, as root): the dagfs image built
from sidecar/Dockerfile on a base imported from `debootstrap --variant=
minbase bookworm`; the dagfs container with the rendered command,
privileged, /dev/fuse, its volumes, the shared one rshared (the
rendered Bidirectional); an Airflow container, uid 50000, the shared
volume read-only and rslave (HostToContainer), parsing the DAGs with the
real Airflow of the lock file (its venv mounted at its own path); dagfs
killed and started again while the Airflow container keeps running and
parses the new revision without a restart. The Airflow container parses
through dags_folder and through the rendered DagfsDagBundle, whose
package comes from the rendered ConfigMap on the rendered PYTHONPATH; a
worker's bundle at the first version still serves it after the second.

`podman kube play` of the worker pod template is not run: its main
container is the apache/airflow image, which no registry here serves.
"""

import base64
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import skip_or_fail, wait_for
from test_deb import airflow_venv
from test_k8s import readyz, run_prov

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))
from git_servers import (free_port, git_daemon, git_repo,  # noqa: E402,F401
                         git_servers)
from podman_images import PODMAN, ULIMITS, airflow_image, dagfs_image  # noqa: E402

PARSER = r"""
import json, os, sys
try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:
    from airflow.models.dagbag import DagBag
import dagfs_airflow

bundle = json.loads(os.environ["BUNDLES"])[0]
print("ready " + dagfs_airflow.__file__, flush=True)
for line in sys.stdin:
    cmd = line.split()
    version = None
    if cmd[0] == "folder":  # Airflow's default route: dags_folder
        path = os.environ["AIRFLOW__CORE__DAGS_FOLDER"]
    else:  # the dag-processor's bundle, or a worker's at a version
        b = dagfs_airflow.DagfsDagBundle(
            name=bundle["name"], version=cmd[1] if cmd[1:] else None,
            **bundle["kwargs"])
        b.initialize()
        v = b.get_current_version()
        version, path = str(getattr(v, "version", v)), str(b.path)
    bag = DagBag(dag_folder=path)
    print("RESULT " + json.dumps({"dags": sorted(bag.dag_ids),
                                  "errors": sorted(bag.import_errors),
                                  "version": version}), flush=True)
"""

DAG = """\
from airflow.sdk import dag, task


@dag(dag_id={dag_id!r}, schedule=None, catchup=False)
def the_dag():
    @task
    def hello():
        return {dag_id!r}

    hello()


the_dag()
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    if not shutil.which("podman") or not shutil.which("runc"):
        skip_or_fail("podman or runc is missing")
    if os.geteuid() or not os.path.exists("/dev/fuse"):
        skip_or_fail("needs root and /dev/fuse")
    work = tmp_path_factory.mktemp("images")
    return dagfs_image(), airflow_image(work)


def volume_dirs(out, root, vols):
    """A host directory for each rendered volume: emptyDirs empty, the
    ConfigMap's and the Secret's keys as files."""
    maps = {m["metadata"]["name"]: m for m in (
        yaml.safe_load((out / f).read_text())
        for f in ("dagfs-config.yaml", "dagfs-airflow.yaml"))}
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(
        (out / "secrets.yaml").read_text()) if d}
    dirs = {}
    for name, v in vols.items():
        d = root / name
        d.mkdir(parents=True)
        if "configMap" in v:
            for k, text in maps[v["configMap"]["name"]]["data"].items():
                (d / k).write_text(text)
        elif "secret" in v:
            for k, b64 in (secrets[v["secret"]["secretName"]].get("data")
                           or {}).items():
                (d / k).write_bytes(base64.b64decode(b64))
        dirs[name] = d
    return dirs


def mounts_args(container_mounts, vols, dirs):
    """volumeMounts as podman flags, propagation as rendered."""
    args = []
    for m in container_mounts:
        v = vols[m["name"]]
        if v.get("hostPath", {}).get("type") == "CharDevice":
            args += ["--device", f"{v['hostPath']['path']}:{m['mountPath']}"]
            continue
        src = dirs[m["name"]]
        if m.get("subPath"):
            src = src / m["subPath"]
        opts = ["ro"] if m.get("readOnly") else []
        prop = {"Bidirectional": "rshared",
                "HostToContainer": "rslave"}.get(m.get("mountPropagation"))
        if prop:
            opts.append(prop)
        args += ["-v", f"{src}:{m['mountPath']}" +
                 (":" + ",".join(opts) if opts else "")]
    return args


def dagfs_args(c, vols, dirs, name):
    sc = c["securityContext"]
    args = ["run", "-d", "--name", name, "--network=host", *ULIMITS,
            "--entrypoint", json.dumps(c["command"]),
            "--user", str(sc.get("runAsUser", 0))]
    if sc.get("privileged"):
        args.append("--privileged")
    return args + mounts_args(c["volumeMounts"], vols, dirs) + [c["image"]]


def podman(*args, check=True):
    r = subprocess.run([*PODMAN, *args], capture_output=True, text=True,
                       timeout=300)
    if check and r.returncode:
        raise AssertionError(f"podman {args[0]}: {r.stderr[-3000:]}")
    return r


def test_rendered_pod_in_real_containers(images, tmp_path, git_daemon,
                                         git_repo):
    dagfs_tag, airflow_tag = images
    venv = airflow_venv()
    git_repo.write("etl.py", DAG.format(dag_id="etl_v1"))
    first = git_repo.commit("v1")
    port = free_port()
    out = tmp_path / "out"
    run_prov("render", out, "--image", dagfs_tag, "--dagfs-http-port", port,
             "--source", f"git:{git_daemon.url(git_repo)},name=dags,"
             "period=1s")
    v = yaml.safe_load((out / "values.yaml").read_text())
    comp = v["dagProcessor"]
    side = comp["extraInitContainers"][0]
    assert side["securityContext"]["privileged"] is True
    # the dag-processor's own volumes and the chart-wide ones (the
    # dagfs_airflow package), mounted into its Airflow container
    vols = {x["name"]: x for x in comp["extraVolumes"] + v["volumes"]}
    root = tmp_path / "pod"
    dirs = volume_dirs(out, root, vols)
    shared = dirs["dagfs-dags"]  # the emptyDir, a shared mount on the node
    subprocess.run(["mount", "--bind", shared, shared], check=True)
    subprocess.run(["mount", "--make-rshared", shared], check=True)
    names = [f"dagfs-test-{os.getpid()}-{port}-dagfs",
             f"dagfs-test-{os.getpid()}-{port}-airflow"]
    air = None
    try:
        podman(*dagfs_args(side, vols, dirs, names[0]))
        wait_for(lambda: readyz(port), timeout=60,
                 what="the dagfs container's startup probe")
        air_args = ["run", "-i", "--rm", "--name", names[1], "--network=host",
                    *ULIMITS, "--user", "50000:0",  # the chart's uid, gid
                    "-e", "AIRFLOW__CORE__DAGS_FOLDER=" +
                    v["config"]["core"]["dags_folder"],
                    "-e", "AIRFLOW__CORE__LOAD_EXAMPLES=False",
                    "-e", "AIRFLOW_HOME=/tmp/airflow",
                    "-e", "BUNDLES=" + json.dumps(
                        comp["dagBundleConfigList"]),
                    *(f"--env={e['name']}={e['value']}" for e in v["env"]),
                    "-v", f"{venv}:{venv}:ro",
                    *mounts_args(comp["extraVolumeMounts"] +
                                 v["volumeMounts"], vols, dirs),
                    airflow_tag, f"{venv}/bin/python", "-c", PARSER]
        air = subprocess.Popen([*PODMAN, *air_args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        # the package from the ConfigMap, not the venv's installed copy
        assert air.stdout.readline().strip() == \
            "ready /opt/dagfs-airflow/dagfs_airflow/__init__.py"

        def parse(cmd="bundle"):  # Airflow logs to stdout too: skip them
            air.stdin.write(cmd + "\n")
            air.stdin.flush()
            while not (line := air.stdout.readline()).startswith("RESULT "):
                assert line, "the Airflow container ended"
            return json.loads(line[7:])
        assert parse("folder") == {"dags": ["etl_v1"], "errors": [],
                                   "version": None}
        assert parse() == {"dags": ["etl_v1"], "errors": [],
                           "version": first}
        started = podman("inspect", "--format", "{{.State.StartedAt}}",
                         names[1]).stdout
        uid = podman("exec", names[1], "id", "-u").stdout.strip()
        assert uid == "50000"

        podman("kill", names[0])  # dagfs dies: the mount is dead
        podman("rm", "-f", names[0])
        # what the kernel has cached may still be served; the rest is not
        dead = podman("exec", names[1], "cat",
                      "/opt/airflow/dags/mnt/never-looked-up.py", check=False)
        assert dead.returncode and any(
            e in dead.stderr for e in ("Transport endpoint is not connected",
                                       "Software caused connection abort")), \
            dead.stdout + dead.stderr
        git_repo.write("etl.py", DAG.format(dag_id="etl_v2"))
        git_repo.commit("v2")
        podman(*dagfs_args(side, vols, dirs, names[0]))
        wait_for(lambda: readyz(port), timeout=60,
                 what="ready again after the restart")
        second = git_repo.head()
        wait_for(lambda: parse() == {"dags": ["etl_v2"], "errors": [],
                                     "version": second},
                 timeout=60, what="the bundle moves to revision 2")
        assert parse("folder")["dags"] == ["etl_v2"]
        # a worker of a run parsed at v1 still gets v1, by its version
        assert parse(f"bundle {first}") == {"dags": ["etl_v1"], "errors": [],
                                            "version": first}
        # the same Airflow container, never restarted
        assert podman("inspect", "--format", "{{.State.StartedAt}}",
                      names[1]).stdout == started
    finally:
        if air:
            air.stdin.close()
            try:
                air.wait(timeout=30)
            except subprocess.TimeoutExpired:
                air.kill()
        for n in names:
            podman("rm", "-f", "-t", "5", n, check=False)
        subprocess.run(["umount", "-R", "-l", str(shared)])
