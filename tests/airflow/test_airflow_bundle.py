# SPDX-License-Identifier: Apache-2.0
"""DagfsDagBundle under real Apache Airflow 3 (api-server, scheduler with
LocalExecutor, dag-processor; PostgreSQL), one stack for the module.

Sources: a git repository behind git daemon, an S3 prefix on Ceph's RADOS
Gateway and a local directory, on one dagfs mount (A), each its own bundle
(source=). Beside them, Airflow's default route: a LocalDagBundle on a
plain dagfs mount (dags_folder) and one on a materialise directory's
`current`. Every assertion is on Airflow's own state: REST API v2 and its
database.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

from conftest import Mounts, need, revision, status, wait_for
import dags
from airflow_rig import Airflow, Postgres, wait

import git_servers
from rgw import ACCESS_KEY, SECRET_KEY, Rgw

S3_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
          "AWS_EC2_METADATA_DISABLED": "true"}
BUNDLE = "dagfs_airflow.DagfsDagBundle"
LOCAL = "airflow.dag_processing.bundles.local.LocalDagBundle"
SOURCES = ("g", "s", "d")


class World:
    """Everything the module's tests share."""


@pytest.fixture(scope="module")
def world(world_dir, dagfs_bin):
    need(shutil.which("radosgw"), "radosgw (Debian's ceph packages) not installed")
    need(shutil.which("git"), "git not installed")
    w = World()
    w.dir = world_dir
    w.gates = world_dir / "gates"
    w.gates.mkdir()
    w.mounts = Mounts(world_dir)
    w.git = git_servers.Servers(world_dir / "git")
    w.rgw = None
    w.pg = None
    w.af = None
    try:
        daemon = w.git.daemon()
        w.repo = w.git.repo("dags")
        w.repo.write("exact_g.py", dags.gated("exact_g", "g1", w.gates))
        w.repo.write("gate_g.py", dags.simple("gate_g", "gate-1"))
        w.repo.write("race_g.py", dags.simple("race_g", "race-1", tags=("race-1",)))
        w.repo.write("README.md", "not a DAG\n")
        w.repo.commit("first")
        w.rgw = Rgw(str(world_dir / "rgw")).start()
        w.bucket = w.rgw.bucket("dags")
        w.rgw.put(w.bucket, "team/exact_s.py", dags.gated("exact_s", "s1", w.gates))
        w.rgw.put(w.bucket, "team/sql/q.sql", "select 1;\n")
        w.dsrc = world_dir / "dsrc"
        w.dsrc.mkdir()
        (w.dsrc / "exact_d.py").write_text(dags.gated("exact_d", "d1", w.gates))
        (w.dsrc / "del_d.py").write_text(dags.simple("del_d", "del-1"))
        (w.dsrc / "slow_d.py").write_text(dags.gated("slow_d", "slow-1", w.gates))
        w.specs = [
            f"git:{daemon.url(w.repo)},name=g,at=g,period=1s,"
            "validate=/usr/bin/python3 -m compileall -q",
            f"s3:{w.bucket}/team/,endpoint={w.rgw.endpoint},region=us-east-1,"
            "period=500ms,name=s,at=s",
            f"dir:{w.dsrc},name=d,at=d,debounce=100ms",
        ]
        os.environ.update(S3_ENV)  # the dagfs daemons inherit it
        w.a = w.mounts.mount("a", w.specs, ready=lambda m: all(
            (m / p).exists() for p in ("g/exact_g.py", "s/exact_s.py", "d/exact_d.py")))
        w.plain_src = world_dir / "plainsrc"
        w.plain_src.mkdir()
        (w.plain_src / "plain_dag.py").write_text(dags.simple("plain_dag", "plain-1"))
        w.plain = w.mounts.mount("plain", [f"dir:{w.plain_src},name=p,debounce=100ms"],
                                 ready=lambda m: (m / "plain_dag.py").exists())
        w.mat_src = world_dir / "matsrc"
        w.mat_src.mkdir()
        (w.mat_src / "mat_dag.py").write_text(dags.simple("mat_dag", "mat-1"))
        w.mat = w.mounts.mount("mat", [f"dir:{w.mat_src},name=m,debounce=100ms"],
                               materialize=True,
                               ready=lambda m: (m / "current" / "mat_dag.py").exists())
        # the whole tree: a DAG in git, the helper it imports in a dir source
        w.trepo = w.git.repo("tree")
        w.trepo.write("tree_dag.py", dags.gated("tree_dag", None, w.gates,
                                                code_from="lib.helper"))
        w.trepo.commit("first")
        w.hsrc = world_dir / "hsrc"
        w.hsrc.mkdir()
        (w.hsrc / "helper.py").write_text("CODE = 'h1'\n")
        w.tspecs = [f"git:{daemon.url(w.trepo)},name=tg,at=dags,period=1s",
                    f"dir:{w.hsrc},name=th,at=lib,debounce=100ms"]
        w.t = w.mounts.mount("t", w.tspecs, ready=lambda m: (m / "lib" / "helper.py").exists()
                             and (m / "dags" / "tree_dag.py").exists())
        # the bundle list as dagfs prints it for these mounts
        bundles = dagfs_bundles(w.a, w.specs) + dagfs_bundles(w.t, w.tspecs, "--whole-tree")
        assert [b["name"] for b in bundles] == ["g", "s", "d", "dagfs"], bundles
        assert all(b["classpath"] == BUNDLE for b in bundles)
        bundles += [{"name": "dags-folder", "classpath": LOCAL, "kwargs": {}},
                    {"name": "mat-current", "classpath": LOCAL,
                     "kwargs": {"path": str(w.mat.mnt / "current")}}]
        w.pg = Postgres(world_dir / "pg").start()
        # Airflow's default: a file whose mtime says it did not change
        # since its last parse waits this long for the next one; and no
        # holding back of a DAG written less than 30 s before (Airflow's
        # default throttle, whatever the bundle: it would hide a re-parse)
        w.af = Airflow(w.pg.url, bundles, root=world_dir / "airflow",
                       dags_folder=w.plain.mnt,
                       config={"DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                               "CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0"}).start()
        yield w
    finally:
        if w.af:
            w.af.stop()
        w.mounts.stop()
        if w.pg:
            w.pg.stop()
        if w.rgw:
            w.rgw.stop()
        w.git.close()


def dagfs_bundles(m, specs, *args):
    """`dagfs airflow-bundles --json` for mount @m of @specs."""
    argv = [str(m.binary), "airflow-bundles", "--json", *args]
    for spec in specs:
        argv += ["--source", spec]
    r = subprocess.run(argv + [str(m.mnt)], capture_output=True, text=True, check=True)
    return json.loads(r.stdout)


def dag_bundle_version(w, dag_id):
    return w.af.dag(dag_id).get("bundle_version")


def wait_version(w, dag_id, rev, timeout=90):
    """Wait until Airflow's DAG record names bundle version @rev."""
    return wait(lambda: dag_bundle_version(w, dag_id) == rev, timeout,
                f"Airflow to record version {rev} for {dag_id} "
                f"(has {dag_bundle_version(w, dag_id)})")


def release(w, run_id):
    (w.gates / f"{run_id}.go").write_text("go")


def wait_started(w, run_id, timeout=180):
    return wait(lambda: (w.gates / f"{run_id}.started").exists(), timeout,
                f"the first task of {run_id} to start")


# ------------------------------------------------------------------ tests

def test_discovery_over_git_s3_and_dir(world):
    w = world
    want = {"exact_g": ("g", "exact_g.py"), "gate_g": ("g", "gate_g.py"),
            "race_g": ("g", "race_g.py"),
            "exact_s": ("s", "exact_s.py"), "exact_d": ("d", "exact_d.py"),
            "del_d": ("d", "del_d.py"), "slow_d": ("d", "slow_d.py"),
            "tree_dag": ("dagfs", "dags/tree_dag.py"),
            "plain_dag": ("dags-folder", "plain_dag.py"),
            "mat_dag": ("mat-current", "mat_dag.py")}
    for dag_id in want:
        w.af.wait_dag(dag_id)
    listed = w.af.dags()
    for dag_id, (bundle, rel) in want.items():
        d = listed[dag_id]
        assert d["bundle_name"] == bundle, d
        assert d["relative_fileloc"] == rel, d
        assert not d["is_stale"], d
    for s in SOURCES:
        rev = revision(w.a.mnt, s)
        for dag_id, (bundle, _) in want.items():
            if bundle == s:
                assert listed[dag_id]["bundle_version"] == rev, (dag_id, rev)
    assert listed["plain_dag"]["bundle_version"] is None
    assert w.af.import_errors() == []
    # nothing under .dagfs (or any other revision) was parsed: Airflow's own
    # table of DAG files holds exactly the files above, per bundle
    rows = w.pg.psql("select bundle_name, relative_fileloc from dag "
                     "where bundle_name is not null order by 1, 2")
    assert sorted((b, f) for b, f in rows) == sorted(want.values())
    bundles = {r[0]: r[1] for r in w.pg.psql("select name, version from dag_bundle")}
    for s in SOURCES:
        assert bundles[s] == revision(w.a.mnt, s)
    assert listed["tree_dag"]["bundle_version"] == status(w.t.mnt)["tree"]
    assert bundles["dagfs"] == status(w.t.mnt)["tree"]


def test_worker_runs_recorded_version(world):
    w = world
    old = {s: revision(w.a.mnt, s) for s in SOURCES}
    dag_ids = {"g": "exact_g", "s": "exact_s", "d": "exact_d"}
    for s, dag_id in dag_ids.items():
        wait_version(w, dag_id, old[s])
    runs = {s: w.af.trigger(dag_id) for s, dag_id in dag_ids.items()}
    for run_id in runs.values():
        wait_started(w, run_id)
    # a new revision in every source while the first tasks run
    w.repo.write("exact_g.py", dags.gated("exact_g", "g2", w.gates))
    w.repo.commit("g2")
    w.rgw.put(w.bucket, "team/exact_s.py", dags.gated("exact_s", "s2", w.gates))
    (w.dsrc / "exact_d.py").write_text(dags.gated("exact_d", "d2", w.gates))
    new = {}
    for s, dag_id in dag_ids.items():
        wait_for(lambda: revision(w.a.mnt, s) != old[s], 30, what=f"source {s} to move")
        new[s] = revision(w.a.mnt, s)
        wait_version(w, dag_id, new[s])
    for s, dag_id in dag_ids.items():
        release(w, runs[s])
    for s, dag_id in dag_ids.items():
        r = w.af.wait_run(dag_id, runs[s])
        assert r["state"] == "success", r
        assert r["bundle_version"] == old[s], (r, old[s])
        assert w.af.xcom(dag_id, runs[s], "first") == f"{s}1"
        assert w.af.xcom(dag_id, runs[s], "second") == f"{s}1"
    # a new run takes the new version and runs the new code
    runs2 = {s: w.af.trigger(dag_id) for s, dag_id in dag_ids.items()}
    for s, dag_id in dag_ids.items():
        wait_started(w, runs2[s])
        release(w, runs2[s])
    for s, dag_id in dag_ids.items():
        r = w.af.wait_run(dag_id, runs2[s])
        assert r["state"] == "success" and r["bundle_version"] == new[s], r
        assert w.af.xcom(dag_id, runs2[s], "second") == f"{s}2"
    # clearing the old run reruns it on the old version
    for s, dag_id in dag_ids.items():
        (w.gates / f"{runs[s]}.started").unlink()
        w.af.clear_run(dag_id, runs[s])
    for s, dag_id in dag_ids.items():
        wait_started(w, runs[s])
        assert (w.gates / f"{runs[s]}.started").read_text() == f"{s}1"
    for s, dag_id in dag_ids.items():
        r = w.af.wait_run(dag_id, runs[s])
        assert r["state"] == "success" and r["bundle_version"] == old[s], r
        assert w.af.xcom(dag_id, runs[s], "second") == f"{s}1"
        tis = w.af.task_instances(dag_id, runs[s])
        assert all(t["try_number"] == 2 for t in tis.values()), tis


def test_whole_tree_runs_the_parsed_tree_with_a_helper_from_another_source(world):
    w = world
    st1 = status(w.t.mnt)
    t1 = st1["tree"]
    revs1 = {n: v["revision"] for n, v in st1["sources"].items()}
    wait_version(w, "tree_dag", t1)
    run_id = w.af.trigger("tree_dag")
    wait_started(w, run_id)
    assert (w.gates / f"{run_id}.started").read_text() == "h1"
    # a new revision in both sources: the helper's code, and the DAG file
    (w.hsrc / "helper.py").write_text("CODE = 'h2'\n")
    w.trepo.write("tree_dag.py", dags.gated("tree_dag", None, w.gates, code_from="lib.helper")
                  + "# second revision\n")
    w.trepo.commit("second")
    wait_for(lambda: all(status(w.t.mnt)["sources"][n]["revision"] != rev
                         for n, rev in revs1.items()), 30,
             what="both sources of the tree to move")
    t2 = status(w.t.mnt)["tree"]
    assert t2 != t1
    wait_version(w, "tree_dag", t2)
    release(w, run_id)
    r = w.af.wait_run("tree_dag", run_id)
    assert r["state"] == "success" and r["bundle_version"] == t1, r
    assert w.af.xcom("tree_dag", run_id, "second") == "h1"
    run2 = w.af.trigger("tree_dag")
    wait_started(w, run2)
    release(w, run2)
    r = w.af.wait_run("tree_dag", run2)
    assert r["state"] == "success" and r["bundle_version"] == t2, r
    assert w.af.xcom("tree_dag", run2, "first") == "h2"
    assert w.af.xcom("tree_dag", run2, "second") == "h2"
    (w.gates / f"{run_id}.started").unlink()
    w.af.clear_run("tree_dag", run_id)
    wait_started(w, run_id)
    assert (w.gates / f"{run_id}.started").read_text() == "h1"
    r = w.af.wait_run("tree_dag", run_id)
    assert r["state"] == "success" and r["bundle_version"] == t1, r
    assert w.af.xcom("tree_dag", run_id, "second") == "h1"


def test_publish_gate_keeps_a_syntax_error_out(world):
    w = world
    good = revision(w.a.mnt, "g")
    wait_version(w, "gate_g", good)
    w.repo.write("gate_g.py", "from airflow.sdk import dag\ndef broken(:\n")
    bad = w.repo.commit("a syntax error")
    cache = w.a.cache

    def refused():
        r = subprocess.run([str(w.a.binary), "status", "--cache", str(cache), "--json"],
                           capture_output=True, text=True)
        return "validate" in r.stdout and bad[:7] in (r.stdout + w.a.stderr_text())
    wait_for(refused, 30, what="dagfs to refuse the commit with the syntax error")
    time.sleep(3)  # give Airflow a few refreshes: it must not see the commit
    assert revision(w.a.mnt, "g") == good
    assert dag_bundle_version(w, "gate_g") == good
    assert w.af.import_errors() == []
    run_id = w.af.trigger("gate_g")
    r = w.af.wait_run("gate_g", run_id)
    assert r["state"] == "success" and r["bundle_version"] == good, r
    assert w.af.xcom("gate_g", run_id, "only") == "gate-1"
    w.repo.write("gate_g.py", dags.simple("gate_g", "gate-2"))
    fixed = w.repo.commit("fixed")
    wait_version(w, "gate_g", fixed)
    assert w.af.import_errors() == []


def test_changed_file_is_parsed_at_once_though_its_mtime_is_older_than_its_last_parse(world):
    """The race Airflow's own rule loses, built on purpose: the
    dag-processor re-parses a file before min_file_process_interval (30 s)
    only if its mtime is newer than the end of its last parse, and a git
    file's mtime is its commit's time. Here a parse of race_g.py ends, then
    a commit dated an hour back changes it. Airflow records the new
    version within seconds anyway, with the new file's DAG (its tag)
    under it: the bundle asks Airflow to re-parse every file a version
    change changed."""
    w = world
    af = w.af
    old = revision(w.a.mnt, "g")
    wait_version(w, "race_g", old)
    d = af.dag("race_g")
    af.api("PUT", f"/api/v2/parseDagFile/{d['file_token']}")
    wait(lambda: af.dag("race_g")["last_parsed_time"] != d["last_parsed_time"], 60,
         "race_g.py to be parsed on request")
    w.repo.write("race_g.py", dags.simple("race_g", "race-2", tags=("race-2",)))
    new = w.repo.commit("race-2, dated an hour back", when=time.time() - 3600)
    wait_for(lambda: revision(w.a.mnt, "g") == new, 30, what="dagfs to publish the commit")
    f = w.a.mnt / ".dagfs" / "revs" / "g" / new / "race_g.py"
    assert f.stat().st_mtime < time.time() - 3000  # older than any parse
    t0 = time.monotonic()

    def parsed():
        d = af.dag("race_g")
        return d["bundle_version"] == new and [t["name"] for t in d["tags"]] == ["race-2"] \
            and af.bundle_versions("race_g")[-1]["bundle_version"] == new
    wait(parsed, 20, f"Airflow to parse race_g.py of {new} (min_file_process_interval is 30 s)")
    print(f"race_g.py of {new[:12]} parsed {time.monotonic() - t0:.1f} s after dagfs published it")
    # each serialised DAG Airflow keeps is filed under the version it was parsed from
    rows = w.pg.psql("select dv.bundle_version, sd.data::json->'dag'->'tags' from dag_version dv "
                     "join serialized_dag sd on sd.dag_version_id = dv.id "
                     "where dv.dag_id = 'race_g' order by dv.version_number")
    assert rows and all((v == new) == ("race-2" in tags) for v, tags in rows), rows
    assert af.import_errors() == []


def test_deleted_dag_file_goes_stale(world):
    w = world
    assert not w.af.dag("del_d")["is_stale"]
    t0 = time.monotonic()
    (w.dsrc / "del_d.py").unlink()
    wait(lambda: w.af.dag("del_d")["is_stale"], 60, "del_d to be stale")
    took = time.monotonic() - t0
    print(f"del_d stale {took:.1f} s after the file was deleted")
    assert not w.af.dag("exact_d")["is_stale"]


def test_default_route_dags_folder_and_materialize_current(world):
    w = world
    for dag_id, code, src, name in (("plain_dag", "plain", w.plain_src, "plain_dag.py"),
                                    ("mat_dag", "mat", w.mat_src, "mat_dag.py")):
        run_id = w.af.trigger(dag_id)
        r = w.af.wait_run(dag_id, run_id)
        assert r["state"] == "success", r
        assert w.af.xcom(dag_id, run_id, "only") == f"{code}-1"
        (src / name).write_text(dags.simple(dag_id, f"{code}-2"))
    for dag_id, code in (("plain_dag", "plain"), ("mat_dag", "mat")):
        def changed():
            run_id = w.af.trigger(dag_id)
            r = w.af.wait_run(dag_id, run_id)
            assert r["state"] == "success", r
            return w.af.xcom(dag_id, run_id, "only") == f"{code}-2"
        wait(changed, 120, f"{dag_id} to run the changed file", interval=2)


def test_kill_9_under_dag_processor_and_scheduler(world):
    """dagfs killed with SIGKILL under a running dag-processor and
    scheduler, a task started while the mount is dead, dagfs restarted
    over the dead mount: no DAG deactivated, no task failed. Airflow
    3.3.2's dag-processor itself exits if its mtime sort
    (file_parsing_sort_mode=modified_time, the default) stats a file in
    the window: DagFileProcessorManager._sort_by_mtime catches only
    FileNotFoundError, not ENOTCONN. Then it is restarted, as systemd or
    Kubernetes would."""
    w = world
    af = w.af
    live = {d for d, v in af.dags().items() if not v["is_stale"]}
    failed_before = w.pg.psql("select count(*) from task_instance where state = 'failed'")
    run_id = af.trigger("slow_d")
    wait_started(w, run_id)
    logs0 = {n: len(af.log(n)) for n in ("dag-processor", "scheduler")}
    t0 = time.monotonic()
    os.kill(w.a.pid, signal.SIGKILL)
    w.a.wait_exit()
    with pytest.raises(OSError) as dead:
        os.listdir(w.a.mnt / "d")
    release(w, run_id)  # the second task starts while the mount is dead
    time.sleep(3)       # and the dag-processor refreshes a few times
    w.a = w.mounts.restart(w.a, ready=lambda m: (m / "d" / "slow_d.py").exists())
    window = time.monotonic() - t0
    dp = af.procs["dag-processor"]
    dp_exit = None
    time.sleep(2)
    if "OSError: [Errno 107]" in dp.log_text()[logs0["dag-processor"]:]:
        dp_exit = dp.proc.wait(60)  # it is on its way out
    if not dp.alive():
        dp_exit = dp.proc.returncode
        assert "Transport endpoint is not connected" in dp.log_text()[logs0["dag-processor"]:]
        dp.stop()
        af.start_process("dag-processor", ["dag-processor"])
    r = af.wait_run("slow_d", run_id)
    seen = {n: af.log(n)[logs0[n]:] for n in logs0}
    lines = [f"{k}: {ln.strip()}" for k, v in seen.items() for ln in v.splitlines()
             if any(x in ln for x in ("dagfs", "rror", "Traceback", "OSError",
                                      "Transport endpoint"))]
    errors = af.import_errors()
    print(f"\nkill -9: mount dead for {window:.1f} s ({dead.value.strerror}); "
          f"dag-processor exit status in the window: {dp_exit}; run {r['state']}; "
          f"import errors after: {[e['filename'] for e in errors]}")
    print("\n".join(lines[:60]))
    assert r["state"] == "success", r
    assert af.xcom("slow_d", run_id, "second") == "slow-1"
    af.check_alive()
    wait(lambda: not af.import_errors(), 60, "import errors from the window to clear")
    still = {d for d, v in af.dags().items() if not v["is_stale"]}
    assert live <= still, live - still
    assert w.pg.psql("select count(*) from task_instance where state = 'failed'") == \
        failed_before


def test_airflow_version_cleanup_ran_without_errors(world):
    """Airflow's stale-version cleanup (every 10 s here, versions unused for
    5 s, keeping 1) ran over the versions the tests above made: it removed
    markers, never failed, and the mount still serves every retained
    revision."""
    w = world
    logs = w.af.log("dag-processor") + w.af.log("scheduler")
    assert "removing stale bundle. bundle_name=" in logs
    assert "Error removing stale bundle versions" not in logs
    storage = w.af.storage
    for b in ("g", "s", "d", "dagfs"):
        versions = storage / b / "versions"
        assert all(p.is_dir() and not p.is_symlink() and not any(p.iterdir())
                   for p in versions.iterdir()), b
    for s in SOURCES:
        revs = w.a.mnt / ".dagfs" / "revs" / s
        assert revision(w.a.mnt, s) in os.listdir(revs)
