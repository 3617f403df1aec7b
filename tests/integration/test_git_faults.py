# SPDX-License-Identifier: Apache-2.0
"""The git source over smart HTTP (lighttpd + git http-backend) behind the
fault proxy (tests/rigs/faultproxy.py): 500 and 503 answers, connection
resets, truncated bodies, stalls past the source's I/O limit and delays
short of it, on the ref advertisement (GET .../info/refs) and on the pack
fetch (POST .../git-upload-pack).

For every fault: the failure is reported (status.json and the log, naming
the source, the step and the cause); the last good revision stays served
byte for byte, never a part of the new one; once the faults stop the new
commit is served; and afterwards the cache is whole: `dagfs fsck` finds
no problem, `git fsck` passes on the cached repository, and no half
written pack is left in its objects/pack. A daemon killed halfway through
a pack fetch leaves such a pack (and may leave a ref's lock): the
restarted daemon sweeps both and catches up.

Stalls cost the source's I/O limit, 10 s at the least (3 periods, within
[10 s, 60 s]; git.c io_timeout_ms): the stall cases share one mount.
"""

import os
import pathlib
import random
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))

from conftest import served  # noqa: E402
from conftest import source_status as status  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from git_servers import git_http, git_repo, git_servers  # noqa: E402,F401

WHERE = {"refs": "/info/refs", "pack": "/git-upload-pack"}
DOING = {"refs": "listing remote refs", "pack": "fetching"}
CAUSE = {"500": "unexpected http status code: 500",
         "503": "unexpected http status code: 503",
         "reset": "Connection reset by peer",
         "truncate": "stream ended at an unexpected time",
         "truncate-close": "unexpected EOF",
         "stall": "no answer in 10 s",
         "stall-body": "no answer in 10 s"}
PACK_FILE = re.compile(r"pack-[0-9a-f]{40}\.(pack|idx|rev)")


def revision(i):
    """The files of revision @i: a few DAGs, one file only this revision
    has, and 256 KiB of incompressible bytes, so that half the pack fetch
    ends deep inside the pack."""
    files = {f"dags/d{k}.py": f"# rev {i} dag {k}\n" * (k + 1)
             for k in range(8)}
    files[f"dags/only_{i}.py"] = f"only in {i}\n"
    files["data/blob.bin"] = random.Random(i).randbytes(256 << 10)
    return {k: v.encode() if isinstance(v, str) else v
            for k, v in files.items()}


def publish(repo, i):
    for old in (repo.work / "dags").glob("only_*.py"):
        old.unlink()
    for rel, data in revision(i).items():
        repo.write(rel, data)
    return repo.commit(f"rev {i}")


def spec(http, repo, proxy, name, at=None, extra=""):
    url = f"http://127.0.0.1:{proxy.port}/git/{repo.name}.git"
    return (f"git:{url},name={name},period=200ms,username=dagfs,"
            f"password-file={http.password_file}" + (f",at={at}" if at else "")
            + extra)


def hold(m, root, want, until, timeout, what):
    """Until @until() is true, every look at @root finds exactly @want. The
    first look comes before the first test of @until(), so a condition
    that is already true (the faults hit before the first look) still
    checks the tree; the return follows @until() at once, so what the
    caller reads next (status) is what made it true."""
    deadline = time.monotonic() + timeout
    looks = 0
    while True:
        m.check_alive()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        got = served(root)
        assert got == want, f"{what}: served tree changed during faults: " \
            f"{sorted(set(got) ^ set(want)) or 'bytes differ'}"
        looks += 1
        if until():
            return looks
        time.sleep(0.02)


def check_cache(dagfs, cache, name):
    r = dagfs.run(["fsck", "--cache", str(cache)])
    assert r.returncode == 0 and "0 problems" in r.stdout, r.stdout + r.stderr
    repo = pathlib.Path(cache) / "git" / name / "repo.git"
    r = subprocess.run(["git", "fsck", "--full", "--no-dangling"], cwd=repo,
                       capture_output=True, text=True)
    assert r.returncode == 0, f"git fsck in {repo}:\n{r.stdout}{r.stderr}"
    pack = repo / "objects" / "pack"
    names = os.listdir(pack)
    stray = [n for n in names if not PACK_FILE.fullmatch(n)]
    assert not stray, f"left in {pack}: {stray}"
    stems = {n.rsplit(".", 1)[0] for n in names}
    for s in stems:     # every pack with its index and the other way round
        assert {f"{s}.pack", f"{s}.idx"} <= set(names), (s, names)


@pytest.fixture
def proxy(git_http):
    p = FaultProxy(git_http.port).start()
    yield p
    p.stop()


CASES = [(f, w) for w in WHERE
         for f in ("500", "503", "reset", "truncate", "truncate-close")]
CASES.append(("truncate-checksum", "pack"))


@pytest.mark.parametrize("fault,where", CASES)
def test_fault_keeps_last_good_then_catches_up(dagfs, git_http, git_repo,
                                               proxy, fault, where):
    """@fault on every @where request until the failure shows twice; the
    mount keeps revision 1 whole; faults off, revision 2 arrives."""
    publish(git_repo, 1)
    m = dagfs.mount([spec(git_http, git_repo, proxy, "f")],
                    args=["--status-interval", "100ms"],
                    ready=lambda mnt: served(mnt) == revision(1))
    if fault == "truncate-checksum":
        # every object arrives, the pack's trailing hash and the final
        # flush packet do not
        fault, proxy.truncate_at = "truncate", -24
    proxy.set_plan([fault], WHERE[where])
    head = publish(git_repo, 2)
    want = f"git source f: {DOING[where]}: "
    looks = hold(m, m.mnt, revision(1),
                 lambda: status(m, "f").get("failures", 0) >= 2 and
                 "sync failed (2 in a row)" in m.stderr_text(),
                 15, "two failed syncs")
    err = status(m, "f")["error"]
    assert err.startswith(want) and CAUSE[fault] in err, err
    assert looks > 0 and proxy.counts[fault] >= 2, proxy.counts
    assert f"sync failed (2 in a row): {want}" in m.stderr_text()
    assert head not in m.stderr_text()          # never published

    proxy.set_plan(["pass"])
    m.wait(lambda: served(m.mnt) == revision(2), 15,
           what="revision 2 once the faults stop")
    m.wait(lambda: status(m, "f").get("revision") == head and
           status(m, "f")["failures"] == 0 and not status(m, "f")["error"],
           5, what="status.json clean again")
    m.stop()
    check_cache(dagfs, m.cache, "f")


def test_stalls_time_out_and_delays_do_not(dagfs, git_http, git_servers):
    """One mount, one source per case, each behind its own proxy, so the
    10 s I/O limit is waited out once for all: the first ref
    advertisement stalls; the first pack fetch stalls before its answer;
    the first pack fetch stops halfway through the pack; the "delay"
    source's pack fetches wait 1.5 s, under the limit, and succeed."""
    cases = {"refs": ("stall", "refs"), "pack": ("stall", "pack"),
             "mid": ("stall-body", "pack"), "delay": ("stall", "pack")}
    repos, proxies, heads = {}, {}, {}
    try:
        for name in cases:
            repos[name] = git_servers.repo()
            publish(repos[name], 1)
            proxies[name] = FaultProxy(
                git_http.port, stall_s=1.5 if name == "delay" else 15).start()
        m = dagfs.mount([spec(git_http, repos[n], proxies[n], n, at=n)
                         for n in cases],
                        args=["--status-interval", "100ms"],
                        ready=lambda mnt: all(served(mnt / n) == revision(1)
                                              for n in cases))
        t0 = time.monotonic()
        for name, (fault, where) in cases.items():
            # once: the attempt after the failure goes through
            plan = [fault] if name == "delay" else [fault] + ["pass"] * 99
            proxies[name].set_plan(plan, WHERE[where])
            heads[name] = publish(repos[name], 2)
        pending = {n: cases[n] for n in ("refs", "pack", "mid")}
        while pending:
            m.check_alive()
            assert time.monotonic() - t0 < 25, f"no failure yet: {pending}"
            for name, (fault, where) in list(pending.items()):
                try:
                    got = served(m.mnt / name)
                except OSError as e:       # a swap under the walk
                    got = e
                log = m.stderr_text()      # after the look: a swap follows
                failed = re.search(        # the failure it logs
                    rf"git source {name}: sync failed \(1 in a row\): (.*)",
                    log)
                if failed:
                    assert failed[1].startswith(
                        f"git source {name}: {DOING[where]}: ") and \
                        CAUSE[fault] in failed[1], failed[1]
                    del pending[name]
                else:
                    assert got == revision(1), f"{name}: served tree " \
                        f"changed before the sync failed: " \
                        f"{got if isinstance(got, OSError) else sorted(got)}"
            time.sleep(0.02)
        assert time.monotonic() - t0 >= 10   # the limit, not sooner
        for name in cases:
            m.wait(lambda: served(m.mnt / name) == revision(2), 15,
                   what=f"{name}: revision 2 after the stall")
            m.wait(lambda: status(m, name).get("failures") == 0 and
                   status(m, name).get("revision") == heads[name], 5,
                   what=f"{name}: status.json clean again")
        assert proxies["delay"].counts["stall"] >= 1
        assert "git source delay: sync failed" not in m.stderr_text()
        m.stop()
    finally:
        for p in proxies.values():
            p.stop()
    for name in cases:
        check_cache(dagfs, m.cache, name)


def test_killed_mid_pack_restart_sweeps_and_catches_up(dagfs, git_http,
                                                       git_repo, proxy):
    """SIGKILL while a pack fetch is held halfway (the proxy stalls the
    body): the half-written pack is left in objects/pack, and, had the
    kill come while libgit2 held a ref's lock, so would the lock (made
    here by hand: that window is too short to hit). The restarted daemon
    removes both, fetches, and serves the new commit; the cache is whole."""
    publish(git_repo, 1)
    m = dagfs.mount([spec(git_http, git_repo, proxy, "k")],
                    ready=lambda mnt: served(mnt) == revision(1))
    repo = m.cache / "git" / "k" / "repo.git"
    pack = repo / "objects" / "pack"
    proxy.stall_s = 30
    proxy.set_plan(["stall-body"], WHERE["pack"])
    publish(git_repo, 2)
    # libgit2 writes the fetched pack under a temporary name
    m.wait(lambda: [n for n in os.listdir(pack) if n.startswith("pack_git2_")
                    and (pack / n).stat().st_size > 64 << 10], 30,
           what="a pack fetch halfway through")
    m.signal(signal.SIGKILL)
    m.wait_exit()
    temp = [n for n in os.listdir(pack) if not PACK_FILE.fullmatch(n)]
    assert temp, os.listdir(pack)         # what the kill left
    lock = repo / "refs" / "dagfs" / "tip.lock"
    lock.write_text("0" * 40 + "\n")

    proxy.set_plan(["pass"])
    m2 = dagfs.mount([spec(git_http, git_repo, proxy, "k")], cache=m.cache,
                     mnt=m.mnt, ready=lambda mnt: served(mnt) == revision(2))
    assert "removed 2 files left in" in m2.stderr_text()
    assert not lock.exists() and not any((pack / n).exists() for n in temp)
    m2.stop()
    check_cache(dagfs, m.cache, "k")


def test_a_trickling_server_meets_the_fetch_deadline(dagfs, git_http,
                                                     git_repo, proxy):
    """A server that answers one byte every half second never trips the
    per-read limit; the whole-fetch deadline (fetch-timeout=) ends the
    sync, the last good revision stays served, and the next round, the
    trickle over, catches up."""
    publish(git_repo, 1)
    m = dagfs.mount([spec(git_http, git_repo, proxy, "t",
                          extra=",fetch-timeout=3s")],
                    args=["--status-interval", "100ms"],
                    ready=lambda mnt: served(mnt) == revision(1))
    proxy.set_plan(["trickle"] + ["pass"] * 99, WHERE["pack"])
    head = publish(git_repo, 2)
    t0 = time.monotonic()
    # the log line comes first, status.json within --status-interval
    hold(m, m.mnt, revision(1),
         lambda: "git source t: sync failed" in m.stderr_text() and
         status(m, "t").get("error"), 20, "the deadline")
    took = time.monotonic() - t0
    err = status(m, "t")["error"]
    assert "fetch took longer than 3 s" in err, err
    assert 2.5 < took < 9, took
    m.wait(lambda: served(m.mnt) == revision(2), 15,
           what="revision 2 once the trickle is over")
    # status.json follows the swap from its own thread
    m.wait(lambda: status(m, "t").get("revision") == head, 5,
           what="status.json at revision 2")
    m.stop()
    check_cache(dagfs, m.cache, "t")
