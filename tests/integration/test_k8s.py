# SPDX-License-Identifier: Apache-2.0
"""dagfs-provision and the pod layout, offline: golden renders, every
rendered document against the Kubernetes 1.31 and Airflow chart 1.18.0
schemas (../shared/schemas/validate.py), input validation, secrets
hygiene, `apply` through kubectl/helm STAND-INS that record their
arguments (there is no cluster here), and a pod simulated with real
mount namespaces: dagfs as the sidecar mounting into a shared directory,
two "containers" with slave propagation reading through it, the sidecar
killed and restarted, the containers reading again without a restart.
"""

import base64
import os
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
            sec / "web", "--db-password-file", sec / "db"]


VARIANTS = {
    "fuse-native-hostpath": ["--node", "node-1", "--timezone", "Asia/Seoul",
                             "--scheduler-replicas", "2"],
    "materialize-classic-class": ["--mode", "materialize", "--sidecar",
                                  "classic", "--worker", "pinned",
                                  "--storage", "class",
                                  "--storage-class", "standard",
                                  "--service", "loadbalancer"],
}


def validate(*files, airflow_values=False, merge=False):
    cmd = [PY, str(VALIDATE), "-q"]
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
    validate(out / "values.yaml", airflow_values=True)
    validate(out / "values.yaml", airflow_values=True, merge=True)
    check_config(out, tmp_path)
    golden = GOLDEN / variant
    if os.environ.get("DAGFS_UPDATE_GOLDEN"):
        golden.mkdir(parents=True, exist_ok=True)
        for d in docs + ["values.yaml"]:
            shutil.copy(out / d, golden / d)
    for d in docs + ["values.yaml"]:
        assert (out / d).read_text() == (golden / d).read_text(), d


def test_k8s_values_wire_dagfs_into_every_component(tmp_path, secrets):
    import yaml
    out = tmp_path / "out"
    run_prov("render", out, "--source", "git:https://example.com/d.git",
             "--node", "n1", *fixed_args(secrets))
    v = yaml.safe_load((out / "values.yaml").read_text())
    assert v["dags"]["gitSync"]["enabled"] is False
    assert v["dags"]["persistence"]["enabled"] is False
    assert v["executor"] == "KubernetesExecutor"
    for job in ("migrateDatabaseJob", "createUserJob"):  # helm --wait
        assert v[job]["useHelmHooks"] is False
    for comp in ("scheduler", "apiServer", "dagProcessor", "triggerer"):
        side = v[comp]["extraInitContainers"][0]
        assert side["restartPolicy"] == "Always"
        assert side["startupProbe"]["httpGet"]["path"] == "/readyz"
        prop = {m["name"]: m.get("mountPropagation")
                for m in side["volumeMounts"]}
        assert prop["dags"] == "Bidirectional"
        air = {m["name"]: m for m in v[comp]["extraVolumeMounts"]}
        assert air["dags"]["mountPropagation"] == "HostToContainer"
    assert "podTemplate" not in v  # the chart's own: env, airflow.cfg, logs
    assert v["workers"]["extraInitContainers"][0]["restartPolicy"] == "Always"
    assert v["workers"]["extraVolumeMounts"][0]["mountPropagation"] == \
        "HostToContainer"
    pinned = yaml.safe_load((out / "pod-template-pinned.yaml").read_text())
    init = pinned["spec"]["initContainers"][0]
    assert "restartPolicy" not in init
    assert "\ndagfs sync --once" in init["command"][2]
    assert not init["securityContext"].get("privileged")
    conf = yaml.safe_load((out / "dagfs-config.yaml").read_text())
    assert "password-file" not in conf["data"]["dagfs.conf"]


def test_vm_render(tmp_path, secrets):
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
    validate(out / "pod-template.yaml", out / "namespace.yaml",
             out / "storage.yaml", out / "secrets.yaml",
             out / "airflow-config.yaml")
    import yaml
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
             "pod-template.yaml", "storage.yaml", "airflow-config.yaml"]
    if os.environ.get("DAGFS_UPDATE_GOLDEN"):
        golden.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(out / f, golden / f)
    for f in files:
        assert (out / f).read_text() == (golden / f).read_text(), f


@pytest.mark.parametrize("args, message", [
    (["--executor", "SequentialExecutor"], "unknown executor 'SequentialExecutor'"),
    (["--git-ssh-key", "/nonexistent/key"], "missing key file /nonexistent/key"),
    (["--node-port", "80"], "out of range"),
    (["--node-port", "99999"], "not a number in range"),
    (["--namespace", "Airflow_NS"], "invalid namespace name 'Airflow_NS'"),
    (["--mode", "nfs"], "unknown mode 'nfs'"),
    (["--worker", "celery"], "unknown worker 'celery'"),
    (["--worker", "pinned", "--executor", "CeleryExecutor"],
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
                    f"https://airflow.apache.org --version 1.18.0 --namespace "
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
        if side and side.poll() is None:
            side.send_signal(signal.SIGTERM)
            try:
                side.wait(timeout=10)
            except subprocess.TimeoutExpired:
                side.kill()
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
    scheduler, as a process in its own mount namespace; the pod's paths
    (/dags, /var/cache/dagfs, /etc/dagfs) moved under the test's."""
    import yaml
    v = yaml.safe_load((out / "values.yaml").read_text())
    c = v["scheduler"]["extraInitContainers"][0]
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

    def ready():
        try:
            return urllib.request.urlopen(
                f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
        except OSError:
            return False
    try:
        side = rendered_sidecar(out, base, tmp_path / "cache", port)
        wait_for(ready, timeout=30, what="the sidecar's startup probe")
        containers = [Container(base), Container(base)]
        for c in containers:
            assert c.read("mnt/etl.py") == "ok revision 1|"
        side.kill()
        side.wait()
        git_repo.write("etl.py", "revision 2\n")
        git_repo.commit("2")
        side = rendered_sidecar(out, base, tmp_path / "cache", port)
        wait_for(ready, timeout=30, what="ready again after the restart")
        for c in containers:  # the same processes, not restarted
            wait_for(lambda: c.read("mnt/etl.py") == "ok revision 2|",
                     timeout=20, what="container reads revision 2")
    finally:
        if side and side.poll() is None:
            side.send_signal(signal.SIGTERM)
            try:
                side.wait(timeout=10)
            except subprocess.TimeoutExpired:
                side.kill()
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
    assert lines[-1] == f"+ sh {out}/install.sh"
    assert not any(l.startswith("+ helm") for l in lines)
    assert not log.exists()
