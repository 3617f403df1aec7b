# SPDX-License-Identifier: Apache-2.0
"""Whole-view versions and revisions on demand (issue 11, the C half):
.dagfs/status.json's tree id and per-source facts, .dagfs/trees/<id>/
byte for byte what the live root showed, tree ids stable across a restart
and across daemons, old trees served after a SIGHUP layout change, a git
commit the daemon never had fetched on a lookup (and ENOENT for a bogus
one within fetch-timeout, FUSE threads never starved meanwhile), the
materialise mode's .revs/<id>.json, and `dagfs airflow-bundles`."""

import json
import os
import pathlib
import shutil
import signal
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))

from conftest import tree_equal_errors, wait_for  # noqa: E402
from git_servers import (Silent, git_daemon, git_repo,  # noqa: E402,F401
                         git_servers)
from test_sidecar import _conf  # noqa: E402

T0 = 1_700_000_000


def status(mnt):
    return json.loads((mnt / ".dagfs" / "status.json").read_text())


def make_src(root, name, files):
    d = root / name
    for rel, data in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(data)
    return d


def copy_live(mnt, dest):
    """The live root as a plain tree (without .dagfs)."""
    shutil.copytree(mnt, dest, symlinks=True,
                    ignore=lambda d, names: [".dagfs"] if d == str(mnt) else [])
    return dest


def tree_id_changes(m, before, timeout=20):
    wait_for(lambda: status(m.mnt)["tree"] != before, timeout,
             what="a new tree id")
    return status(m.mnt)["tree"]


def test_tree_view_equals_the_live_root_and_survives_restart(
        dagfs, git_daemon, git_repo, tmp_path):
    git_repo.write("dags/a.py", "a1\n")
    git_repo.write("dags/lib/helper.py", "h1\n")
    c1 = git_repo.commit("one", when=T0)
    d = make_src(tmp_path, "d", {"d.py": "d1\n", "sub/e.py": "e1\n"})
    url = git_daemon.url(git_repo)
    srcs = [f"git:{url},name=g,ref=main,at=teams/g,period=200ms",
            f"dir:{d},name=d,at=local,debounce=100ms"]
    m = dagfs.mount(srcs, ready=lambda mnt: (mnt / "teams/g/dags/a.py")
                    .exists() and (mnt / "local/d.py").exists())
    wait_for(lambda: all(s["revision"] for s in
                         status(m.mnt)["sources"].values()), 10,
             what="both sources in status.json")
    st = status(m.mnt)
    t1 = st["tree"]
    assert len(t1) == 32 and set(t1) <= set("0123456789abcdef")
    g, dd = st["sources"]["g"], st["sources"]["d"]
    assert g["type"] == "git" and g["url"] == url and g["ref"] == "main"
    assert g["revision"] == c1 and g["keep"] == 5 and g["at"] == "teams/g"
    assert dd["type"] == "dir" and "url" not in dd and dd["keep"] == 5
    live1 = copy_live(m.mnt, tmp_path / "live1")
    assert t1 in os.listdir(m.mnt / ".dagfs" / "trees")

    # both sources move on; the old tree stays exactly as it was
    git_repo.write("dags/a.py", "a2\n")
    git_repo.remove("dags/lib/helper.py")
    c2 = git_repo.commit("two", when=T0 + 60)
    (d / "d.py").write_text("d2\n")
    wait_for(lambda: (m.mnt / "teams/g/dags/a.py").read_text() == "a2\n"
             and (m.mnt / "local/d.py").read_text() == "d2\n", 20,
             what="both new revisions")
    wait_for(lambda: status(m.mnt)["sources"]["g"]["revision"] == c2 and
             status(m.mnt)["tree"] != t1, 10, what="tree moved")
    t2 = status(m.mnt)["tree"]
    errs = tree_equal_errors(live1, m.mnt / ".dagfs" / "trees" / t1)
    assert not errs, errs
    live2 = copy_live(m.mnt, tmp_path / "live2")
    errs = tree_equal_errors(live2, m.mnt / ".dagfs" / "trees" / t2)
    assert not errs, errs
    assert os.listxattr(str(m.mnt / ".dagfs/trees" / t1 / "teams/g/dags/a.py"))
    assert os.getxattr(str(m.mnt / ".dagfs/trees" / t1 / "teams/g/dags/a.py"),
                       "user.dagfs.revision").decode() == c1
    with pytest.raises(FileNotFoundError):
        os.stat(m.mnt / ".dagfs/trees" / ("0" * 32))
    with pytest.raises(OSError):
        (m.mnt / ".dagfs/trees" / t1 / "new.py").write_text("x")
    assert m.stop() == 0

    # restart on the same cache with the remote gone: same tree id, and
    # the old tree is still served from its manifest
    silent = Silent()
    m2 = dagfs.mount([srcs[0].replace(url, silent.url()), srcs[1]],
                     mnt=m.mnt, cache=m.cache,
                     ready=lambda mnt: (mnt / "local/d.py").exists())
    try:
        assert status(m2.mnt)["tree"] == t2
        errs = tree_equal_errors(live1, m2.mnt / ".dagfs" / "trees" / t1)
        assert not errs, errs
    finally:
        m2.stop()
        silent.close()


def test_old_tree_served_after_a_layout_change(dagfs, tmp_path):
    a = make_src(tmp_path, "a", {"a.py": "a\n"})
    b = make_src(tmp_path, "b", {"b.py": "b\n"})
    c = make_src(tmp_path, "c", {"c.py": "c\n"})
    conf = tmp_path / "dagfs.conf"
    _conf(conf, ta=(a, "team_a"), tb=(b, "nested/team_b"))
    m = dagfs.mount([], args=["--config", str(conf)],
                    ready=lambda mnt: (mnt / "nested/team_b/b.py").exists()
                    and (mnt / "team_a/a.py").exists())
    wait_for(lambda: len(status(m.mnt)["sources"]) == 2 and all(
        s["revision"] for s in status(m.mnt)["sources"].values()), 10,
        what="both sources")
    t1 = status(m.mnt)["tree"]
    live1 = copy_live(m.mnt, tmp_path / "live1")

    _conf(conf, ta=(a, "team_a"), tc=(c, "team_c"))     # tb goes, tc comes
    m.signal(signal.SIGHUP)
    wait_for(lambda: (m.mnt / "team_c/c.py").exists() and
             not (m.mnt / "nested").exists(), 10, what="the new layout")
    wait_for(lambda: set(status(m.mnt)["sources"]) == {"ta", "tc"}, 10,
             what="status.json follows the layout")
    t2 = status(m.mnt)["tree"]
    assert t2 != t1
    assert {t1, t2} <= set(os.listdir(m.mnt / ".dagfs/trees"))
    errs = tree_equal_errors(live1, m.mnt / ".dagfs/trees" / t1)
    assert not errs, errs          # tb's files, under nested/, as they were
    assert sorted(os.listdir(m.mnt / ".dagfs/trees" / t2)) == \
        ["team_a", "team_c"]
    # a tree id is the set of (source, at, revision): a layout back to the
    # first one is the first tree again
    _conf(conf, ta=(a, "team_a"), tb=(b, "nested/team_b"))
    m.signal(signal.SIGHUP)
    wait_for(lambda: status(m.mnt)["tree"] == t1, 10,
             what="the first tree id again")


def test_git_commit_fetched_on_demand(dagfs, git_daemon, git_repo, tmp_path):
    git_repo.write("dag.py", "base\n")
    c0 = git_repo.commit("base", when=T0)
    # c1 only on another branch: nothing the daemon follows reaches it
    git_repo.write("dag.py", "old\n")
    git_repo.write("lib/x.py", "x-old\n")
    c1 = git_repo.commit("old", when=T0 + 30, push=False)
    git_repo.push(ref="side")
    want = git_repo.archive(tmp_path / "archive1", rev=c1)
    git_repo.reset_hard(c0)
    git_repo.write("dag.py", "new\n")
    c2 = git_repo.commit("new", when=T0 + 60)
    # a fresh daemon on main: it never had c1, not even its objects
    m = dagfs.mount([f"git:{git_daemon.url(git_repo)},name=g,ref=main,"
                     "period=30s"],
                    args=["--fetch-timeout", "8s"],
                    ready=lambda mnt: (mnt / "dag.py").exists())
    assert status(m.mnt)["sources"]["g"]["revision"] == c2
    revs = m.mnt / ".dagfs/revs/g"
    assert os.listdir(revs) == [c2]

    # many readers of the same commit at once: one fetch serves them all
    got, errs = [], []

    def reader():
        try:
            got.append((revs / c1 / "dag.py").read_text())
        except OSError as e:
            errs.append(e)
    ts = [threading.Thread(target=reader) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert not errs and got == ["old\n"] * 6, (got, errs)
    errs = tree_equal_errors(want, revs / c1)
    assert not [e for e in errs if "mtime" not in e], errs
    assert m.stderr_text().count(f"fetched revision {c1} on demand") == 1
    assert sorted(os.listdir(revs)) == sorted([c1, c2])
    # kept, not made current: the live tree and status are c2's
    assert (m.mnt / "dag.py").read_text() == "new\n"
    assert status(m.mnt)["sources"]["g"]["revision"] == c2

    # a commit nobody has: ENOENT, at once after one fetch, with the reason
    bogus = "0123456789abcdef0123456789abcdef01234567"
    t0 = time.monotonic()
    assert not (revs / bogus).exists()
    assert time.monotonic() - t0 < 8 + 2
    wait_for(lambda: bogus in m.stderr_text(), 5, what="the reason logged")
    line = [x for x in m.stderr_text().splitlines() if bogus in x][-1]
    assert "keep=5" in line and "not reachable" in line, line
    assert not (revs / "not-a-commit").exists()
    assert m.stop() == 0

    # restart: the fetched commit is still retained, still not current
    silent = Silent()
    m2 = dagfs.mount([f"git:{silent.url()},name=g,period=30s"],
                     mnt=m.mnt, cache=m.cache,
                     ready=lambda mnt: (mnt / "dag.py").exists())
    try:
        assert (m2.mnt / "dag.py").read_text() == "new\n"
        assert (m2.mnt / ".dagfs/revs/g" / c1 / "dag.py").read_text() == \
            "old\n"
    finally:
        m2.stop()
        silent.close()


def test_tree_of_revisions_never_had_fetched_on_demand(
        dagfs, git_daemon, git_repo, tmp_path):
    """A tree id recorded by one daemon, on a daemon that never had its
    git revision: the manifest (copied into its cache, as a mirror or a
    shared cache would have it) names the commit, which a lookup fetches."""
    git_repo.write("dag.py", "v1\n")
    c1 = git_repo.commit("v1", when=T0)
    d = make_src(tmp_path, "d", {"d.py": "d\n"})
    srcs = [f"git:{git_daemon.url(git_repo)},name=g,period=200ms,at=g",
            f"dir:{d},name=d,at=d"]
    ready = lambda mnt: (mnt / "g/dag.py").exists() and \
        (mnt / "d/d.py").exists()                          # noqa: E731
    a = dagfs.mount(srcs, ready=ready)
    wait_for(lambda: all(s["revision"] for s in
                         status(a.mnt)["sources"].values()), 10,
             what="both sources")
    t1 = status(a.mnt)["tree"]
    assert a.stop() == 0
    git_repo.write("dag.py", "v2\n")
    git_repo.commit("v2", when=T0 + 60)

    b = dagfs.mount(srcs, ready=lambda mnt: (mnt / "g/dag.py").exists()
                    and (mnt / "g/dag.py").read_text() == "v2\n")
    assert c1 not in os.listdir(b.mnt / ".dagfs/revs/g")
    with pytest.raises(FileNotFoundError):      # no manifest: unknown here
        os.stat(b.mnt / ".dagfs/trees" / t1)
    wait_for(lambda: "unknown here" in b.stderr_text(), 5,
             what="the reason logged")
    shutil.copy(a.cache / "trees" / t1, b.cache / "trees" / t1)
    assert (b.mnt / ".dagfs/trees" / t1 / "g/dag.py").read_text() == "v1\n"
    assert (b.mnt / ".dagfs/trees" / t1 / "d/d.py").read_text() == "d\n"
    assert c1 in os.listdir(b.mnt / ".dagfs/revs/g")
    assert status(b.mnt)["sources"]["g"]["revision"] != c1


def test_a_stalled_fetch_starves_no_reader(dagfs, tmp_path):
    """The git remote never answers: lookups of its revisions wait in
    dagfs's own fetch threads, each at most fetch-timeout (the kernel sends
    the lookups of one directory one at a time), while every other request
    is served at once by FUSE threads, however few there are."""
    silent = Silent()
    d = make_src(tmp_path, "d", {"d.py": "d\n"})
    m = dagfs.mount([f"git:{silent.url()},name=g,at=g,period=30s",
                     f"dir:{d},name=d,at=d"],
                    args=["--fetch-timeout", "2s", "--threads", "1"],
                    ready=lambda mnt: (mnt / "d/d.py").exists())
    results = {}

    def look(i):
        t0 = time.monotonic()
        rev = "%040x" % (i + 1)
        results[i] = ((m.mnt / ".dagfs/revs/g" / rev).exists(),
                      time.monotonic() - t0)
    ts = [threading.Thread(target=look, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    time.sleep(0.3)
    slow, n = 0.0, 0
    while any(t.is_alive() for t in ts) and n < 2000:
        t0 = time.monotonic()
        assert (m.mnt / "d/d.py").read_text() == "d\n"
        assert "tree" in status(m.mnt)
        os.listdir(m.mnt / "d")
        slow = max(slow, time.monotonic() - t0)
        n += 1
    for t in ts:
        t.join(30)
    silent.close()
    assert n > 10 and slow < 1.0, (n, slow)
    assert len(results) == 3
    assert all(not found for found, _ in results.values())
    assert max(took for _, took in results.values()) < 3 * 2 + 3, results
    assert "not fetched within" in m.stderr_text()


def test_materialize_describes_each_revision(dagfs, tmp_path):
    a = make_src(tmp_path, "a", {"a.py": "a\n"})
    b = make_src(tmp_path, "b", {"b.py": "b\n"})
    srcs = [f"dir:{a},name=a,at=ta", f"dir:{b},name=b,at=tb"]
    out = tmp_path / "out"
    args = ["sync", "--once", "--materialize", str(out), "--cache",
            str(tmp_path / "mcache")]
    for s in srcs:
        args += ["--source", s]
    r = dagfs.run(args)
    assert r.returncode == 0, r.stderr
    mid = os.readlink(out / "current").split("/")[-1]
    desc = json.loads((out / ".revs" / f"{mid}.json").read_text())
    assert set(desc["sources"]) == {"a", "b"}
    assert desc["sources"]["a"]["at"] == "ta"
    assert desc["sources"]["a"]["type"] == "dir"
    # the same revisions mounted give the same tree id
    m = dagfs.mount(srcs, ready=lambda mnt: (mnt / "ta/a.py").exists()
                    and (mnt / "tb/b.py").exists())
    wait_for(lambda: all(s["revision"] for s in
                         status(m.mnt)["sources"].values()), 10,
             what="both sources")
    st = status(m.mnt)
    assert st["tree"] == desc["tree"], (st, desc)
    for n in ("a", "b"):
        assert st["sources"][n]["revision"] == desc["sources"][n]["revision"]


def test_airflow_bundles(dagfs, tmp_path):
    conf = tmp_path / "dagfs.conf"
    conf.write_text("[source team-a]\ntype = dir\nlocation = /x\n"
                    "at = team_a\n")
    r = dagfs.run(["airflow-bundles", "--json", "--config", str(conf),
                   "--source", "git:https://tok@example.com/org/dags.git",
                   "/opt/airflow/dags"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"name": "team-a", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/opt/airflow/dags", "source": "team-a"}},
        {"name": "dags", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/opt/airflow/dags", "source": "dags"}}]
    assert "tok" not in r.stdout
    r = dagfs.run(["airflow-bundles", "--json", "--whole-tree",
                   "--config", str(conf), "--materialize", "/dags"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [
        {"name": "dagfs", "classpath": "dagfs_airflow.DagfsDagBundle",
         "kwargs": {"mount": "/dags"}}]
    r = dagfs.run(["airflow-bundles", "--config", str(conf)])
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "mount path" in r.stderr
