# SPDX-License-Identifier: Apache-2.0
"""dagfs-provision and the pod layout, offline: golden renders, every
rendered document against the Kubernetes 1.31 and Airflow chart 1.21.0
(and 1.18.0) schemas (../shared/schemas/validate.py), the fixes for
what a real install would hit (chart templates read against the values), input validation, secrets
hygiene, `apply` through kubectl/helm STAND-INS that record their
arguments (there is no cluster here), and a pod simulated with real
mount namespaces: dagfs as the sidecar mounting into a shared directory,
two "containers" with slave propagation reading through it, the sidecar
killed and restarted, the containers reading again without a restart.
"""

import base64
import os
import re
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import REPO, build_dir, skip_or_fail, wait_for

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))
from git_servers import (free_port, git_daemon, git_repo,  # noqa: E402,F401
                         git_servers)

SCHEMAS = REPO.parent / "shared" / "schemas"
VALIDATE = SCHEMAS / "validate.py"
GOLDEN = REPO / "tests" / "fixtures" / "k8s-golden"
PY = "/usr/bin/python3"


def provision():
    p = build_dir() / "k8s" / "dagfs-provision"
    if not p.exists():
        skip_or_fail(f"{p} not built")
    return p


@pytest.fixture
def secrets(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    files = {
        "key": "-----BEGIN OPENSSH PRIVATE KEY-----\nKEYMATERIAL-ssh\n",
        "kh": "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
        "fernet": "SECRETFERNETAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
        "web": "SECRETWEB0123456789abcdef01234567\n",
        "db": "SECRETDBPASS42\n",
        "jwt": "SECRETJWT0123456789abcdef0123456789abcdef\n",
        "admin": "SECRETADMINPW\n",
        "aws": "[default]\naws_access_key_id = AKIASECRET\naws_secret_access_key = SECRETAWSKEY\n",
    }
    for k, v in files.items():
        (d / k).write_text(v)
    return d


def run_prov(*args, env=None, check=True):
    r = subprocess.run([str(provision()), *map(str, args)], capture_output=True,
                       text=True, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"dagfs-provision {args}: {r.stderr}")
    return r


def fixed_args(sec):
    return ["--git-ssh-key", sec / "key", "--git-known-hosts", sec / "kh",
            "--fernet-key-file", sec / "fernet", "--webserver-secret-key-file",
            sec / "web", "--db-password-file", sec / "db",
            "--jwt-secret-file", sec / "jwt", "--admin-password-file",
            sec / "admin"]


VARIANTS = {
    "fuse-native-hostpath": ["--node", "node-1", "--timezone", "Asia/Seoul",
                             "--scheduler-replicas", "2"],
    "chart-1.18.0-celery": ["--chart-version", "1.18.0", "--executor",
                            "CeleryExecutor", "--db-host", "db.example.com",
                            "--no-admin-user"],
    "materialize-classic-class": ["--mode", "materialize", "--sidecar",
                                  "classic", "--worker", "pinned",
                                  "--bundle", "none",
                                  "--storage", "class",
                                  "--storage-class", "standard",
                                  "--service", "loadbalancer"],
}


def chart_dir(chart="1.21.0"):
    return "airflow-chart" if chart == "1.18.0" else f"airflow-chart-{chart}"


def validate(*files, airflow_values=False, merge=False, chart="1.21.0"):
    cmd = [PY, str(VALIDATE), "-q", "--airflow-dir", chart_dir(chart)]
    if merge:
        cmd += ["--merge-defaults"]
    if airflow_values:
        cmd += ["--airflow-values"]
    r = subprocess.run(cmd + [str(f) for f in files], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def check_config(out, tmp_path):
    """The daemon itself accepts the dagfs.conf of the ConfigMap."""
    import yaml
    dagfs = build_dir() / "sidecar" / "dagfs"
    if not dagfs.exists():
        skip_or_fail(f"{dagfs} not built")
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    # the Secret dagfs-secrets, mounted as the sidecar would see it
    mounted = tmp_path / "secrets-volume"
    mounted.mkdir()
    for doc in yaml.safe_load_all((out / "secrets.yaml").read_text()):
        if doc["metadata"]["name"] == "dagfs-secrets":
            for key, b64 in (doc.get("data") or {}).items():
                (mounted / key).write_bytes(base64.b64decode(b64))
                (mounted / key).chmod(0o440)
    path = tmp_path / "dagfs.conf"
    path.write_text(conf["data"]["dagfs.conf"].replace(
        "/etc/dagfs/secrets", str(mounted)))
    r = subprocess.run([str(dagfs), "check-config", "--config", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_k8s_render_matches_golden_and_schemas(tmp_path, secrets, variant):
    out = tmp_path / "out"
    run_prov("render", out, "--source",
             "git:git@github.com:org/dags.git,ref=main,subpath=dags,at=team_a",
             "--source", "s3:airflow-dags/team-b/,region=eu-west-1,at=team_b",
             *fixed_args(secrets), *VARIANTS[variant])
    docs = ["namespace.yaml", "storage.yaml", "secrets.yaml",
            "dagfs-config.yaml", "dagfs-service.yaml", "pod-template.yaml",
            "pod-template-pinned.yaml"]
    if (out / "volumes-job.yaml").exists():
        docs.append("volumes-job.yaml")
    validate(*(out / d for d in docs))
    chart = "1.18.0" if "1.18.0" in variant else "1.21.0"
    validate(out / "values.yaml", airflow_values=True, chart=chart)
    validate(out / "values.yaml", airflow_values=True, merge=True,
             chart=chart)
    check_config(out, tmp_path)
    golden = GOLDEN / variant
    if os.environ.get("DAGFS_UPDATE_GOLDEN"):
        golden.mkdir(parents=True, exist_ok=True)
        for d in docs + ["values.yaml"]:
            shutil.copy(out / d, golden / d)
    for d in docs + ["values.yaml"]:
        assert (out / d).read_text() == (golden / d).read_text(), d


def load_values(out):
    import yaml
    return yaml.safe_load((out / "values.yaml").read_text())


def test_k8s_values_wire_dagfs_where_dags_are_read(tmp_path, secrets):
    """Airflow 3: the dag-processor parses, the triggerer imports
    triggers, task pods import; the API server and the scheduler (with
    the standalone dag-processor) read no DAG file: no dagfs and no
    privileged container there."""
    import yaml
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--node", "n1", *fixed_args(secrets))
    v = load_values(out)
    assert v["dags"]["gitSync"]["enabled"] is False
    assert v["dags"]["persistence"]["enabled"] is False
    assert v["executor"] == "KubernetesExecutor"
    for job in ("migrateDatabaseJob", "createUserJob"):  # helm --wait
        assert v[job]["useHelmHooks"] is False
    for comp in ("dagProcessor", "triggerer"):
        side = v[comp]["extraInitContainers"][0]
        assert side["restartPolicy"] == "Always"
        assert side["startupProbe"]["httpGet"]["path"] == "/readyz"
        prop = {m["name"]: m.get("mountPropagation")
                for m in side["volumeMounts"]}
        assert prop["dagfs-dags"] == "Bidirectional"
        air = {m["name"]: m for m in v[comp]["extraVolumeMounts"]}
        assert air["dagfs-dags"]["mountPropagation"] == "HostToContainer"
    for comp in ("scheduler", "apiServer"):
        assert not {"extraInitContainers", "extraContainers", "extraVolumes",
                    "extraVolumeMounts"} & set(v[comp]), comp
    assert "podTemplate" not in v  # the chart's own: env, airflow.cfg, logs
    kube = v["workers"]["kubernetes"]  # chart 1.21.0's keys for task pods
    assert set(v["workers"]) == {"kubernetes"}
    assert kube["extraInitContainers"][0]["restartPolicy"] == "Always"
    assert kube["extraVolumeMounts"][0]["mountPropagation"] == \
        "HostToContainer"
    pinned = yaml.safe_load((out / "pod-template-pinned.yaml").read_text())
    init = pinned["spec"]["initContainers"][0]
    assert "restartPolicy" not in init
    assert "\ndagfs sync --once" in init["command"][2]
    assert not init["securityContext"].get("privileged")
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    assert "password-file" not in conf["data"]["dagfs.conf"]
    svc = yaml.safe_load((out / "dagfs-service.yaml").read_text())
    assert svc["spec"]["selector"]["component"] == "dag-processor"
    assert svc["metadata"]["name"] == "airflow-dagfs-dag-processor"
    assert "//airflow-dagfs-dag-processor.airflow.svc:" in \
        init["env"][0]["value"]


def test_local_executor_runs_tasks_in_the_scheduler(tmp_path):
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--executor", "LocalExecutor")
    v = load_values(out)
    assert v["scheduler"]["extraInitContainers"][0]["name"] == "dagfs"
    assert "extraInitContainers" not in v["apiServer"]
    assert "workers" not in v
    validate(out / "values.yaml", airflow_values=True, merge=True)


def test_celery_workers_get_dagfs_under_workers_celery(tmp_path):
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--executor", "CeleryKubernetesExecutor")
    w = load_values(out)["workers"]
    assert w["celery"]["extraInitContainers"][0]["name"] == "dagfs"
    assert w["kubernetes"]["extraInitContainers"][0]["name"] == "dagfs"
    validate(out / "values.yaml", airflow_values=True, merge=True)


def secret_docs(out):
    import yaml
    return {d["metadata"]["name"]: {k: base64.b64decode(x) for k, x in
                                    (d.get("data") or {}).items()}
            for d in yaml.safe_load_all((out / "secrets.yaml").read_text())
            if d}


def test_postgresql_image_exists_or_external_database(tmp_path, secrets):
    """bitnami/postgresql:16.1.0-debian-11-r15 is gone from Docker Hub
    (apache/airflow#57328): the chart's PostgreSQL takes bitnamilegacy,
    even on chart 1.18.0 whose default still names bitnami; --db-host
    turns it off and points Airflow at the external database."""
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--chart-version", "1.18.0", *fixed_args(secrets))
    img = load_values(out)["postgresql"]["image"]
    assert img == {"repository": "bitnamilegacy/postgresql",
                   "tag": "16.1.0-debian-11-r15"}
    ext = tmp_path / "ext"
    run_prov("render", ext, "--source", "git:https://example.com/d.git",
             "--db-host", "pg.example.com", "--db-port", "6432",
             *fixed_args(secrets))
    v = load_values(ext)
    assert v["postgresql"] == {"enabled": False}
    sec = secret_docs(ext)
    assert b"@pg.example.com:6432/airflow" in sec["airflow-metadata"][
        "connection"]
    assert "airflow-postgresql-auth" not in sec
    assert "postgresql" not in (ext / "storage.yaml").read_text()
    validate(ext / "values.yaml", airflow_values=True, merge=True)
    validate(ext / "storage.yaml", ext / "secrets.yaml")


def test_jwt_secret_is_generated_once_and_kept(tmp_path):
    """The chart's jwt-secret.yaml draws randAlphaNum at every render, so
    each upgrade rotated it (apache/airflow#57415): the secret is ours,
    kept in .secrets/, named by jwtSecretName, the same on a re-run."""
    out = tmp_path / "out"
    args = ["render", out, "--source", "git:https://example.com/d.git"]
    r = run_prov(*args)
    kept = (out / ".secrets" / "jwt-secret").read_text()
    assert len(bytes.fromhex(kept)) == 32
    assert load_values(out)["jwtSecretName"] == "airflow-jwt-secret"
    assert secret_docs(out)["airflow-jwt-secret"]["jwt-secret"] == \
        kept.encode()
    run_prov(*args)
    assert (out / ".secrets" / "jwt-secret").read_text() == kept
    assert secret_docs(out)["airflow-jwt-secret"]["jwt-secret"] == \
        kept.encode()
    assert kept not in r.stdout + r.stderr
    for f in out.iterdir():
        if f.is_file() and f.name != "secrets.yaml":
            assert kept not in f.read_text(), f.name


def test_admin_user_has_a_generated_password_shown_on_request(tmp_path):
    """The chart's default user is admin/admin, here on a NodePort: the
    password is generated, reaches the job only through a Secret, and is
    printed by `admin-password DIR` alone."""
    out = tmp_path / "out"
    r = run_prov("render", out, "--source", "git:https://example.com/d.git")
    pw = (out / ".secrets" / "admin-password").read_text()
    assert len(pw) == 24 and pw != "admin"
    assert pw not in r.stdout + r.stderr
    job = load_values(out)["createUserJob"]
    assert job["env"][0]["valueFrom"]["secretKeyRef"] == {
        "name": "airflow-admin-password", "key": "password"}
    assert '-p "$DAGFS_ADMIN_PASSWORD"' in job["args"][2]
    assert secret_docs(out)["airflow-admin-password"]["password"] == \
        pw.encode()
    for f in out.iterdir():
        if f.is_file() and f.name != "secrets.yaml":
            assert pw not in f.read_text(), f.name
    shown = run_prov("admin-password", out)
    assert shown.stdout == pw + "\n"
    off = tmp_path / "off"
    run_prov("render", off, "--source", "git:https://example.com/d.git",
             "--no-admin-user")
    assert load_values(off)["createUserJob"]["enabled"] is False
    assert "airflow-admin-password" not in secret_docs(off)
    r = run_prov("admin-password", off, check=False)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


def test_shared_volume_does_not_collide_with_the_charts_dags(tmp_path):
    """The chart declares a volume "dags" of its own for dags.persistence
    and gitSync; ours is dagfs-dags."""
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git")
    v = load_values(out)
    names = [x["name"] for comp in ("dagProcessor", "triggerer")
             for x in v[comp]["extraVolumes"]]
    names += [x["name"] for x in v["workers"]["kubernetes"]["extraVolumes"]]
    assert "dags" not in names and "dagfs-dags" in names
    import yaml
    for t in ("pod-template.yaml", "pod-template-pinned.yaml"):
        pod = yaml.safe_load((out / t).read_text())
        assert "dags" not in [x["name"] for x in pod["spec"]["volumes"]]


def test_pod_templates_take_the_executor_from_the_config(tmp_path):
    """A template's hard-coded LocalExecutor contradicted airflow.cfg."""
    import yaml
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--executor", "CeleryKubernetesExecutor")
    for t in ("pod-template.yaml", "pod-template-pinned.yaml"):
        pod = yaml.safe_load((out / t).read_text())
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert "AIRFLOW__CORE__EXECUTOR" not in env
        assert env["AIRFLOW__API_AUTH__JWT_SECRET"]["valueFrom"][
            "secretKeyRef"]["name"] == "airflow-jwt-secret"
        assert pod["spec"]["containers"][0]["image"] == "apache/airflow:3.2.0"
        cfg = [x for x in pod["spec"]["volumes"]
               if x["name"] == "airflow-config"][0]
        assert cfg["configMap"]["name"] == "airflow-config"  # the chart's


def test_newcomers_first_command_renders_a_working_install(tmp_path):
    """`render DIR --source SPEC` alone: the cluster's default
    StorageClass (no storageClassName, no ReadWriteMany claim it may not
    offer), values valid for chart 1.21.0, and a note that the default
    image must be built and pushed."""
    import yaml
    out = tmp_path / "out"
    r = run_prov("render", out, "--source", "git:https://example.com/d.git")
    docs = [d for d in yaml.safe_load_all((out / "storage.yaml").read_text())
            if d]
    assert [d["metadata"]["name"] for d in docs] == ["airflow-postgresql"]
    assert "storageClassName" not in docs[0]["spec"]
    assert not (out / "volumes-job.yaml").exists()
    assert "logs" not in load_values(out)
    assert "sidecar/Dockerfile" in r.stderr and "--image" in r.stderr
    validate(out / "values.yaml", airflow_values=True, merge=True)
    validate(*(out / d for d in ("namespace.yaml", "storage.yaml",
                                 "secrets.yaml", "dagfs-config.yaml",
                                 "dagfs-service.yaml", "pod-template.yaml")))
    named = tmp_path / "named"
    r = run_prov("render", named, "--source", "git:https://example.com/d.git",
                 "--storage-class", "nfs", "--image", "reg.example/dagfs:1")
    docs = [d for d in yaml.safe_load_all((named / "storage.yaml").read_text())
            if d]
    assert {d["metadata"]["name"]: d["spec"]["storageClassName"]
            for d in docs} == {"airflow-logs": "nfs",
                               "airflow-postgresql": "nfs"}
    assert r.stderr == ""


@pytest.mark.parametrize("version, ok, note", [
    ("1.21.0", True, False), ("1.18.0", True, False),
    ("1.22.0", True, True), ("1.30.1", True, True),
    ("1.19.0", False, False), ("2.0.0", False, False),
    ("latest", False, False)])
def test_chart_version(tmp_path, version, ok, note):
    out = tmp_path / "out"
    r = run_prov("render", out, "--source", "git:https://example.com/d.git",
                 "--image", "x/dagfs:1", "--chart-version", version,
                 check=False)
    assert (r.returncode == 0) == ok, r.stderr
    if not ok:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "dagfs-provision: --chart-version:"), r.stderr
        return
    assert ("not validated here" in r.stderr) == note
    head = (out / "values.yaml").read_text().splitlines()[0]
    assert f"chart {version} " in head
    if not note:
        validate(out / "values.yaml", airflow_values=True, merge=True,
                 chart=version)


def test_apply_recreates_the_charts_jobs(tmp_path, secrets):
    """A Job's template is immutable: an upgrade that changes its image
    would fail. apply deletes the finished chart Jobs before helm."""
    env, log = stand_ins(tmp_path)
    out = tmp_path / "out"
    run_prov("apply", out, "--source", "git:https://example.com/d.git",
             "--airflow-version", "3.2.1", *fixed_args(secrets), env=env)
    calls = log.read_text().splitlines()
    delete = ("kubectl delete job -n airflow -l tier=airflow,release=airflow,"
              "component in (run-airflow-migrations,create-user-job) "
              "--ignore-not-found --wait")
    helm = [c for c in calls if c.startswith("helm ")][0]
    assert calls.index(delete) < calls.index(helm)
    assert "--version 1.21.0" in helm
    assert load_values(out)["defaultAirflowTag"] == "3.2.1"


def test_vm_render(tmp_path, secrets):
    import yaml
    out = tmp_path / "vm"
    run_prov("render", out, "--target", "vm", "--source",
             "git:git@github.com:org/dags.git", "--db-host", "10.0.0.5",
             "--namespace", "airflow-tasks", "--storage", "class",
             "--storage-class", "standard", "--api-server-url",
             "http://10.0.0.120:8080", *fixed_args(secrets))
    for f in ("dagfs.service", "airflow-api-server.service",
              "airflow-scheduler.service", "airflow-dag-processor.service",
              "limits.conf", "airflow.cfg", "airflow.env", "install.sh",
              "dagfs.conf", "pod-template.yaml"):
        assert (out / f).exists(), f
    unit = (out / "dagfs.service").read_text()
    assert "mount --config /etc/dagfs/dagfs.conf" in unit
    assert "/opt/airflow/dags" in unit
    assert "Requires=dagfs.service" in (out / "airflow-scheduler.service").read_text()
    cfg = (out / "airflow.cfg").read_text()
    for key in ("dags_folder = /opt/airflow/dags", "executor = KubernetesExecutor",
                "pod_template_file = /opt/airflow/pod-template.yaml",
                "namespace = airflow-tasks", "config_file = "):
        assert key in cfg
    install = (out / "install.sh").read_text()
    assert "useradd --system --uid 50000 --gid 100" in install
    assert "airflow db migrate" in install
    assert subprocess.run(["sh", "-n", str(out / "install.sh")]).returncode == 0
    assert stat.S_IMODE((out / "airflow.env").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "secrets").stat().st_mode) == 0o700
    assert "execution_api_server_url = http://10.0.0.120:8080/execution/" in cfg
    # every Airflow process signs and checks task tokens with one key
    jwt = (secrets / "jwt").read_text().strip()
    assert f"AIRFLOW__API_AUTH__JWT_SECRET={jwt}\n" in \
        (out / "airflow.env").read_text()
    # the account the pod template names exists, with the pod-launcher Role
    rbac = {d["kind"]: d for d in yaml.safe_load_all(
        (out / "rbac.yaml").read_text())}
    tpl = yaml.safe_load((out / "pod-template.yaml").read_text())
    sa = tpl["spec"]["serviceAccountName"]
    assert rbac["ServiceAccount"]["metadata"] == {
        "name": sa, "namespace": "airflow-tasks",
        "labels": {"app.kubernetes.io/managed-by": "dagfs-provision"}}
    assert rbac["RoleBinding"]["subjects"][0]["name"] == sa
    assert rbac["RoleBinding"]["roleRef"]["name"] == \
        rbac["Role"]["metadata"]["name"]
    assert "create" in rbac["Role"]["rules"][0]["verbs"]
    validate(out / "pod-template.yaml", out / "namespace.yaml",
             out / "storage.yaml", out / "secrets.yaml",
             out / "airflow-config.yaml", out / "rbac.yaml")
    for doc in yaml.safe_load_all((out / "secrets.yaml").read_text()):
        if doc["metadata"]["name"] == "airflow-metadata":  # the VMs' database
            assert b"@10.0.0.5:5432/airflow" in \
                base64.b64decode(doc["data"]["connection"])
    tpl = yaml.safe_load((out / "pod-template.yaml").read_text())
    vols = {v["name"]: v for v in tpl["spec"]["volumes"]}
    assert vols["airflow-config"]["configMap"]["name"] == "airflow-config"
    golden = GOLDEN / "vm"
    files = ["dagfs.service", "airflow-api-server.service",
             "airflow-scheduler.service", "airflow-dag-processor.service",
             "limits.conf", "airflow.cfg", "install.sh", "dagfs.conf",
             "pod-template.yaml", "storage.yaml", "airflow-config.yaml",
             "rbac.yaml"]
    if os.environ.get("DAGFS_UPDATE_GOLDEN"):
        golden.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(out / f, golden / f)
    for f in files:
        assert (out / f).read_text() == (golden / f).read_text(), f


@pytest.mark.parametrize("spec", [
    "s3:airflow-dags/team-b/,at=b", "git:https://e.com/x/my.dags.git,at=m",
    "dir:{tmp}/team-c/,at=d", "s3:bucket,at=s"])
def test_provisioner_names_sources_as_the_daemon_does(tmp_path, secrets, spec):
    """The [source NAME] the provisioner renders is the name `dagfs mount
    --source SPEC` gives the same spec (status, revisions and metrics
    are keyed by it)."""
    (tmp_path / "team-c").mkdir()
    spec = spec.format(tmp=tmp_path)
    out = tmp_path / "vm"
    run_prov("render", out, "--target", "vm", "--source", spec,
             *fixed_args(secrets))
    rendered = re.findall(r"^\[source ([^\]]+)\]$",
                          (out / "dagfs.conf").read_text(), re.M)
    conf = tmp_path / "empty.conf"
    conf.write_text("[dagfs]\n")
    r = subprocess.run([str(build_dir() / "sidecar" / "dagfs"), "check-config",
                        "--config", str(conf), "--source", spec],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    daemon = re.findall(r"^  (\S+) at /", r.stdout, re.M)
    assert rendered == daemon and len(daemon) == 1, (rendered, daemon)


def test_provisioner_refuses_two_sources_of_one_name(tmp_path):
    r = run_prov("render", tmp_path / "out", "--node", "n1", "--source",
                 "git:https://e.com/a/dags.git,at=a", "--source",
                 "git:https://e.com/b/dags.git,at=b", check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "two sources are named dags" in lines[0], \
        r.stderr
    assert not (tmp_path / "out" / "values.yaml").exists()


@pytest.mark.parametrize("args, message", [
    (["--executor", "SequentialExecutor"], "unknown executor 'SequentialExecutor'"),
    (["--git-ssh-key", "/nonexistent/key"], "missing key file /nonexistent/key"),
    (["--node-port", "80"], "out of range"),
    (["--node-port", "99999"], "not a number in range"),
    (["--namespace", "Airflow_NS"], "invalid namespace name 'Airflow_NS'"),
    (["--mode", "nfs"], "unknown mode 'nfs'"),
    (["--worker", "celery"], "unknown worker 'celery'"),
    (["--worker", "pinned", "--bundle", "none", "--executor",
      "CeleryExecutor"],
     "--worker pinned needs --executor KubernetesExecutor"),
    (["--db-user", "air flow"], "invalid database user or name"),
    (["--storage", "hostpath", "--node", ""], "needs --node"),
    (["--source", "ftp:x"], "unknown source type 'ftp'"),
    (["--source", "dir:/srv/dags"], "in Kubernetes use git or s3"),
    (["--source", "git:https://e.com/a.git", "--source",
      "git:https://e.com/b.git,at=b"], "at=/b overlaps source a (at=/)"),
    (["--source", "git:https://e.com/a.git,at=x/", "--source",
      "git:https://e.com/b.git,at=/x/y"], "at=/x/y overlaps source a (at=/x)"),
    (["--bogus"], "unknown option '--bogus'"),
    (["--pin-url", "ftp://x"], "is not an http:// or https:// URL"),
    (["--api-server-url", "10.0.0.1:8080"], "is not an http:// or https://"),
    (["--source", "git:https://e.com/d.git,name=a b"], "invalid name 'a b'"),
    (["--storage-class", "fast"], "--storage-class: not with --storage hostpath"),
    (["--storage", "class", "--node", "n1"], "--node: only with --storage"),
    (["--jwt-secret-file", "/nonexistent/jwt"], "--jwt-secret-file: missing"),
    (["--airflow-version", "2.10.5"], "--airflow-version: '2.10.5'"),
    (["--chart-version", "1.2"], "--chart-version: '1.2' is not a version"),
    (["--db-host", ""], "--db-host: empty host"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, message):
    base = ["render", tmp_path / "out", "--node", "n1"]
    if "--source" not in args:
        base += ["--source", "git:https://example.com/d.git"]
    r = run_prov(*base, *args, check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "out" / "values.yaml").exists()


def test_generated_secrets_are_kept_private_and_stable(tmp_path):
    out = tmp_path / "out"
    args = ["render", out, "--source", "git:https://example.com/d.git",
            "--node", "n1"]
    r1 = run_prov(*args)
    kept = {f.name: f.read_text() for f in (out / ".secrets").iterdir()}
    fernet = base64.urlsafe_b64decode(kept["fernet-key"])
    assert len(fernet) == 32
    assert len(bytes.fromhex(kept["webserver-secret-key"])) == 16
    for f in (out / ".secrets").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "secrets.yaml").stat().st_mode) == 0o600
    r2 = run_prov(*args)  # a re-run reuses them: no key rotation on upgrade
    assert kept == {f.name: f.read_text() for f in (out / ".secrets").iterdir()}
    for r in (r1, r2):
        for v in kept.values():
            assert v not in r.stdout and v not in r.stderr


def test_database_password_is_url_escaped(tmp_path):
    import urllib.parse
    import yaml
    pw = tmp_path / "pw"
    pw.write_text("p@ss:w/rd%#\n")
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--node", "n1", "--db-password-file", pw)
    for doc in yaml.safe_load_all((out / "secrets.yaml").read_text()):
        if doc["metadata"]["name"] == "airflow-metadata":
            url = base64.b64decode(doc["data"]["connection"]).decode()
        if doc["metadata"]["name"] == "airflow-postgresql-auth":
            assert base64.b64decode(doc["data"]["password"]) == b"p@ss:w/rd%#"
    u = urllib.parse.urlsplit(url)
    assert urllib.parse.unquote(u.password) == "p@ss:w/rd%#"
    assert u.hostname == "airflow-postgresql.airflow" and u.path == "/airflow"


def stand_ins(tmp_path):
    """kubectl and helm STAND-INS: they record their arguments and exit 0."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("kubectl", "helm", "sh"):
        if tool == "sh":
            continue
        p = bin_dir / tool
        p.write_text(f"#!/bin/sh\n# stand-in for {tool}: records, runs nothing\n"
                     f"echo \"{tool} $*\" >> {log}\n")
        p.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    return env, log


def test_apply_with_stand_ins_is_idempotent(tmp_path, secrets):
    env, log = stand_ins(tmp_path)
    out = tmp_path / "out"
    args = ["apply", out, "--source", "git:https://example.com/d.git",
            "--node", "n1", *fixed_args(secrets)]
    run_prov(*args, env=env)
    first = log.read_text().splitlines()
    assert first[0] == f"kubectl apply -f {out}/namespace.yaml"
    assert f"kubectl apply -n airflow -f {out}/secrets.yaml" in first
    assert f"kubectl apply -n airflow -f {out}/dagfs-service.yaml" in first
    helm = [c for c in first if c.startswith("helm ")]
    assert helm == [f"helm upgrade --install airflow airflow --repo "
                    f"https://airflow.apache.org --version 1.21.0 --namespace "
                    f"airflow --values {out}/values.yaml --wait --timeout 20m"]
    # hostPath volumes get their owners (50000, PostgreSQL's 1001) first
    wait = ("kubectl wait -n airflow --for=condition=complete "
            "job/airflow-dagfs-volumes --timeout=5m")
    job = f"{out}/volumes-job.yaml"
    assert first.index(f"kubectl apply -f {out}/storage.yaml") < \
        first.index(f"kubectl delete -n airflow -f {job} --ignore-not-found "
                    "--wait") < \
        first.index(f"kubectl apply -n airflow -f {job}") < \
        first.index(wait) < first.index(helm[0])
    run_prov(*args, env=env)  # a re-run upgrades the same way
    assert log.read_text().splitlines() == first * 2
    secret = (secrets / "db").read_text().strip()
    assert secret not in log.read_text()


def test_dry_run_prints_and_runs_nothing(tmp_path, secrets):
    env, log = stand_ins(tmp_path)
    r = run_prov("apply", tmp_path / "out", "--dry-run", "--source",
                 "git:https://example.com/d.git", "--node", "n1",
                 *fixed_args(secrets), env=env)
    assert "+ helm upgrade --install airflow" in r.stdout
    assert "+ kubectl apply -f" in r.stdout
    assert not log.exists()


# ------------------------------------------------------- pod simulation

CONTAINER = r"""
import os, subprocess, sys
base = sys.argv[1]
subprocess.run(["mount", "--make-rslave", base], check=True)
print("ready", flush=True)
for line in sys.stdin:
    path = os.path.join(base, line.strip())
    try:
        with open(path) as f:
            print("ok " + f.read().replace("\n", "|"), flush=True)
    except OSError as e:
        print(f"err {e.errno}", flush=True)
"""


def stop(proc):
    """SIGTERM a daemon the test started, SIGKILL if it lingers."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def readyz(port):
    """dagfs's /readyz on loopback answers 200 (the startup probe)."""
    try:
        return urllib.request.urlopen(
            f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
    except OSError:
        return False


class Container:
    """A process in its own mount namespace, slave to the pod's volume:
    what an Airflow container with mountPropagation HostToContainer is."""

    def __init__(self, base):
        self.p = subprocess.Popen(
            ["unshare", "-m", "--propagation", "unchanged", PY, "-c",
             CONTAINER, str(base)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def read(self, rel):
        self.p.stdin.write(rel + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait(timeout=10)


def sidecar(base, src, cache, log):
    """dagfs in its own mount namespace whose copy of the volume stays
    shared with the pod (Bidirectional)."""
    dagfs = build_dir() / "sidecar" / "dagfs"
    return subprocess.Popen(
        ["unshare", "-m", "--propagation", "unchanged", str(dagfs), "mount",
         "--cache", str(cache), "--source", f"dir:{src},name=dags",
         "--allow-other", str(base / "mnt")], stderr=open(log, "ab"))


def test_pod_simulation_sidecar_restart(tmp_path):
    if not os.path.exists("/dev/fuse") or shutil.which("unshare") is None:
        skip_or_fail("needs /dev/fuse and unshare")
    src = tmp_path / "src"
    src.mkdir()
    (src / "dag.py").write_text("revision 1\n")
    base = tmp_path / "pod-volume"  # the emptyDir on the node
    (base / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "--bind", base, base], check=True)
    subprocess.run(["mount", "--make-rshared", base], check=True)
    containers, side = [], None
    try:
        containers = [Container(base), Container(base)]
        side = sidecar(base, src, tmp_path / "cache", tmp_path / "side.log")
        for c in containers:
            wait_for(lambda: c.read("mnt/dag.py") == "ok revision 1|",
                     timeout=20, what="container reads through the sidecar")
        side.kill()  # the sidecar crashes: the mount is dead
        side.wait()
        for c in containers:  # pages already read may still be cached
            # ENOTCONN, or ECONNABORTED for a request the kill cut short
            assert c.read("mnt/never-looked-up.py") in ("err 107", "err 103")
        (src / "dag.py").write_text("revision 2\n")
        side = sidecar(base, src, tmp_path / "cache", tmp_path / "side.log")
        for c in containers:  # the same processes, not restarted
            wait_for(lambda: c.read("mnt/dag.py") == "ok revision 2|",
                     timeout=20, what="container reads after the restart")
    finally:
        stop(side)
        for c in containers:
            c.close()
        subprocess.run(["umount", "-R", "-l", str(base)])


# ------------------------------------------- pinned one-shot worker

def pinned_init(out, root, pin_url):
    """The rendered pinned init container, run as a process: its own
    command and environment, with the pod's paths moved under @root."""
    import yaml
    pod = yaml.safe_load((out / "pod-template-pinned.yaml").read_text())
    init = pod["spec"]["initContainers"][0]
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    (root / "dagfs.conf").write_text(conf["data"]["dagfs.conf"])
    script = init["command"][2]
    script = script.replace("/etc/dagfs/dagfs.conf", str(root / "dagfs.conf"))
    script = script.replace(" /dags", f" {root}/dags")
    assert "/dags" not in script.replace(f"{root}/dags", "")
    env = {e["name"]: e["value"] for e in init["env"]}
    env["DAGFS_PIN_URL"] = pin_url
    env["PATH"] = f"{build_dir() / 'sidecar'}:{os.environ['PATH']}"
    return subprocess.run(init["command"][:2] + [script], env=env,
                          capture_output=True, text=True, timeout=120)


def test_pinned_worker_runs_the_schedulers_revision(tmp_path, git_daemon,
                                                    git_repo):
    """The scheduler's dagfs serves commit A; B is pushed before the task
    pod starts; the pinned init container still materialises A."""
    dagfs = build_dir() / "sidecar" / "dagfs"
    if not dagfs.exists():
        skip_or_fail(f"{dagfs} not built")
    git_repo.write("dags/etl.py", "revision = 'A'\n")
    first = git_repo.commit("A")
    url = git_daemon.url(git_repo)
    port = free_port()
    sched = subprocess.Popen(
        [str(dagfs), "mount", "--materialize", str(tmp_path / "sched"),
         "--cache", str(tmp_path / "sched-cache"), "--http",
         f"127.0.0.1:{port}", "--source", f"git:{url},name=dags,period=1h"],
        stderr=open(tmp_path / "sched.log", "wb"))
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        def serves_a():
            try:
                body = urllib.request.urlopen(metrics, timeout=2).read()
            except OSError:
                return False
            return first.encode() in body
        wait_for(serves_a, timeout=30, what="the scheduler's dagfs serves A")
        git_repo.write("dags/etl.py", "revision = 'B'\n")
        git_repo.commit("B")

        out = tmp_path / "out"
        run_prov("render", out, "--node", "n1", "--source",
                 f"git:{url},name=dags", "--pin-url", "http://unused/")
        root = tmp_path / "pod"
        (root / "dags").mkdir(parents=True)  # the emptyDir
        r = pinned_init(out, root, metrics)
        assert r.returncode == 0, r.stderr
        assert f"source dags pinned to {first}" in r.stderr
        assert (root / "dags/current/dags/etl.py").read_text() == \
            "revision = 'A'\n"
        assert (root / "dags/mnt/dags/etl.py").read_text() == \
            "revision = 'A'\n"  # FUSE mode's dags_folder works too

        sched.terminate()  # the scheduler is gone: fail, saying why
        sched.wait(timeout=15)
        root2 = tmp_path / "pod2"
        (root2 / "dags").mkdir(parents=True)
        r = pinned_init(out, root2, f"http://127.0.0.1:{free_port()}/metrics")
        assert r.returncode != 0
        assert r.stderr.strip().splitlines()[-1].startswith(
            "dagfs-sync: cannot read the scheduler's revisions"), r.stderr
        assert not (root2 / "dags/current").exists()
    finally:
        if sched.poll() is None:
            sched.kill()
            sched.wait()


def rendered_sidecar(out, base, cache, port):
    """The FUSE sidecar exactly as values.yaml renders it for the
    dag-processor, as a process in its own mount namespace; the pod's paths
    (/dags, /var/cache/dagfs, /etc/dagfs) moved under the test's."""
    import yaml
    v = yaml.safe_load((out / "values.yaml").read_text())
    c = v["dagProcessor"]["extraInitContainers"][0]
    assert c["restartPolicy"] == "Always"
    script = c["command"][2]
    for old, new in (("/etc/dagfs/dagfs.conf", str(out / "dagfs.conf")),
                     ("/var/cache/dagfs", str(cache)),
                     ("/dags/", f"{base}/")):
        script = script.replace(old, new)
    env = dict(os.environ,
               PATH=f"{build_dir() / 'sidecar'}:{os.environ['PATH']}")
    return subprocess.Popen(
        ["unshare", "-m", "--propagation", "unchanged", *c["command"][:2],
         script], env=env, stderr=open(out / "sidecar.log", "ab"))


def test_pod_simulation_rendered_fuse_sidecar(tmp_path, git_daemon, git_repo):
    """values.yaml's own sidecar command, serving a git source: the
    containers read through it, it is killed and restarted, they read
    the new revision without a restart; /readyz gates as the probes do."""
    if not os.path.exists("/dev/fuse") or shutil.which("unshare") is None:
        skip_or_fail("needs /dev/fuse and unshare")
    git_repo.write("etl.py", "revision 1\n")
    git_repo.commit("1")
    port = free_port()
    out = tmp_path / "out"
    run_prov("render", out, "--node", "n1", "--dagfs-http-port", port,
             "--source", f"git:{git_daemon.url(git_repo)},name=dags,"
             "period=200ms")
    import yaml
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    (out / "dagfs.conf").write_text(conf["data"]["dagfs.conf"])
    base = tmp_path / "pod-volume"
    base.mkdir()
    subprocess.run(["mount", "--bind", base, base], check=True)
    subprocess.run(["mount", "--make-rshared", base], check=True)
    containers, side = [], None
    try:
        side = rendered_sidecar(out, base, tmp_path / "cache", port)
        wait_for(lambda: readyz(port), timeout=30,
                 what="the sidecar's startup probe")
        containers = [Container(base), Container(base)]
        for c in containers:
            assert c.read("mnt/etl.py") == "ok revision 1|"
        side.kill()
        side.wait()
        git_repo.write("etl.py", "revision 2\n")
        git_repo.commit("2")
        side = rendered_sidecar(out, base, tmp_path / "cache", port)
        wait_for(lambda: readyz(port), timeout=30,
                 what="ready again after the restart")
        for c in containers:  # the same processes, not restarted
            wait_for(lambda: c.read("mnt/etl.py") == "ok revision 2|",
                     timeout=20, what="container reads revision 2")
    finally:
        stop(side)
        for c in containers:
            c.close()
        subprocess.run(["umount", "-R", "-l", str(base)])


def test_vm_apply_dry_run(tmp_path, secrets):
    """--dry-run only: a real run executes install.sh on this machine."""
    env, log = stand_ins(tmp_path)
    out = tmp_path / "vm"
    r = run_prov("apply", out, "--target", "vm", "--dry-run", "--source",
                 "git:https://example.com/d.git", "--storage", "class",
                 "--storage-class", "standard", *fixed_args(secrets), env=env)
    lines = [l for l in r.stdout.splitlines() if l.startswith("+ ")]
    assert f"+ kubectl apply -n airflow -f {out}/airflow-config.yaml" in lines
    assert f"+ kubectl apply -n airflow -f {out}/rbac.yaml" in lines
    assert lines[-1] == f"+ sh {out}/install.sh"
    assert not any(l.startswith("+ helm") for l in lines)
    assert not log.exists()
