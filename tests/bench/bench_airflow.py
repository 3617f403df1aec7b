#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmarks with real Apache Airflow 3 (tests/rigs/airflow_rig.py:
PostgreSQL, `airflow dag-processor`, `scheduler` with LocalExecutor,
`api-server`), dagfs against Airflow's own GitDagBundle, side by side in
one run. Every figure is read from Airflow's own records (its database
or REST API), never from a file dagfs serves.

  push      push -> new version recorded by Airflow, --pushes pushes per
            variant, from `git push` returning (for the webhook, before its
            POST /sync) to (a) Airflow's `dag_bundle.version` naming the
            pushed commit (the refresh; polled every 0.1 s) and (b) the
            `last_updated` Airflow stamps on the DAG's latest `dag_version`
            row once its `bundle_version` is the pushed commit (the file
            re-parsed and its DAG written: what a new run gets). Variants, each its own
            git repository behind `git daemon` and its own `airflow
            dag-processor -B NAME`, all pushing at once (interleaved):
              dagfs-1s       DagfsDagBundle, dagfs git source period=1s
              dagfs-webhook  DagfsDagBundle, period=10m, POST /sync?source=
                             on dagfs's http= after each push
              git-default    GitDagBundle, refresh_interval=300 (Airflow's
                             default [dag_processor] refresh_interval)
              git-min        GitDagBundle, refresh_interval=0 (the smallest
                             it accepts: a refresh at every check)
            Both DagfsDagBundles have refresh_interval=0 (a status.json
            read). Every bundle is checked every --check-interval s
            ([dag_processor] bundle_refresh_check_interval, 1; Airflow's
            default is 5); min_file_process_interval is Airflow's default
            30 and [core] min_serialized_dag_update_interval 0 (its default,
            30, holds back any DAG written less than 30 s before, whatever
            the bundle). Each push waits a random time first, uniform over one
            refresh cycle of its variant (300 s for git-default, 2 s for the
            others), so pushes land at every phase of the cycle.
            git-sync v4 + LocalDagBundle is not measured: `go install
            k8s.io/git-sync@...` is refused by the Go module proxy (403).
  pinned    a task on a pinned version on a worker with empty bundle
            storage: a DagRun ran at commit C; --later commits are pushed
            (Airflow records them); then, per round, the worker's bundle
            storage is emptied and the old run is cleared (Airflow reruns it
            on C). The worker is the scheduler's LocalExecutor, with its own
            [dag_processor] dag_bundle_storage_path and bundle list; its git
            traffic goes through a counting TCP proxy in front of git smart
            HTTP (lighttpd + git http-backend, basic auth), so bytes are
            counted on the server side of the wire. Reported: the task
            instance's duration (Airflow's start_date -> end_date; the
            bundle's initialize() runs inside it) cold and then warm (a
            second clear, storage kept), bytes sent by the server, and the
            XCom proves the task ran C's code. DagfsDagBundle: the worker's
            dagfs starts with an empty cache (period=10m) just before the
            round; its start (first sync of the branch head) is reported
            apart, and the fetch of C on demand during the task. The
            repository: --tree-files files of --blob-bytes random bytes,
            --history commits each rewriting one of them.
  parse     the dag-processor parsing --files generated DAG files (one
            DAG each, dag_id from the file's directory and name) once
            (`airflow dag-processor -B NAME -n 1`): native directory
            (LocalDagBundle), the same files on a dagfs mount (LocalDagBundle
            on a `dir:` source), and DagfsDagBundle (the same files, one
            source per round). Time = the last `dag.last_parsed_time` of the
            bundle's DAGs - the bundle's `dag_bundle.last_refreshed` (the
            refresh that listed the files), both Airflow's records; all
            --files DAGs must be there with no import error. --rounds
            rounds, the variants' order rotated each round; medians, and the
            ratio of the dagfs medians to native.

Prints a Markdown table per measure (and appends them to --out FILE), with
`uptime`. Run with the Airflow venv's python (tests/run.sh builds it):

    V=/var/cache/dagfs-test/venv-airflow-$(sha256sum tests/airflow/requirements-lock.txt | cut -c1-16)
    DAGFS_BUILD=build $V/bin/python tests/bench/bench_airflow.py all --out FILE

Usage: bench_airflow.py {push,pinned,parse,all} [--pushes 10]
    [--variants dagfs-1s,dagfs-webhook,git-default,git-min]
    [--check-interval 1] [--rounds 3] [--later 5] [--tree-files 100]
    [--blob-bytes 10000] [--history 200] [--files 2000] [--workdir DIR]
    [--out FILE] [--keep]
"""

import argparse
import asyncio
import json
import os
import pathlib
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tests" / "rigs"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from airflow_rig import Airflow, Postgres, Process, free_port, wait  # noqa: E402
from conftest import Dagfs, force_unmount  # noqa: E402
from git_servers import Servers  # noqa: E402

BUNDLE = "dagfs_airflow.DagfsDagBundle"
GIT = "airflow.providers.git.bundles.git.GitDagBundle"
LOCAL = "airflow.dag_processing.bundles.local.LocalDagBundle"
VARIANTS = ("dagfs-1s", "dagfs-webhook", "git-default", "git-min")


def uptime():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def mib(n):
    return f"{n / 1048576:.2f} MiB"


class Counter:
    """A TCP pass-through on loopback to @upstream_port that counts the
    bytes each way (down = upstream to client: what a client fetched)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.down = self.up = 0
        self.conns = 0
        self._lock = threading.Lock()
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            srv = self.loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0))
            self.port = srv.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()
            srv.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def reset(self):
        with self._lock:
            self.down = self.up = self.conns = 0

    def read(self):
        with self._lock:
            return self.down, self.up, self.conns

    async def _pipe(self, r, w, attr):
        try:
            while True:
                b = await r.read(65536)
                if not b:
                    break
                with self._lock:
                    setattr(self, attr, getattr(self, attr) + len(b))
                w.write(b)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                w.close()
            except (ConnectionError, OSError):
                pass

    async def _handle(self, cr, cw):
        with self._lock:
            self.conns += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self._pipe(cr, uw, "up"), self._pipe(ur, cw, "down"))

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


class Db:
    """A connection to Airflow's PostgreSQL (autocommit: every query sees
    what Airflow committed)."""

    def __init__(self, pg):
        import psycopg2  # the Airflow venv has it
        self.c = psycopg2.connect(host="127.0.0.1", port=pg.port, user="airflow",
                                  dbname="airflow")
        self.c.autocommit = True
        self.lock = threading.Lock()

    def rows(self, sql, *args):
        with self.lock, self.c.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def close(self):
        self.c.close()


class Stack:
    """PostgreSQL + an AIRFLOW_HOME with the bundle list, migrated; Airflow
    processes are started by the measures themselves."""

    def __init__(self, root, bundles, config=None):
        self.root = pathlib.Path(root)
        self.pg = Postgres(self.root / "pg").start()
        cfg = {"DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
               "DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_INTERVAL": "0",
               "DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "120"}
        cfg.update(config or {})
        try:
            self.af = Airflow(self.pg.url, bundles, root=self.root / "airflow", config=cfg)
            # the bundle as it is in this tree, not whatever the venv holds
            self.af.env["PYTHONPATH"] = str(REPO / "airflow" / "src")
            self.af.cli("db", "migrate", timeout=900)
            self.db = Db(self.pg)
        except BaseException:
            self.pg.stop()
            raise

    def env(self, **cfg):
        e = dict(self.af.env)
        e.update({f"AIRFLOW__{k}": v for k, v in cfg.items()})
        return e

    def process(self, name, argv, env=None):
        p = Process(name, [str(self.af.bin / "airflow"), *argv], env or self.af.env,
                    self.af.root / f"{name}.log").start()
        self.af.procs[name] = p
        return p

    def check_alive(self):
        self.af.check_alive()

    def stop(self):
        for p in reversed(list(self.af.procs.values())):
            p.stop()
        self.db.close()
        self.pg.stop()


def cleanup(*stops):
    """Call every one of @stops that is not None, even if one raises (then
    raise the first error once all ran): nothing is left running."""
    first = None
    for stop in stops:
        try:
            if stop:
                stop()
        except BaseException as e:  # noqa: BLE001 - raised below
            first = first or e
    if first:
        raise first


def alive_wait(st, pred, timeout, what, interval=0.5):
    """wait(@pred), failing at once if an Airflow process ended."""
    def p():
        try:
            st.check_alive()
        except AssertionError as e:
            raise SystemExit(str(e)) from None  # not retried by wait()
        return pred()
    return wait(p, timeout, what, interval)


def mount(base, name, sources, args=(), ready=None, binary=None, timeout=120):
    d = pathlib.Path(base) / name
    (d / "mnt").mkdir(parents=True, exist_ok=True)
    m = Dagfs(d / "mnt", d / "cache", sources, args=["--log-level", "notice", *args],
              stderr_path=d / "stderr", binary=binary)
    m.start(ready=ready, timeout=timeout)
    return m


def status(mnt):
    return json.loads((pathlib.Path(mnt) / ".dagfs" / "status.json").read_text())


def has_revision(source):
    def ready(mnt):
        try:
            return status(mnt)["sources"][source]["revision"]
        except (OSError, ValueError, KeyError):
            return None
    return ready


# --------------------------------------------------------------- versions

def push_dag(dag_id, mark):
    return textwrap.dedent(f"""\
        from airflow.sdk import dag, task

        MARK = {mark!r}


        @dag(dag_id={dag_id!r}, schedule=None, catchup=False, doc_md=MARK)
        def the_dag():
            @task
            def only():
                return MARK

            only()


        the_dag()
        """)


def bundle_at(db, name, commit):
    """True once Airflow's dag_bundle row of @name names @commit."""
    r = db.rows("SELECT version FROM dag_bundle WHERE name = %s", name)
    return bool(r) and r[0][0] == commit


def recorded(db, dag_id, commit):
    """Airflow's stamp of the DAG's latest version, once that version's
    bundle_version is @commit (else None)."""
    r = db.rows("SELECT bundle_version, last_updated FROM dag_version WHERE dag_id = %s "
                "ORDER BY version_number DESC LIMIT 1", dag_id)
    if r and r[0][0] == commit:
        return r[0][1].timestamp()
    return None


def bench_push(args, work, binary):
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r} (known: {', '.join(VARIANTS)})")
    srv = Servers(work / "git")
    daemon = srv.daemon()
    repos = {}
    for v in variants:
        r = srv.repo(v.replace("-", "_"))
        r.write("push.py", push_dag(dag_id(v), "push-0"))
        r.commit("push 0")
        repos[v] = r
    http_port = free_port()
    specs, names = [], []
    if "dagfs-1s" in variants:
        specs.append(f"git:{daemon.url(repos['dagfs-1s'])},name=poll,at=poll,period=1s")
        names.append("poll")
    if "dagfs-webhook" in variants:
        specs.append(f"git:{daemon.url(repos['dagfs-webhook'])},name=hook,at=hook,period=10m")
        names.append("hook")
    m = None
    if specs:
        m = mount(work, "dagfs", specs, ["--http", f"127.0.0.1:{http_port}"],
                  ready=lambda mnt: all(has_revision(n)(mnt) for n in names), binary=binary)
    bundles = []
    for v in variants:
        name = bundle_name(v)
        if v.startswith("dagfs"):
            src = "poll" if v == "dagfs-1s" else "hook"
            bundles.append({"name": name, "classpath": BUNDLE,
                            "kwargs": {"mount": str(m.mnt), "source": src,
                                       "refresh_interval": 0}})
        else:
            bundles.append({"name": name, "classpath": GIT,
                            "kwargs": {"tracking_ref": "main",
                                       "repo_url": daemon.url(repos[v]),
                                       "refresh_interval": 300 if v == "git-default" else 0}})
    st = None
    results = {}
    try:
        st = Stack(work / "stack", bundles, {
            "DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": str(args.check_interval),
            "CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0"})
        # one dag-processor first: each writes every configured bundle's
        # row at its start, and two at once collide on the primary key
        for i, v in enumerate(variants):
            st.process(f"dag-processor-{v}", ["dag-processor", "-B", bundle_name(v)])
            if i == 0:
                alive_wait(st, lambda: len(st.db.rows("SELECT name FROM dag_bundle"))
                           >= len(variants), 600, "the bundles' rows")
        first = {v: repos[v].head() for v in variants}
        for v in variants:
            alive_wait(st, lambda v=v: recorded(st.db, dag_id(v), first[v]), 600,
                       f"Airflow to record the first version of {v}")

        def pusher(v, rng):
            lat = []
            try:
                span = 300.0 if v == "git-default" else 2.0
                for i in range(1, args.pushes + 1):
                    time.sleep(rng.uniform(0, span))
                    repos[v].write("push.py", push_dag(dag_id(v), f"push-{i}"))
                    c = repos[v].commit(f"push {i}")       # returns once pushed
                    t0 = time.time()
                    if v == "dagfs-webhook":
                        req = urllib.request.Request(
                            f"http://127.0.0.1:{http_port}/sync?source=hook", data=b"{}",
                            method="POST")
                        urllib.request.urlopen(req, timeout=30).read()
                    wait(lambda: bundle_at(st.db, bundle_name(v), c), span + 300,
                         f"Airflow's dag_bundle to name push {i} of {v}", interval=0.1)
                    tb = time.time()
                    t = wait(lambda: recorded(st.db, dag_id(v), c), 300,
                             f"Airflow to record push {i} of {v}", interval=0.1)
                    lat.append((tb - t0, t - t0))
                    print(f"  {v} push {i}: bundle {tb - t0:.2f} s, dag_version "
                          f"{t - t0:.2f} s", flush=True)
                results[v] = lat
            except BaseException as e:  # noqa: BLE001 - reported below
                results[v] = e

        seed = random.Random(args.seed)
        threads = [threading.Thread(target=pusher, args=(v, random.Random(seed.random())),
                                    daemon=True) for v in variants]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        st.check_alive()
    finally:
        cleanup(st and st.stop, m and m.stop, srv.close)
    failed = {v: r for v, r in results.items() if isinstance(r, BaseException)}
    if failed:
        raise RuntimeError("; ".join(f"{v}: {e}" for v, e in failed.items()))
    lines = [f"push -> new version recorded by Airflow ({args.pushes} pushes each, "
             f"interleaved; bundle_refresh_check_interval={args.check_interval}; "
             f"`{uptime()}`)", "",
             "| variant | dag_bundle.version p50 / p95 | dag_version p50 / p95 / max |",
             "|---|---|---|"]
    for v in variants:
        b = [x[0] for x in results[v]]
        d = [x[1] for x in results[v]]
        lines.append(f"| {v} | {statistics.median(b):.2f} / {pct(b, 95):.2f} s | "
                     f"{statistics.median(d):.2f} / {pct(d, 95):.2f} / {max(d):.2f} s |")
    return lines


def dag_id(v):
    return "push_" + v.replace("-", "_")


def bundle_name(v):
    return "b_" + v.replace("-", "_")


# ----------------------------------------------------------------- pinned

def pin_dag(dag_id_, code):
    return textwrap.dedent(f"""\
        from airflow.sdk import dag, task

        CODE = {code!r}


        @dag(dag_id={dag_id_!r}, schedule=None, catchup=False)
        def the_dag():
            @task
            def only():
                return CODE

            only()


        the_dag()
        """)


def run_task(af, dag, run, timeout=600):
    """Clear @run of @dag (Airflow reruns it on its recorded version) and
    wait for the new try: (duration s from Airflow's start/end, xcom)."""
    before = af.task_instances(dag, run)["only"]["try_number"]
    af.clear_run(dag, run)

    def done():
        try:
            af.check_alive()
        except AssertionError as e:
            raise SystemExit(str(e)) from None  # not retried by wait()
        t = af.task_instances(dag, run)["only"]
        return t if t["try_number"] > before and t["state"] in ("success", "failed") else None
    t = wait(done, timeout, f"the new try of {dag} {run}", interval=0.5)
    if t["state"] != "success":
        raise RuntimeError(f"{dag} {run} try {t['try_number']}: {t['state']}; see "
                           f"{af.root}/logs")
    return t["duration"], af.xcom(dag, run, "only")


def bench_pinned(args, work, binary):
    srv = Servers(work / "git")
    http = srv.http()
    repo = srv.repo("pin")
    rng = random.Random(args.seed)
    for i in range(args.tree_files):
        repo.write(f"lib/blob{i:04d}.bin", rng.randbytes(args.blob_bytes))
    repo.write("dagfs/pin_dagfs.py", pin_dag("pin_dagfs", "old"))
    repo.write("git/pin_git.py", pin_dag("pin_git", "old"))
    repo.commit("tree", push=False)
    for i in range(args.history):
        repo.write(f"lib/blob{rng.randrange(args.tree_files):04d}.bin",
                   rng.randbytes(args.blob_bytes))
        repo.commit(f"history {i}", push=False)
    repo.write("dagfs/pin_dagfs.py", pin_dag("pin_dagfs", "pinned"))
    repo.write("git/pin_git.py", pin_dag("pin_git", "pinned"))
    pinned = repo.commit("pinned")
    subprocess.run(["git", "gc", "-q"], cwd=repo.bare, check=True)
    packed = sum(p.stat().st_size for p in repo.bare.rglob("*") if p.is_file())
    counter = Counter(http.port)
    direct = http.url(repo)
    proxied = direct.replace(f":{http.port}/", f":{counter.port}/")
    auth = f"username={http.user},password-file={http.password_file}"
    proc_m = mount(work, "proc", [f"git:{direct},name=pin,subpath=dagfs,{auth},period=1s"],
                   ready=has_revision("pin"), binary=binary)
    wdir = work / "worker"
    wspec = [f"git:{proxied},name=pin,subpath=dagfs,{auth},period=10m"]
    wstore = work / "worker-bundles"
    conn = json.dumps({"conn_type": "git", "login": http.user, "password": http.password})

    def bundles(mnt, url):
        return [{"name": "dagfs_pin", "classpath": BUNDLE,
                 "kwargs": {"mount": str(mnt), "source": "pin"}},
                {"name": "git_pin", "classpath": GIT,
                 "kwargs": {"tracking_ref": "main", "repo_url": url, "subdir": "git"}}]

    st = None
    wm = None
    rows = {"dagfs": [], "git": []}
    try:
        st = Stack(work / "stack", bundles(proc_m.mnt, direct),
                   {"DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5"})
        st.af.env["AIRFLOW_CONN_GIT_DEFAULT"] = conn
        af = st.af
        st.process("api-server", ["api-server", "-p", str(af.port), "-H", "127.0.0.1",
                                  "-w", "1"])
        st.process("dag-processor", ["dag-processor"])
        wmnt = wdir / "mnt"
        st.process("scheduler", ["scheduler"], st.env(
            DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST=json.dumps(bundles(wmnt, proxied)),
            DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH=str(wstore)))
        af.wait_healthy(600)
        for d in ("pin_dagfs", "pin_git"):
            af.wait_dag(d, 600, lambda x: x.get("bundle_version") == pinned)

        def worker_dagfs():
            nonlocal wm
            if wm:
                wm.stop()
                force_unmount(wdir / "mnt")
            shutil.rmtree(wdir, ignore_errors=True)
            counter.reset()
            t0 = time.monotonic()
            wm = mount(work, "worker", wspec, ready=has_revision("pin"), binary=binary)
            return time.monotonic() - t0, counter.read()[0]

        worker_dagfs()
        runs = {d: af.trigger(d) for d in ("pin_dagfs", "pin_git")}
        for d, r in runs.items():
            got = af.wait_run(d, r, timeout=600)
            if got["state"] != "success" or af.xcom(d, r, "only") != "pinned":
                raise RuntimeError(f"first run of {d}: {got['state']}")
            if got.get("bundle_version") != pinned:
                raise RuntimeError(f"{d} run recorded {got.get('bundle_version')}, not {pinned}")
        for i in range(args.later):
            repo.write("dagfs/pin_dagfs.py", pin_dag("pin_dagfs", f"later-{i}"))
            repo.write("git/pin_git.py", pin_dag("pin_git", f"later-{i}"))
            repo.write(f"lib/blob{rng.randrange(args.tree_files):04d}.bin",
                       rng.randbytes(args.blob_bytes))
            head = repo.commit(f"later {i}")
        for d in ("pin_dagfs", "pin_git"):
            af.wait_dag(d, 600, lambda x: x.get("bundle_version") == head)

        for k in range(args.rounds):
            for kind in (("dagfs", "git") if k % 2 == 0 else ("git", "dagfs")):
                d = f"pin_{kind}"
                if kind == "dagfs":
                    start_s, start_b = worker_dagfs()
                else:
                    shutil.rmtree(wstore / "git_pin", ignore_errors=True)
                    start_s, start_b = 0.0, 0
                shutil.rmtree(wstore / f"{kind}_pin", ignore_errors=True)
                counter.reset()
                cold, code = run_task(af, d, runs[d])
                cold_b = counter.read()[0]
                if code != "pinned":
                    raise RuntimeError(f"{d} ran {code!r}, not the pinned version's code")
                counter.reset()
                warm, code = run_task(af, d, runs[d])
                warm_b = counter.read()[0]
                if code != "pinned":
                    raise RuntimeError(f"{d} (warm) ran {code!r}")
                rows[kind].append((start_s, start_b, cold, cold_b, warm, warm_b))
                print(f"  {kind} round {k + 1}: start {start_s:.2f} s {mib(start_b)}, "
                      f"cold task {cold:.2f} s {mib(cold_b)}, warm task {warm:.2f} s "
                      f"{mib(warm_b)}", flush=True)
    finally:
        cleanup(st and st.stop, wm and wm.stop, proc_m.stop, counter.stop, srv.close)
    med = {k: [statistics.median(c) for c in zip(*v)] for k, v in rows.items()}
    d, g = med["dagfs"], med["git"]
    return [f"a task on a version {args.later} commits old, worker with empty bundle storage "
            f"(git smart HTTP; repository {args.tree_files} x {args.blob_bytes} B files, "
            f"{args.history + args.later + 2} commits, {mib(packed)} packed; medians of "
            f"{args.rounds}; `{uptime()}`)", "",
            "| bundle | worker start | task, cold (TI duration) | fetched, cold | "
            "task, warm | fetched, warm |", "|---|---|---|---|---|---|",
            f"| DagfsDagBundle | dagfs start {d[0]:.2f} s, {mib(d[1])} (head) | {d[2]:.2f} s "
            f"| {mib(d[3])} (C, during the task) | {d[4]:.2f} s | {mib(d[5])} |",
            f"| GitDagBundle | - | {g[2]:.2f} s | {mib(g[3])} | {g[4]:.2f} s | {mib(g[5])} |"]


# ------------------------------------------------------------------ parse

PARSE_DAG = '''\
"""A generated DAG for the dag-processor benchmark. Its id is its
directory's name and its own, so the same bytes make a new DAG wherever
they are copied."""
import pathlib

from airflow.sdk import dag, task

_HERE = pathlib.Path(__file__)
# {fill}


@dag(dag_id=f"{{_HERE.parent.name}}_{{_HERE.stem}}", schedule=None, catchup=False,
     tags=["bench"])
def the_dag():
    @task
    def extract():
        return {n}

    @task
    def load(x):
        return x + 1

    load(extract())


the_dag()
'''


def gen_files(dest, n, seed):
    rng = random.Random(seed)
    dest.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        fill = "".join(rng.choice("abcdefghij ") for _ in range(rng.randrange(500, 3000)))
        (dest / f"f{i:05d}.py").write_text(PARSE_DAG.format(fill=fill, n=i))


def bench_parse(args, work, binary):
    gen = work / "gen"
    gen_files(gen, args.files, args.seed)
    variants = ("native", "mount", "bundle")
    msrc = work / "msrc"
    for k in range(1, args.rounds + 1):
        shutil.copytree(gen, work / "native" / f"n{k}")
        shutil.copytree(gen, msrc / f"m{k}")
        shutil.copytree(gen, work / f"bsrc{k}" / f"b{k}")
    specs = [f"dir:{msrc},name=m,at=m"] + [f"dir:{work / f'bsrc{k}'},name=b{k},at=b{k}"
                                           for k in range(1, args.rounds + 1)]
    m = mount(work, "dagfs", specs, ready=lambda mnt: all(
        has_revision(s)(mnt) for s in ["m"] + [f"b{k}" for k in range(1, args.rounds + 1)])
        and (mnt / "m" / f"m{args.rounds}" / f"f{args.files - 1:05d}.py").exists(),
        binary=binary, timeout=600)
    bundles = []
    for k in range(1, args.rounds + 1):
        bundles += [{"name": f"native{k}", "classpath": LOCAL,
                     "kwargs": {"path": str(work / "native" / f"n{k}")}},
                    {"name": f"mount{k}", "classpath": LOCAL,
                     "kwargs": {"path": str(m.mnt / "m" / f"m{k}")}},
                    {"name": f"bundle{k}", "classpath": BUNDLE,
                     "kwargs": {"mount": str(m.mnt), "source": f"b{k}",
                                "refresh_interval": 3600}}]
    times = {v: [] for v in variants}
    st = None
    try:
        # one refresh (the one that lists the files) per dag-processor run:
        # each refresh moves dag_bundle.last_refreshed
        st = Stack(work / "stack", bundles, {"DAG_PROCESSOR__REFRESH_INTERVAL": "3600"})
        for k in range(1, args.rounds + 1):
            order = variants[k % 3:] + variants[:k % 3]
            for v in order:
                name = f"{v}{k}"
                t0 = time.monotonic()
                p = st.process(f"dag-processor-{name}", ["dag-processor", "-B", name, "-n", "1"])
                rc = p.proc.wait(3600)
                wall = time.monotonic() - t0
                p.stop()
                if rc:
                    raise RuntimeError(f"dag-processor -B {name} exited {rc}: {p.log}")
                (n, first, last), = st.db.rows(
                    "SELECT count(*), min(last_parsed_time), max(last_parsed_time) FROM dag "
                    "WHERE bundle_name = %s", name)
                (refreshed,), = st.db.rows("SELECT last_refreshed FROM dag_bundle "
                                           "WHERE name = %s", name)
                (errors,), = st.db.rows("SELECT count(*) FROM import_error "
                                        "WHERE bundle_name = %s", name)
                if n != args.files or errors:
                    raise RuntimeError(f"{name}: {n} DAGs of {args.files}, {errors} import "
                                       f"errors (see {p.log})")
                if refreshed > first:
                    raise RuntimeError(f"{name} was refreshed again during its parse "
                                       f"(last_refreshed {refreshed} after a DAG's {first})")
                t = (last - refreshed).total_seconds()
                times[v].append(t)
                print(f"  round {k} {v}: {t:.2f} s (process wall {wall:.1f} s)", flush=True)
    finally:
        cleanup(st and st.stop, m.stop)
    med = {v: statistics.median(ts) for v, ts in times.items()}
    label = {"native": "native directory (LocalDagBundle)",
             "mount": "dagfs mount, `dir:` source (LocalDagBundle)",
             "bundle": "DagfsDagBundle (same files, `.dagfs/revs/`)"}
    lines = [f"dag-processor parsing {args.files} DAG files once (median of {args.rounds}, "
             f"interleaved; `{uptime()}`)", "",
             "| where | each round | median | vs native |", "|---|---|---|---|"]
    for v in variants:
        lines.append(f"| {label[v]} | {', '.join(f'{t:.1f}' for t in times[v])} s | "
                     f"{med[v]:.2f} s | {med[v] / med['native']:.3f}x |")
    return lines


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("measure", choices=("push", "pinned", "parse", "all"))
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--check-interval", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--later", type=int, default=5)
    ap.add_argument("--tree-files", type=int, default=100)
    ap.add_argument("--blob-bytes", type=int, default=10000)
    ap.add_argument("--history", type=int, default=200)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir")
    ap.add_argument("--out")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    binary = None  # DAGFS_BUILD (relative to the repository), as in the tests
    base = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-bench-af-", dir=args.workdir))
    base.chmod(0o755)  # PostgreSQL runs as postgres
    measures = ("push", "pinned", "parse") if args.measure == "all" else (args.measure,)
    out = []
    try:
        for name in measures:
            work = base / name
            work.mkdir()
            print(f"== {name} ({uptime()})", flush=True)
            if name == "push":
                lines = bench_push(args, work, binary)
            elif name == "pinned":
                lines = bench_pinned(args, work, binary)
            else:
                lines = bench_parse(args, work, binary)
            text = "\n".join(lines) + "\n"
            print(text, flush=True)
            out.append(text)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(text + "\n")
    finally:
        if not args.keep:
            for p in sorted(base.rglob("mnt"), reverse=True):
                force_unmount(p)
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
