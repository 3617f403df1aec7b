# SPDX-License-Identifier: Apache-2.0
"""DagfsDagBundle in this process, against real dagfs mounts and a real
materialise directory, with Airflow's own bundle code (the venv's
Airflow 3.3.2): bad input, missing versions, refresh, the whole-tree and
materialise layouts, forge URLs, and Airflow's stale-version cleanup."""

import json
import os
import pathlib
import shutil
import tempfile
import time

_home = tempfile.mkdtemp(prefix="dagfs-af-home-")
os.environ["AIRFLOW_HOME"] = _home
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH"] = os.path.join(_home, "bundles")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"

import pytest  # noqa: E402

from conftest import Mounts, revision, status  # noqa: E402

from airflow.dag_processing.bundles.base import (  # noqa: E402
    BundleUsageTrackingManager, BundleVersionLock)
from airflow.exceptions import AirflowException  # noqa: E402
from dagfs_airflow import DagfsDagBundle  # noqa: E402
from dagfs_airflow.bundle import forge_url_template  # noqa: E402


@pytest.fixture(scope="module")
def base(dagfs_bin):
    d = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-af-c-"))
    d.chmod(0o755)
    m = Mounts(d)
    yield d, m
    m.stop()
    shutil.rmtree(d, ignore_errors=True)
    shutil.rmtree(_home, ignore_errors=True)


@pytest.fixture(scope="module")
def mount(base):
    d, mounts = base
    src = d / "src"
    src.mkdir()
    (src / "a.py").write_text("A = 1\n")
    m = mounts.mount("m", [f"dir:{src},name=d,debounce=50ms,keep=2"],
                     ready=lambda mnt: (mnt / "a.py").exists())
    m.src = src
    return m


def bundle(name, **kw):
    return DagfsDagBundle(name=name, refresh_interval=1, **kw)


def tree_bytes(p):
    return {str(f.relative_to(p)): f.read_bytes() for f in sorted(p.rglob("*")) if f.is_file()}


def test_not_a_dagfs_mount(tmp_path):
    b = bundle("bad1", mount=str(tmp_path))
    with pytest.raises(AirflowException, match="is not a dagfs mount") as e:
        b.initialize()
    assert "\n" not in str(e.value)
    with pytest.raises(AirflowException, match="No such file or directory"):
        bundle("bad2", mount=str(tmp_path / "nope")).initialize()
    with pytest.raises(AirflowException, match="not an absolute path"):
        bundle("bad3", mount="relative/dags").initialize()


def test_unreadable_or_broken_status(tmp_path):
    (tmp_path / ".dagfs").mkdir()
    st = tmp_path / ".dagfs" / "status.json"
    st.write_text("{not json")
    with pytest.raises(AirflowException, match="status.json: not valid JSON"):
        bundle("bad4", mount=str(tmp_path), source="d").initialize()
    st.write_text('{"nothing": 1}')
    with pytest.raises(AirflowException, match='no "sources" object'):
        bundle("bad5", mount=str(tmp_path), source="d").initialize()


def test_unknown_source(mount):
    with pytest.raises(AirflowException, match=r"has no source 'x' \(sources: d\)"):
        bundle("bad6", mount=str(mount.mnt), source="x").initialize()


def test_refresh_follows_the_newest_revision(mount):
    assert DagfsDagBundle(name="x", mount=str(mount.mnt)).refresh_interval == 1  # not 300
    b = bundle("follow", mount=str(mount.mnt), source="d")
    b.initialize()
    r1 = revision(mount.mnt, "d")
    assert b.get_current_version().version == r1
    assert b.path.resolve() == mount.mnt / ".dagfs" / "revs" / "d" / r1
    assert (b.path / "a.py").read_text() == "A = 1\n"
    before = tree_bytes(mount.mnt / ".dagfs" / "revs" / "d" / r1)
    (mount.src / "a.py").write_text("A = 2\n")
    mount.wait(lambda: revision(mount.mnt, "d") != r1, what="a new revision")
    r2 = revision(mount.mnt, "d")
    assert b.get_current_version().version == r1  # until refresh()
    b.refresh()
    assert b.get_current_version().version == r2
    assert (b.path / "a.py").read_text() == "A = 2\n"
    # both versions have only a marker in Airflow's storage; the mount is as it was
    assert sorted(p.name for p in b.versions_dir.iterdir()) == sorted([r1, r2])
    assert all(not any((b.versions_dir / v).iterdir()) for v in (r1, r2))
    assert tree_bytes(mount.mnt / ".dagfs" / "revs" / "d" / r1) == before
    # a worker at r1 serves the pinned tree itself
    w = bundle("follow", mount=str(mount.mnt), source="d", version=r1)
    w.initialize()
    assert w.path == mount.mnt / ".dagfs" / "revs" / "d" / r1
    assert (w.path / "a.py").read_text() == "A = 1\n"
    assert w.get_current_version().version == r1
    with pytest.raises(AirflowException, match="specific version"):
        w.refresh()


def test_version_change_asks_to_reparse_exactly_the_changed_dag_files(base, caplog):
    """At a version change the bundle asks Airflow to re-parse the files
    Airflow lists (.py, the safe-mode words, not .airflowignore'd) whose
    content changed; not new files (Airflow queues those), not unchanged
    or ignored ones. This process has no Airflow database: the request is
    logged as not filed, and the version moves anyway."""
    d, mounts = base
    src = d / "chg-src"
    src.mkdir()
    dag = "from airflow.sdk import dag\n"
    files = {"changed.py": dag, "same.py": dag, "ignored.py": dag, "helper.py": "X = 1\n",
             "notes.txt": "airflow dag\n", ".airflowignore": "ignored.py\n"}
    for name, text in files.items():
        (src / name).write_text(text)
    m = mounts.mount("chg", [f"dir:{src},name=c,debounce=50ms"],
                     ready=lambda mnt: (mnt / "changed.py").exists())
    b = bundle("chg", mount=str(m.mnt), source="c")
    b.initialize()
    r1 = revision(m.mnt, "c")
    for name in ("changed.py", "ignored.py", "helper.py", "notes.txt"):
        (src / name).write_text(files[name] + "# v2\n")
    (src / "new.py").write_text(dag)
    m.wait(lambda: revision(m.mnt, "c") != r1 and (m.mnt / "new.py").exists(),
           what="the second revision")
    b.refresh()
    assert b.get_current_version().version == revision(m.mnt, "c")
    assert b._again[1] == {"changed.py"}
    assert "cannot ask Airflow to re-parse 1 changed file(s)" in caplog.text
    b.refresh()  # no new version: nothing asked again before FOLLOW_UP
    assert b._again[1] == {"changed.py"}
    assert caplog.text.count("cannot ask Airflow to re-parse") == 1
    b._again = (time.monotonic(), b._again[1])  # FOLLOW_UP seconds have passed
    b.refresh()
    assert b._again is None
    assert caplog.text.count("cannot ask Airflow to re-parse 1 changed file(s)") == 2


def test_missing_version_fails_at_once_naming_keep(mount):
    gone = "dir-" + "0" * 32
    w = bundle("gone", mount=str(mount.mnt), source="d", version=gone)
    t0 = time.monotonic()
    with pytest.raises(AirflowException) as e:
        w.initialize()
    assert time.monotonic() - t0 < 5
    msg = str(e.value)
    assert gone in msg and "keep=" in msg and "\n" not in msg, msg


def test_airflow_cleanup_removes_markers_not_the_mount(mount, monkeypatch):
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_MIN_VERSIONS", "0")
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__STALE_BUNDLE_CLEANUP_AGE_THRESHOLD", "0")
    rev = revision(mount.mnt, "d")
    w = bundle("clean", mount=str(mount.mnt), source="d", version=rev)
    w.initialize()
    with BundleVersionLock(bundle_name="clean", bundle_version=rev):
        pass
    assert (w.versions_dir / rev).is_dir()
    time.sleep(1.1)
    BundleUsageTrackingManager()._remove_stale_bundle_versions_for_bundle("clean")
    assert not (w.versions_dir / rev).exists()
    assert (mount.mnt / ".dagfs" / "revs" / "d" / rev / "a.py").exists()


def test_whole_tree_is_versioned_by_tree_id(base):
    d, mounts = base
    a, b = d / "ta", d / "tb"
    for p, f in ((a, "dag.py"), (b, "helper.py")):
        p.mkdir()
        (p / f).write_text("X = 1\n")
    m = mounts.mount("tree", [f"dir:{a},name=a,at=a,debounce=50ms",
                              f"dir:{b},name=b,at=lib/b,debounce=50ms"],
                     ready=lambda p: (p / "lib" / "b" / "helper.py").exists()
                     and (p / "a" / "dag.py").exists())
    wb = bundle("tree", mount=str(m.mnt))
    wb.initialize()
    t1 = status(m.mnt)["tree"]
    assert wb.get_current_version().version == t1
    assert wb.path.resolve() == m.mnt / ".dagfs" / "trees" / t1
    assert sorted(str(p.relative_to(wb.path)) for p in wb.path.rglob("*.py")) == \
        ["a/dag.py", "lib/b/helper.py"]
    (b / "helper.py").write_text("X = 2\n")
    m.wait(lambda: status(m.mnt)["tree"] != t1, what="a new tree")
    wb.refresh()
    t2 = wb.get_current_version().version
    assert t2 == status(m.mnt)["tree"] != t1
    assert (wb.path / "lib" / "b" / "helper.py").read_text() == "X = 2\n"
    old = bundle("tree", mount=str(m.mnt), version=t1)
    old.initialize()
    assert (old.path / "lib" / "b" / "helper.py").read_text() == "X = 1\n"
    with pytest.raises(AirflowException, match="keep="):
        bundle("tree", mount=str(m.mnt), version="f" * 32).initialize()


def test_materialize_directory(base):
    d, mounts = base
    src = d / "msrc"
    src.mkdir()
    (src / "m.py").write_text("M = 1\n")
    m = mounts.mount("mat", [f"dir:{src},name=m,at=team,debounce=50ms"], materialize=True,
                     ready=lambda p: (p / "current" / "team" / "m.py").exists())
    mid = os.readlink(m.mnt / "current")[len(".revs/"):]
    meta = json.loads((m.mnt / ".revs" / f"{mid}.json").read_text())
    whole = bundle("mat", mount=str(m.mnt))
    whole.initialize()
    assert whole.get_current_version().version == meta["tree"]
    assert (whole.path / "team" / "m.py").read_text() == "M = 1\n"
    one = bundle("mat1", mount=str(m.mnt), source="m")
    one.initialize()
    r1 = meta["sources"]["m"]["revision"]
    assert one.get_current_version().version == r1
    assert (one.path / "m.py").read_text() == "M = 1\n"
    (src / "m.py").write_text("M = 2\n")
    m.wait(lambda: os.readlink(m.mnt / "current") != f".revs/{mid}", what="a new tree")
    one.refresh()
    assert one.get_current_version().version != r1
    assert (one.path / "m.py").read_text() == "M = 2\n"
    w = bundle("mat1", mount=str(m.mnt), source="m", version=r1)
    w.initialize()  # the replaced tree is kept for grace= (60 s)
    assert w.path == m.mnt / ".revs" / mid / "team"
    assert (w.path / "m.py").read_text() == "M = 1\n"
    with pytest.raises(AirflowException, match="no source 'x'"):
        bundle("mat2", mount=str(m.mnt), source="x").initialize()
    with pytest.raises(AirflowException, match="grace="):
        bundle("mat", mount=str(m.mnt), version="0" * 32).initialize()


def test_view_url_templates():
    t = forge_url_template
    assert t("https://user:tok@github.com/org/dags.git") == \
        "https://github.com/org/dags/tree/{version}"
    assert t("git@github.com:org/dags.git", "dags/") == \
        "https://github.com/org/dags/tree/{version}/dags"
    assert t("ssh://git@gitlab.com/group/sub/dags.git") == \
        "https://gitlab.com/group/sub/dags/-/tree/{version}"
    assert t("https://bitbucket.org/team/dags") == "https://bitbucket.org/team/dags/src/{version}"
    assert t("https://code.example.com/org/dags.git") is None
    assert t("git://127.0.0.1:9418/dags.git") is None
    assert t("/srv/git/dags.git") is None


def test_view_url_template_from_status(tmp_path):
    (tmp_path / ".dagfs").mkdir()
    (tmp_path / ".dagfs" / "status.json").write_text(json.dumps({"sources": {
        "g": {"type": "git", "url": "https://github.com/org/dags.git", "subpath": "dags",
              "revision": "a" * 40}}}))
    b = bundle("url", mount=str(tmp_path), source="g")
    assert b.view_url_template() == "https://github.com/org/dags/tree/{version}/dags"
    assert bundle("url2", mount=str(tmp_path), source="g",
                  view_url_template="https://x/{version}").view_url_template() == \
        "https://x/{version}"
    assert bundle("url3", mount=str(tmp_path / "nope"), source="g").view_url_template() is None


def test_worker_gets_an_unretained_git_commit_fetched(base):
    """A worker whose dagfs never had the recorded commit (a fresh cache,
    its source at a newer one) gets it fetched by the daemon on lookup."""
    import git_servers
    d, mounts = base
    servers = git_servers.Servers(d / "git")
    try:
        daemon = servers.daemon()
        repo = servers.repo("dags")
        repo.write("dag.py", "V = 1\n")
        c1 = repo.commit("one")
        repo.write("dag.py", "V = 2\n")
        c2 = repo.commit("two")
        m = mounts.mount("gitm", [f"git:{daemon.url(repo)},name=g,period=200ms,keep=1"],
                         ready=lambda p: (p / "dag.py").exists())
        assert revision(m.mnt, "g") == c2
        assert c1 not in os.listdir(m.mnt / ".dagfs" / "revs" / "g")
        w = bundle("gitm", mount=str(m.mnt), source="g", version=c1)
        w.initialize()
        assert (w.path / "dag.py").read_text() == "V = 1\n"
        assert revision(m.mnt, "g") == c2  # fetched, not made current
        bogus = "0123456789" * 4
        t0 = time.monotonic()
        with pytest.raises(AirflowException, match="keep=1"):
            bundle("gitm", mount=str(m.mnt), source="g", version=bogus).initialize()
        assert time.monotonic() - t0 < 40  # the daemon's fetch-timeout, 30 s
    finally:
        servers.close()
