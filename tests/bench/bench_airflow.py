#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmarks with real Apache Airflow 3 (tests/rigs/airflow_rig.py),
side by side in one run. Run with the Airflow venv's python:

    V=/var/cache/dagfs-test/venv-airflow-*; DAGFS_BUILD=build \\
        $V/bin/python tests/bench/bench_airflow.py [push|pinned|parse|all] [--out FILE]

push    push -> new version recorded by Airflow (dag_bundle.version in its
        database), --pushes pushes each: DagfsDagBundle over a git source
        with period=1s; over one with period=300s and the webhook (POST
        /sync right after the push, as a forge would), both at the bundle's
        default refresh_interval (1 s); Airflow's
        GitDagBundle at refresh_interval=1 (with bundle_refresh_check_interval
        1: the smallest it does) and, --default-pushes of them, at its
        default refresh_interval (300 s), measured meanwhile.
pinned  a task's bundle preparation on a worker with empty bundle storage,
        at a commit --behind commits old of a --files file repository:
        DagfsDagBundle (the worker's dagfs has a newer commit and fetches
        the old one by id) vs GitDagBundle (clones); time of initialize()
        and what it stored: Airflow's bundle storage (the git bundle's bare
        clone and checkout) and the growth of dagfs's cache (the fetched
        pack, new blobs and the snapshot).
parse   the dag-processor (`airflow dag-processor -n 1`) parsing --dags
        generated DAG files once over a dagfs mount (dir source) and over
        the same files on a native directory; median of --rounds.

Every figure is printed with `uptime`: this machine is shared.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "rigs"))

from airflow_rig import Airflow, Postgres, free_port, wait  # noqa: E402
from conftest import Dagfs  # noqa: E402
from git_servers import Servers  # noqa: E402

BUNDLE = "dagfs_airflow.DagfsDagBundle"
GIT = "airflow.providers.git.bundles.git.GitDagBundle"


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def dag_text(dag_id, n):
    return (f"from airflow.sdk import dag, task\n# revision {n}\n\n"
            f"@dag(dag_id={dag_id!r}, schedule=None, catchup=False)\n"
            "def d():\n    @task\n    def t():\n        return 1\n    t()\n\nd()\n")


def mount(base, name, specs, args=()):
    m = Dagfs(base / name, base / f"{name}.cache", specs, list(args),
              stderr_path=base / f"{name}.stderr")
    (base / name).mkdir(exist_ok=True)
    m.start(ready=lambda p: (p / ".dagfs" / "status.json").exists()
            and all(v["revision"] for v in json.loads(
                (p / ".dagfs" / "status.json").read_text())["sources"].values()),
            timeout=120)
    return m


def bundle_version(pg, name):
    rows = pg.psql(f"select version from dag_bundle where name = '{name}'")
    return rows[0][0] if rows and rows[0] else None


# ----------------------------------------------------------------- push

def bench_push(base, pushes, default_pushes):
    base.mkdir(parents=True, exist_ok=True)
    git = Servers(base / "git")
    daemon = git.daemon()
    repos = {}
    for name in ("period", "hook", "git1", "git300"):
        r = git.repo(name)
        r.write(f"{name}.py", dag_text(f"push_{name}", 0))
        r.commit("first")
        repos[name] = r
    hook_port = free_port()
    mp = mount(base, "mp", [f"git:{daemon.url(repos['period'])},name=period,period=1s"])
    mh = mount(base, "mh", [f"git:{daemon.url(repos['hook'])},name=hook,period=300s"],
               ["--http", f"127.0.0.1:{hook_port}"])
    bundles = [
        {"name": "period", "classpath": BUNDLE, "kwargs": {"mount": str(mp.mnt), "source": "period"}},
        {"name": "hook", "classpath": BUNDLE, "kwargs": {"mount": str(mh.mnt), "source": "hook"}},
        {"name": "git1", "classpath": GIT, "kwargs": {
            "repo_url": daemon.url(repos["git1"]), "tracking_ref": "main", "refresh_interval": 1}},
        {"name": "git300", "classpath": GIT, "kwargs": {
            "repo_url": daemon.url(repos["git300"]), "tracking_ref": "main",
            "refresh_interval": 300}},
    ]
    pg = Postgres(base / "pg").start()
    af = Airflow(pg.url, bundles, root=base / "airflow")
    results = {}
    try:
        af.start()
        for name in repos:
            wait(lambda: bundle_version(pg, name), 600, f"bundle {name}'s first version")

        def one(name, i, kick=None):
            r = repos[name]
            r.write(f"{name}.py", dag_text(f"push_{name}", i))
            c = r.commit(f"push {i}")
            t0 = time.monotonic()
            if kick:
                kick()
            wait(lambda: bundle_version(pg, name) == c, 900, f"{name} to record {c}",
                 interval=0.05)
            return time.monotonic() - t0

        def kick():
            req = urllib.request.Request(f"http://127.0.0.1:{hook_port}/sync?source=hook",
                                         data=b"", method="POST")
            urllib.request.urlopen(req, timeout=10).read()

        slow = []
        bg = threading.Thread(target=lambda: slow.extend(
            one("git300", i) for i in range(1, default_pushes + 1)), daemon=True)
        bg.start()
        for name, k in (("period", None), ("hook", kick), ("git1", None)):
            results[name] = [one(name, i, k) for i in range(1, pushes + 1)]
            time.sleep(1)
        bg.join()
        results["git300"] = slow
    finally:
        af.stop()
        pg.stop()
        for m in (mp, mh):
            m.stop()
        git.close()
    labels = {"period": "DagfsDagBundle, git source period=1s",
              "hook": "DagfsDagBundle, git source period=300s + webhook (POST /sync)",
              "git1": "GitDagBundle, refresh_interval=1 (bundle_refresh_check_interval=1)",
              "git300": "GitDagBundle, refresh_interval=300 (default)"}
    out = [f"push -> version recorded by Airflow 3.3.2 (dag_bundle.version), {uptime()}", "",
           "| bundle | pushes | p50 (s) | p95 (s) | max (s) |", "|---|---:|---:|---:|---:|"]
    for k, v in results.items():
        if not v:
            continue
        out.append(f"| {labels[k]} | {len(v)} | {statistics.median(v):.2f} | "
                   f"{pct(v, 95):.2f} | {max(v):.2f} |")
    return "\n".join(out)


# --------------------------------------------------------------- pinned

PINNED = """
import json, os, sys, time
from pathlib import Path
cls = sys.argv[1]; kwargs = json.loads(sys.argv[2]); version = sys.argv[3]
from airflow._shared.module_loading import import_string
b = import_string(cls)(name="pinned", version=version, **kwargs)
t0 = time.monotonic()
b.initialize()
data = (Path(b.path) / "dag.py").read_bytes()
print(json.dumps({"s": time.monotonic() - t0, "dag": data.decode()}))
"""


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


def du(p):
    return sum(f.stat().st_size for f in pathlib.Path(p).rglob("*") if f.is_file()
               and not f.is_symlink())


def bench_pinned(base, files, behind, venv):
    base.mkdir(parents=True, exist_ok=True)
    git = Servers(base / "git")
    daemon = git.daemon()
    repo = git.repo("big")
    for i in range(files):
        repo.write(f"pkg{i % 20}/mod{i}.py", f"# module {i}\n" + "x = 1\n" * 40)
    repo.write("dag.py", "# version 0\n")
    old = repo.commit("base")
    for j in range(1, behind + 1):
        repo.write("dag.py", f"# version {j}\n")
        repo.write(f"pkg0/mod{j}.py", f"# changed {j}\n" + "y = 2\n" * 40)
        repo.commit(f"c{j}")
    port = free_port()
    m = mount(base, "wm", [f"git:{daemon.url(repo)},name=g,period=300s"],
              ["--http", f"127.0.0.1:{port}"])
    rows = []
    try:
        for label, cls, kwargs in (
                ("DagfsDagBundle", BUNDLE, {"mount": str(m.mnt), "source": "g"}),
                ("GitDagBundle", GIT, {"repo_url": daemon.url(repo), "tracking_ref": "main"})):
            storage = base / f"storage-{label}"
            env = dict(os.environ, AIRFLOW_HOME=str(base / "home"),
                       AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH=str(storage),
                       AIRFLOW__CORE__LOAD_EXAMPLES="False")
            before = metric(port, "dagfs_source_fetched_bytes_total")
            cache0 = du(m.cache)
            r = subprocess.run([str(venv / "bin" / "python"), "-c", PINNED, cls,
                                json.dumps(kwargs), old], env=env, capture_output=True,
                               text=True, timeout=600)
            if r.returncode:
                raise RuntimeError(f"{label}: {r.stderr[-3000:]}")
            res = json.loads(r.stdout.strip().splitlines()[-1])
            assert res["dag"] == "# version 0\n", res
            fetched = (metric(port, "dagfs_source_fetched_bytes_total") - before
                       if cls == BUNDLE else du(storage))
            grown = du(m.cache) - cache0 if cls == BUNDLE else 0
            rows.append((label, res["s"], fetched, du(storage), grown))
    finally:
        m.stop()
        git.close()
    out = [f"a task at a commit {behind} commits behind, {files} files, empty bundle storage, "
           f"{uptime()}", "",
           "| bundle | initialize() + read (s) | Airflow bundle storage after (bytes) "
           "| dagfs cache growth (bytes) |", "|---|---:|---:|---:|"]
    for label, s, _, st, grown in rows:
        out.append(f"| {label} | {s:.2f} | {st:,} | {grown:,} |")
    return "\n".join(out)


# ---------------------------------------------------------------- parse

def bench_parse(base, ndags, rounds):
    base.mkdir(parents=True, exist_ok=True)
    src = base / "corpus"
    for i in range(ndags):
        p = src / f"team{i % 10}" / f"dag_{i}.py"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(dag_text(f"gen_{i}", i))
    m = mount(base, "pm", [f"dir:{src},name=c"])
    pg = Postgres(base / "pg2").start()
    times = {"native": [], "dagfs": []}
    try:
        for r in range(rounds):
            for target, path in (("native", src), ("dagfs", m.mnt)):
                db = f"parse_{target}_{r}"
                pg.psql(f"create database {db}")
                af = Airflow(pg.url.rsplit("/", 1)[0] + "/" + db,
                             [{"name": "dags-folder",
                               "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                               "kwargs": {"path": str(path)}}],
                             root=base / f"af-{target}-{r}")
                af.cli("db", "migrate", timeout=600)
                t0 = time.monotonic()
                af.cli("dag-processor", "-n", "1", timeout=3600)
                times[target].append(time.monotonic() - t0)
                shutil.rmtree(af.root, ignore_errors=True)
    finally:
        m.stop()
        pg.stop()
    nat, dfs = statistics.median(times["native"]), statistics.median(times["dagfs"])
    return "\n".join([
        f"dag-processor -n 1 over {ndags} DAG files, median of {rounds}, {uptime()}", "",
        "| target | parse all once (s) | × native | runs (s) |", "|---|---:|---:|---|",
        f"| native directory | {nat:.1f} | 1.00 | {', '.join(f'{t:.1f}' for t in times['native'])} |",
        f"| dagfs (dir source) | {dfs:.1f} | {dfs / nat:.3f} | "
        f"{', '.join(f'{t:.1f}' for t in times['dagfs'])} |"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", default="all", choices=["push", "pinned", "parse", "all"])
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--default-pushes", type=int, default=3)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--behind", type=int, default=20)
    ap.add_argument("--dags", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    from airflow_rig import venv_dir
    venv = venv_dir()
    base = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-bench-af-"))
    base.chmod(0o755)
    parts = []
    try:
        if a.what in ("push", "all"):
            parts.append(bench_push(base / "push", a.pushes, a.default_pushes))
            print(parts[-1], flush=True)
        if a.what in ("pinned", "all"):
            parts.append(bench_pinned(base / "pinned", a.files, a.behind, venv))
            print(parts[-1], flush=True)
        if a.what in ("parse", "all"):
            parts.append(bench_parse(base / "parse", a.dags, a.rounds))
            print(parts[-1], flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    if a.out:
        pathlib.Path(a.out).write_text("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
