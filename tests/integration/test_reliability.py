# SPDX-License-Identifier: Apache-2.0
"""Reliability: fsck, corrupted blobs and snapshots, a full cache disk,
and SIGKILL at random points during syncs."""

import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, freeze, wait_for

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from faultproxy import FaultProxy  # noqa: E402
from git_servers import git_daemon, git_repo, git_servers  # noqa: E402,F401
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402

# SIGKILL points across the three source types: DAGFS_CRASH_POINTS in
# all (default 60 in CI; 200 for the full run), half dir, a quarter each
# git and S3.
CRASH_POINTS = int(os.environ.get("DAGFS_CRASH_POINTS", 60))


def blobs(cache):
    return [p for p in (pathlib.Path(cache) / "objects").rglob("*") if p.is_file()]


def corrupt(path):
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]) if b else b"X")


def test_fsck_clean_corrupt_repair(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"d{i}.py").write_text(f"# {i}\n")
    m = dagfs.mount([f"dir:{src},name=local"],
                    ready=lambda mnt: (mnt / "d4.py").exists())
    m.stop()
    r = dagfs.run(["fsck", "--cache", str(m.cache)])
    assert r.returncode == 0 and "0 problems" in r.stdout
    victim = blobs(m.cache)[0]
    corrupt(victim)
    r = dagfs.run(["fsck", "--cache", str(m.cache)])
    assert r.returncode == 4 and "does not match" in r.stdout
    assert victim.exists()  # reported, not touched
    r = dagfs.run(["fsck", "--cache", str(m.cache), "--repair"])
    assert r.returncode == 1 and not victim.exists()
    r = dagfs.run(["fsck", "--cache", str(m.cache)])
    assert r.returncode == 0, r.stdout
    # a truncated snapshot is reported too, and repaired
    dagfs.mount([f"dir:{src},name=local"], cache=m.cache,
                ready=lambda mnt: (mnt / "d4.py").exists()).stop()
    snap = (pathlib.Path(m.cache) / "sources" / "local" / "current").resolve()
    os.chmod(snap, 0o644)
    with open(snap, "r+b") as f:
        f.truncate(snap.stat().st_size // 2)
    r = dagfs.run(["fsck", "--cache", str(m.cache)])
    assert r.returncode == 4 and snap.name in r.stdout, r.stdout
    assert dagfs.run(["fsck", "--cache", str(m.cache), "--repair"]).returncode == 1
    assert dagfs.run(["fsck", "--cache", str(m.cache)]).returncode == 0
    # not a cache: an operational error, and nothing created
    r = dagfs.run(["fsck", "--cache", str(tmp_path / "none")])
    assert r.returncode == 8 and "not a dagfs cache" in r.stderr
    assert not (tmp_path / "none").exists()


def test_fsck_repair_refused_while_daemon_runs(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    m = dagfs.mount([f"dir:{src},name=local"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    r = dagfs.run(["fsck", "--cache", str(m.cache), "--repair"])
    assert r.returncode == 8 and "in use by a running dagfs" in r.stderr
    assert dagfs.run(["fsck", "--cache", str(m.cache)]).returncode == 0


def test_corrupt_blob_reads_eio_then_refetched(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("precious bytes\n")
    m = dagfs.mount([f"dir:{src},name=local,period=300ms"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    m.stop()
    for b in blobs(m.cache):
        corrupt(b)
    m2 = dagfs.mount([f"dir:{src},name=local,period=300ms"], cache=m.cache,
                     ready=lambda mnt: (mnt / "a.py").exists() or True)
    try:
        data = (m2.mnt / "a.py").read_bytes()
        assert data == b"precious bytes\n"  # already refetched: fine too
    except OSError as e:
        assert e.errno == 5  # EIO, never wrong bytes
    m2.wait(lambda: (m2.mnt / "a.py").read_bytes() == b"precious bytes\n",
            timeout=20, what="the blob fetched again")
    assert "corrupt" in m2.stderr_text()


def test_corrupt_snapshot_is_ignored_at_restart(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("one\n")
    m = dagfs.mount([f"dir:{src},name=local,debounce=100ms"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    (src / "a.py").write_text("two\n")
    m.wait(lambda: (m.mnt / "a.py").read_text() == "two\n")
    m.stop()
    cur = pathlib.Path(m.cache) / "sources" / "local" / "current"
    snap = cur.resolve()
    os.chmod(snap, 0o644)
    with open(snap, "r+b") as f:
        f.truncate(snap.stat().st_size // 2)
    shutil.rmtree(src)  # only the cache can serve now
    m2 = dagfs.mount([f"dir:{tmp_path / 'src'},name=local"], cache=m.cache,
                     ready=lambda mnt: (mnt / "a.py").exists())
    assert (m2.mnt / "a.py").read_text() == "one\n"  # the previous snapshot
    assert "corrupt" in m2.stderr_text()


def test_full_cache_disk_keeps_last_good(dagfs, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", cache],
                   check=True)
    try:
        src = tmp_path / "src"
        src.mkdir()
        (src / "a.py").write_text("small\n")
        m = dagfs.mount([f"dir:{src},name=local,debounce=100ms,period=500ms"],
                        cache=cache, ready=lambda mnt: (mnt / "a.py").exists())
        (src / "big.bin").write_bytes(os.urandom(6 << 20))
        (src / "a.py").write_text("changed\n")
        m.wait(lambda: "No space left on device" in m.stderr_text(),
               timeout=20, what="the disk-full error")
        assert (m.mnt / "a.py").read_text() == "small\n"
        assert not (m.mnt / "big.bin").exists()
        (src / "big.bin").unlink()
        m.wait(lambda: (m.mnt / "a.py").read_text() == "changed\n",
               timeout=30, what="recovery once space returns")
    finally:
        dagfs.teardown()
        subprocess.run(["umount", "-l", cache])


def revision_files(i):
    return {f"t{j}/d{k}.py": f"rev {i} file {j}.{k}\n" * (i % 7 + 1)
            for j in range(4) for k in range(25)}


def write_rev(src, i):
    for rel, text in revision_files(i).items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text)
        tmp.rename(p)


def served_tree(mnt):
    return {str(p.relative_to(mnt)): p.read_text() for p in mnt.rglob("*.py")}


@pytest.mark.parametrize("points", [CRASH_POINTS - 2 * (CRASH_POINTS // 4)])
def test_sigkill_at_random_points(dagfs, tmp_path, points):
    """SIGKILL at random points of syncs; after each, the restarted
    daemon serves, from its cache alone (the source moved away), exactly
    one complete revision, fsck passes, and syncing resumes."""
    src = tmp_path / "src"
    away = tmp_path / "away"
    src.mkdir()
    rng = random.Random(7)
    write_rev(src, 0)
    cache = tmp_path / "cache"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    spec = f"dir:{src},name=local,debounce=50ms,period=200ms"

    # statvfs reaches the daemon: the dead mount of the previous round
    # may still answer from the kernel's caches until it is replaced
    def live(p):
        os.statvfs(p)
        return (p / "t0" / "d0.py").exists()

    def current(p):
        return int((p / "t0" / "d0.py").read_text().split()[1])

    m = dagfs.mount([spec], cache=cache, mnt=mnt, ready=live)
    for point in range(points):
        rev = point + 1
        # The writer is atomic only if dagfs cannot look in the middle
        # of it (a dir source publishes what was quiet for the debounce):
        # hold the daemon still while a revision is written.
        freeze(m.pid)
        write_rev(src, rev)
        m.signal(signal.SIGCONT)
        time.sleep(rng.uniform(0.0, 0.3))  # kill somewhere in the sync
        m.signal(signal.SIGKILL)
        m.wait_exit()
        r = dagfs.run(["fsck", "--cache", str(cache)])
        assert r.returncode == 0, f"point {point}: {r.stdout}"
        src.rename(away)  # restart on the cache alone
        m = dagfs.mount([spec], cache=cache, mnt=mnt, ready=live)
        got = current(mnt)
        assert got in (rev - 1, rev), f"point {point}: revision {got}"
        assert served_tree(mnt) == revision_files(got), f"point {point}: torn"
        away.rename(src)
        m.wait(lambda: current(mnt) == rev, timeout=30,
               what=f"point {point}: syncing resumes")
    assert served_tree(mnt) == revision_files(points)


def crash_rounds(dagfs, tmp_path, spec, points, publish, offline, online,
                 files, seed, env=None, kill_within=0.5):
    """The remote-source form of the SIGKILL test: @publish(rev) makes
    revision @rev on the remote; the daemon is killed at a random moment
    of the sync that follows, fsck must pass, and a restart with the
    remote @offline() must serve exactly revision rev-1 or rev from the
    cache; @online() and syncing resumes to @rev."""
    rng = random.Random(seed)
    cache, mnt = tmp_path / "cache", tmp_path / "mnt"
    mnt.mkdir()

    def live(p):
        os.statvfs(p)
        return (p / "t0" / "d0.py").exists()

    def current(p):
        return int((p / "t0" / "d0.py").read_text().split()[1])

    def tree(p):
        return {str(q.relative_to(p)): q.read_text() for q in p.rglob("*.py")}

    publish(0)
    m = dagfs.mount([spec], cache=cache, mnt=mnt, env=env, ready=live)
    m.wait(lambda: current(mnt) == 0, timeout=30, what="revision 0")
    for point in range(points):
        rev = point + 1
        publish(rev)
        time.sleep(rng.uniform(0.0, kill_within))
        m.signal(signal.SIGKILL)
        m.wait_exit()
        r = dagfs.run(["fsck", "--cache", str(cache)])
        assert r.returncode == 0, f"point {point}: {r.stdout}"
        offline()
        m = dagfs.mount([spec], cache=cache, mnt=mnt, env=env, ready=live)
        got = current(mnt)
        assert got in (rev - 1, rev), f"point {point}: revision {got}"
        assert tree(mnt) == files(got), f"point {point}: not one revision"
        online()
        m.wait(lambda: current(mnt) == rev, timeout=30,
               what=f"point {point}: syncing resumes; daemon log ends:\n"
               + m.stderr_text()[-2000:])
    assert tree(mnt) == files(points)


def test_sigkill_during_git_syncs(dagfs, tmp_path, git_daemon, git_repo):
    points = CRASH_POINTS // 4
    hidden = git_repo.bare.with_name(git_repo.bare.name + ".away")

    def publish(rev):
        for rel, text in revision_files(rev).items():
            git_repo.write(rel, text)
        git_repo.commit(f"rev {rev}")

    crash_rounds(dagfs, tmp_path,
                 f"git:{git_daemon.url(git_repo)},name=g,period=100ms",
                 points, publish, lambda: git_repo.bare.rename(hidden),
                 lambda: hidden.rename(git_repo.bare), revision_files,
                 seed=11, kill_within=0.4)


def s3_files(i):
    return {f"t{j}/d{k}.py": f"rev {i} file {j}.{k}\n" * (i % 5 + 1)
            for j in range(2) for k in range(5)}


def test_sigkill_during_s3_syncs(dagfs, tmp_path, rgw):
    points = CRASH_POINTS // 4
    bucket = rgw.bucket(f"crash-{os.getpid()}")
    proxy = FaultProxy(rgw.port).start()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_EC2_METADATA_DISABLED="true")

    def publish(rev):   # the marker makes each revision whole on S3
        for rel, text in s3_files(rev).items():
            rgw.put(bucket, "dags/" + rel, text)
        rgw.put(bucket, "dags/_dagfs/commit", str(rev))

    try:
        crash_rounds(dagfs, tmp_path,
                     f"s3:{bucket}/dags/,endpoint=http://127.0.0.1:"
                     f"{proxy.port},region=us-east-1,period=100ms,name=s,"
                     f"marker=_dagfs/commit", points, publish,
                     lambda: proxy.set_plan(["500"]),
                     lambda: proxy.set_plan(["pass"]), s3_files,
                     seed=13, env=env, kill_within=0.5)
    finally:
        proxy.stop()
