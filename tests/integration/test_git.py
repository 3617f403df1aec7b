# SPDX-License-Identifier: Apache-2.0
"""The git source on real FUSE mounts against real servers on loopback
(tests/rigs/git_servers.py): git daemon, smart HTTP through lighttpd with
basic auth, sshd with its own host key and user keys.

Cases: the mount equals `git archive` byte for byte; push -> visible;
force-push; tag and commit pins; sub-path; two git sources and a dir
source in one mount; remote down -> last good served and the error
surfaced, remote back -> catches up; HTTP right and wrong password; ssh
known, unknown and changed host keys, wrong user key, passphrase key;
no torn reads and monotonic revisions driven by commits.
"""

import json
import multiprocessing as mp
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))

from conftest import (dagfs_binary, source_status,  # noqa: E402
                      tree_equal_errors, wait_for)
from git_servers import (Silent, git_daemon, git_http,  # noqa: E402,F401
                         git_repo, git_servers, git_sshd)
from tree_gen import gen_tree  # noqa: E402
import test_core as core  # noqa: E402
from test_daemon import free_port  # noqa: E402
from test_core import fast_dir  # noqa: E402,F401

PERIOD = "200ms"
T0 = 1_700_000_000          # commit times used by the tests (seconds)


def git_spec(url, **keys):
    keys.setdefault("period", PERIOD)
    return "git:" + url + "".join(f",{k.replace('_', '-')}={v}"
                                  for k, v in keys.items())


def read(p):
    try:
        return pathlib.Path(p).read_bytes()
    except OSError:
        return None


def shows(path, data):
    data = data.encode() if isinstance(data, str) else data
    return lambda mnt: read(mnt / path) == data


def wait_shows(m, path, data, timeout=15, what=None):
    wait_for(lambda: shows(path, data)(m.mnt), timeout,
             what=what or f"{path} == {data!r}")


def wait_stderr(m, text, timeout=15):
    wait_for(lambda: text in m.stderr_text(), timeout,
             what=f"stderr to mention {text!r}")
    return m.stderr_text()


# ------------------------------------------------------------ equality

def test_mount_equals_git_archive(dagfs, git_daemon, git_repo, tmp_path):
    info = gen_tree(tmp_path / "gen", seed=3, files=2100)
    shutil.copytree(info.root, git_repo.work, symlinks=True,
                    dirs_exist_ok=True)
    git_repo.write("bin/run.sh", "#!/bin/sh\necho hi\n", 0o755)
    git_repo.symlink("bin/link-to-run", "run.sh")
    head = git_repo.commit("big tree", when=T0)
    want = git_repo.archive(tmp_path / "archive")

    m = dagfs.mount([git_spec(git_daemon.url(git_repo))], timeout=120,
                    ready=lambda mnt: (mnt / "bin/run.sh").exists())
    for rel in info.outside:            # links out of the root: left out
        os.unlink(want / rel)
    errs = tree_equal_errors(want, m.mnt)
    assert not errs, "mount differs from git archive:\n" + "\n".join(errs[:40])
    errs = tree_equal_errors(m.mnt, want)        # and nothing extra
    assert not errs, "mount has more than git archive:\n" + "\n".join(errs[:40])
    assert os.stat(m.mnt / "bin/run.sh").st_mode & 0o111
    assert os.readlink(m.mnt / "bin/link-to-run") == "run.sh"
    for rel in info.outside:                     # left out, and logged
        assert not os.path.lexists(m.mnt / rel), rel
    assert os.stat(m.mnt / "bin/run.sh").st_mtime == T0
    assert head in m.stderr_text()               # "published revision <id>"


# -------------------------------------------------- push, force, mtimes

def test_push_visible_force_push_and_stable_mtimes(dagfs, git_daemon,
                                                   git_repo):
    git_repo.write("dags/a.py", "a = 1\n")
    git_repo.write("dags/b.py", "b = 1\n")
    git_repo.commit("one", when=T0)
    m = dagfs.mount([git_spec(git_daemon.url(git_repo))],
                    ready=shows("dags/b.py", "b = 1\n"))
    assert os.stat(m.mnt / "dags/a.py").st_mtime == T0

    git_repo.write("dags/b.py", "b = 2\n")
    git_repo.write("dags/c.py", "c = 2\n")
    second = git_repo.commit("two", when=T0 + 100)
    wait_shows(m, "dags/b.py", "b = 2\n")
    assert read(m.mnt / "dags/c.py") == b"c = 2\n"
    assert os.stat(m.mnt / "dags/a.py").st_mtime == T0        # unchanged
    assert os.stat(m.mnt / "dags/b.py").st_mtime == T0 + 100  # changed

    # rewrite history: a new root commit, force-pushed
    git_repo.git("checkout", "-q", "--orphan", "rewritten")
    git_repo.git("rm", "-q", "-r", "--cached", ".")
    git_repo.remove("dags")
    git_repo.write("new.py", "rewritten\n")
    git_repo.commit("rewritten", when=T0 + 200, push=False)
    git_repo.push(force=True, ref="main")
    wait_shows(m, "new.py", "rewritten\n")
    assert not (m.mnt / "dags").exists()
    assert second not in git_repo.git("log", "--format=%H").stdout

    # back to the old history (content seen before at that path)
    git_repo.git("push", "-q", "-f", "origin", f"{second}:refs/heads/main")
    wait_shows(m, "dags/b.py", "b = 2\n")
    assert not (m.mnt / "new.py").exists()


# ----------------------------------------------------------------- pins

def test_tag_and_commit_pins(dagfs, git_daemon, git_repo):
    git_repo.write("v.txt", "one\n")
    first = git_repo.commit("one", when=T0)
    git_repo.tag("v1")                                  # annotated
    git_repo.write("v.txt", "two\n")
    git_repo.commit("two", when=T0 + 10)
    url = git_daemon.url(git_repo)
    m = dagfs.mount([git_spec(url, ref="v1", at="tag"),
                     git_spec(url, ref=first, at="pin", name="pinned"),
                     git_spec(url, ref="main", at="head", name="head")],
                    ready=lambda mnt: (read(mnt / "head/v.txt") == b"two\n"
                                       and (mnt / "tag/v.txt").exists()
                                       and (mnt / "pin/v.txt").exists()))
    assert read(m.mnt / "tag/v.txt") == b"one\n"
    assert read(m.mnt / "pin/v.txt") == b"one\n"

    git_repo.write("v.txt", "three\n")
    git_repo.commit("three", when=T0 + 20)
    wait_shows(m, "head/v.txt", "three\n")
    time.sleep(0.6)                     # several polls of the pinned ones
    assert read(m.mnt / "tag/v.txt") == b"one\n"
    assert read(m.mnt / "pin/v.txt") == b"one\n"

    git_repo.tag("v1")                  # the tag moves: a tag ref follows
    wait_shows(m, "tag/v.txt", "three\n")
    # a pinned commit never fetches again: the remote may even go away
    before = len(m.stderr_text())
    shutil.move(git_repo.bare, str(git_repo.bare) + ".gone")
    try:
        wait_for(lambda: "git source head: listing remote refs" in
                 m.stderr_text()[before:], 10, what="head source failing")
        time.sleep(0.6)
        assert read(m.mnt / "pin/v.txt") == b"one\n"
        assert "git source pinned" not in m.stderr_text()[before:]
    finally:
        shutil.move(str(git_repo.bare) + ".gone", git_repo.bare)


# -------------------------------------------------------------- shallow

def libgit2_minor():
    """Minor version of the libgit2 1.x that the dagfs under test links."""
    out = subprocess.run(["ldd", str(dagfs_binary())], capture_output=True,
                         text=True).stdout
    found = re.search(r"libgit2\.so\.1\.(\d+)", out)
    assert found, out
    return int(found.group(1))


def fetched_bytes(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                  timeout=5).read().decode()
    return {x.group(1): int(x.group(2)) for x in re.finditer(
        r'^dagfs_source_fetched_bytes_total\{source="([^"]+)"\} (\d+)$',
        text, re.M)}


def test_first_sync_and_pinned_commit_fetch_one_commit(dagfs, git_http,
                                                       git_repo):
    """Built with libgit2 1.7 or later, a source's first fetch and a commit
    pinned by id over smart HTTP bring that one commit (depth 1), not the
    history; later fetches stay incremental. With libgit2 1.5 the whole
    history comes (git:// and ssh too: libgit2 1.8 cannot fetch shallow
    over them, the rest of this file covers them)."""
    ids = []
    for i in range(24):  # 24 x 64 KiB of incompressible history
        git_repo.write("big.bin", os.urandom(65536))
        git_repo.write("v.txt", f"{i}\n")
        ids.append(git_repo.commit(f"c{i}", when=T0 + i))
    url = git_http.url(git_repo)
    auth = {"username": "dagfs", "password_file": git_http.password_file}
    port = free_port()
    m = dagfs.mount([git_spec(url, ref="main", at="head", name="head", **auth),
                     git_spec(url, ref=ids[5], at="pin", name="pin", **auth)],
                    args=["--http", f"127.0.0.1:{port}"],
                    ready=lambda mnt: read(mnt / "head/v.txt") == b"23\n"
                    and read(mnt / "pin/v.txt") == b"5\n")
    assert os.stat(m.mnt / "pin/v.txt").st_mtime == T0 + 5
    assert len(read(m.mnt / "head/big.bin")) == 65536
    got = fetched_bytes(port)
    shallow = libgit2_minor() >= 7
    for name in ("head", "pin"):
        is_shallow = (m.cache / "git" / name / "repo.git" / "shallow").exists()
        assert is_shallow == shallow, name
        if shallow:  # one 64 KiB blob and a few small objects
            assert got[name] < 200_000, got
        else:
            assert got[name] > 20 * 65536, got
    git_repo.write("v.txt", "24\n")
    git_repo.commit("c24", when=T0 + 24)
    wait_shows(m, "head/v.txt", "24\n")
    assert fetched_bytes(port)["head"] - got["head"] < 20_000  # incremental
    assert len(read(m.mnt / "head/big.bin")) == 65536
    # and every later one too: libgit2 1.8 deletes the shallow boundary on
    # a fetch that does not deepen, and the next fetch then failed for
    # ever ("object not found" for the first commit's parent)
    for i in range(25, 28):
        git_repo.write("v.txt", f"{i}\n")
        git_repo.commit(f"c{i}", when=T0 + i)
        wait_shows(m, "head/v.txt", f"{i}\n")
        boundary = m.cache / "git" / "head" / "repo.git" / "shallow"
        assert boundary.exists() == shallow, i


# -------------------------------------------------------------- subpath

def test_subpath(dagfs, git_daemon, git_repo):
    git_repo.write("airflow/dags/x.py", "x\n")
    git_repo.write("airflow/dags/sub/y.py", "y\n")
    git_repo.write("README.md", "readme\n")
    git_repo.commit("one", when=T0)
    m = dagfs.mount([git_spec(git_daemon.url(git_repo),
                              subpath="airflow/dags", at="team_a")],
                    ready=shows("team_a/x.py", "x\n"))
    assert sorted(os.listdir(m.mnt / "team_a")) == ["sub", "x.py"]
    assert read(m.mnt / "team_a/sub/y.py") == b"y\n"
    assert not (m.mnt / "team_a/README.md").exists()
    git_repo.write("README.md", "outside the sub-path\n")
    git_repo.write("airflow/dags/z.py", "z\n")
    git_repo.commit("two", when=T0 + 1)
    wait_shows(m, "team_a/z.py", "z\n")


# --------------------------------------------------------- composition

def test_two_git_sources_and_a_dir(dagfs, git_daemon, git_http, git_servers,
                                   tmp_path):
    a, b = git_servers.repo(), git_servers.repo()
    a.write("a.py", "team a\n")
    a.commit("a", when=T0)
    b.write("b.py", "team b\n")
    b.commit("b", when=T0)
    local = tmp_path / "local"
    local.mkdir()
    (local / "l.py").write_text("local\n")
    m = dagfs.mount(
        [git_spec(git_daemon.url(a), at="team_a", name="a"),
         git_spec(git_http.url(b), at="team_b", name="b", username="dagfs",
                  password_file=git_http.password_file),
         f"dir:{local},at=local,debounce=100ms"],
        ready=lambda mnt: all((mnt / p).exists() for p in
                              ("team_a/a.py", "team_b/b.py", "local/l.py")))
    assert sorted(os.listdir(m.mnt)) == ["local", "team_a", "team_b"]
    b.write("b.py", "team b v2\n")
    b.commit("b2", when=T0 + 1)
    wait_shows(m, "team_b/b.py", "team b v2\n")
    assert read(m.mnt / "team_a/a.py") == b"team a\n"
    assert read(m.mnt / "local/l.py") == b"local\n"
    assert git_http.password not in m.stderr_text()


# ---------------------------------------------------------- remote down

def status_text(m):
    try:
        return (m.cache / "status.json").read_text()
    except OSError:
        return ""


def test_remote_down_serves_last_good_then_catches_up(dagfs, git_servers,
                                                      git_repo):
    d = git_servers.daemon()            # our own: this test stops it
    git_repo.write("f.py", "v1\n")
    git_repo.commit("one", when=T0)
    m = dagfs.mount([git_spec(d.url(git_repo), name="flaky")],
                    args=["--status-interval", "200ms"],
                    ready=shows("f.py", "v1\n"))
    d.stop()
    git_repo.write("f.py", "v2\n")
    git_repo.commit("two", when=T0 + 1)
    err = wait_stderr(m, "git source flaky: listing remote refs: failed "
                      "to connect to 127.0.0.1")
    assert "Connection refused" in err
    assert read(m.mnt / "f.py") == b"v1\n"           # last good served
    wait_for(lambda: "Connection refused" in status_text(m), 10,
             what="the error in status.json")
    st = json.loads(status_text(m))
    assert "flaky" in json.dumps(st)

    d.start()                                         # same port
    wait_shows(m, "f.py", "v2\n", timeout=30)         # after backoff

    # a restart while the remote is down serves the cache at once
    m.stop()
    d.stop()
    m2 = dagfs.mount([git_spec(d.url(git_repo), name="flaky")],
                     cache=m.cache, ready=shows("f.py", "v2\n"),
                     timeout=10)
    wait_stderr(m2, "Connection refused")
    assert read(m2.mnt / "f.py") == b"v2\n"


def test_deleted_branch_keeps_last_good(dagfs, git_daemon, git_repo):
    git_repo.write("f.py", "feature\n")
    git_repo.commit("one", when=T0)
    git_repo.push(ref="feature")
    m = dagfs.mount([git_spec(git_daemon.url(git_repo), ref="feature",
                              name="feat")],
                    ready=shows("f.py", "feature\n"))
    git_repo.git("push", "-q", "origin", ":refs/heads/feature")
    wait_stderr(m, "git source feat: listing remote refs: ref 'feature' "
                "not found on the remote")
    assert read(m.mnt / "f.py") == b"feature\n"


def test_tree_entry_named_dotdot_is_left_out(dagfs, git_daemon, git_repo):
    """A hostile commit (made with git mktree) holding an entry named '..'
    next to a good file: the entry is left out with a logged reason naming
    it, as escaping symlinks and hostile S3 keys are; the rest is served."""
    import subprocess
    git_repo.write("ok.py", "ok\n")
    git_repo.commit("one", when=T0)
    m = dagfs.mount([git_spec(git_daemon.url(git_repo), name="h")],
                    ready=shows("ok.py", "ok\n"))
    blob = git_repo.git("hash-object", "-w", "ok.py").stdout.strip()
    env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", HOME=str(git_repo.work))
    tree = subprocess.run(
        ["git", "mktree"], cwd=git_repo.work, env=env, check=True,
        capture_output=True, text=True,
        input=f"100644 blob {blob}\tok.py\n100644 blob {blob}\tgood.py\n"
              f"100644 blob {blob}\t..\n").stdout.strip()
    commit = git_repo.git("commit-tree", tree, "-p", "HEAD", "-m",
                          "hostile").stdout.strip()
    git_repo.git("push", "-q", "-f", "origin",
                 f"{commit}:refs/heads/{git_repo.branch}")
    wait_shows(m, "good.py", "ok\n", what="the hostile commit's good files")
    assert "tree entry '..'" in m.stderr_text() and \
        "left out" in m.stderr_text(), m.stderr_text()[-2000:]
    assert "sync failed" not in m.stderr_text()
    assert sorted(os.listdir(m.mnt)) == ["good.py", "ok.py"]


def test_silent_remote_times_out(dagfs):
    silent = Silent()
    try:
        m = dagfs.mount([git_spec(silent.url(), name="hung")], start=False)
        m.start(wait_mounted=False)
        t0 = time.monotonic()
        err = wait_stderr(m, "git source hung: listing remote refs: "
                          "reading from 127.0.0.1", timeout=30)
        assert "no answer in 10 s" in err
        assert time.monotonic() - t0 < 25
        m.stop()
    finally:
        silent.close()


def test_ssh_peer_that_stalls_meets_the_fetch_deadline(dagfs, git_sshd):
    """An ssh peer that takes the connection and then says nothing holds
    libssh2 (which waits on the socket itself) past any per-read limit:
    the fetch deadline ends it, well before the 10 s I/O limit."""
    silent = Silent()
    try:
        m = dagfs.mount([git_spec(silent.url("ssh").replace("//", "//git@"),
                                  name="stall", ssh_key=git_sshd.user_key,
                                  known_hosts=git_sshd.known_hosts,
                                  fetch_timeout="3s")], start=False)
        m.start(wait_mounted=False)
        t0 = time.monotonic()
        err = wait_stderr(m, "git source stall: sync failed", timeout=30)
        took = time.monotonic() - t0
        assert "fetch took longer than 3 s" in err, err
        assert took < 8, took
        m.stop()
    finally:
        silent.close()


# ----------------------------------------------------------------- http

def test_http_basic_auth_password_token_and_wrong_password(dagfs, git_http, git_repo,
                                                  tmp_path):
    git_repo.write("h.py", "over http\n")
    git_repo.commit("one", when=T0)
    url = git_http.url(git_repo)
    m = dagfs.mount([git_spec(url, username="dagfs", name="web",
                              password_file=git_http.password_file)],
                    ready=shows("h.py", "over http\n"))
    m.stop()
    m = dagfs.mount([git_spec(url, name="tok",
                              token_file=git_http.token_file)],
                    ready=shows("h.py", "over http\n"))
    assert git_http.token not in m.stderr_text()
    m.stop()

    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    bad = dagfs.mount([git_spec(url, username="dagfs", name="web",
                                password_file=wrong)], start=False)
    bad.start(wait_mounted=False)
    err = wait_stderr(bad, "git source web: listing remote refs: "
                      "authentication failed")
    assert "not-the-password" not in err and git_http.password not in err
    assert not (bad.mnt / "h.py").exists()
    bad.stop()

    none = dagfs.mount([git_spec(url, name="anon")], start=False)
    none.start(wait_mounted=False)
    wait_stderr(none, "git source anon: listing remote refs: the server "
                "wants credentials")
    none.stop()


# ------------------------------------------------------------------ ssh

def ssh_mount(dagfs, sshd, repo, wait=True, **keys):
    keys.setdefault("name", "sshsrc")
    keys.setdefault("ssh_key", sshd.user_key)
    keys.setdefault("known_hosts", sshd.known_hosts)
    m = dagfs.mount([git_spec(sshd.url(repo), **keys)], start=False)
    if wait:
        m.start(ready=shows("s.py", "over ssh\n"))
    else:
        m.start(wait_mounted=False)
    return m


@pytest.fixture
def ssh_repo(git_repo):
    git_repo.write("s.py", "over ssh\n")
    git_repo.commit("one", when=T0)
    return git_repo


def test_ssh_known_host_accepted(dagfs, git_sshd, ssh_repo):
    m = ssh_mount(dagfs, git_sshd, ssh_repo)
    ssh_repo.write("s2.py", "second\n")
    ssh_repo.commit("two", when=T0 + 1)
    wait_shows(m, "s2.py", "second\n")
    assert "NOT verified" not in m.stderr_text()


def test_ssh_passphrase_key(dagfs, git_sshd, ssh_repo):
    ssh_mount(dagfs, git_sshd, ssh_repo, ssh_key=git_sshd.pass_key,
              ssh_passphrase_file=git_sshd.pass_file)


@pytest.mark.parametrize("kh,why", [
    ("empty_known_hosts", "not in known_hosts"),
    ("other_known_hosts", "does not match known_hosts"),
])
def test_ssh_unknown_or_changed_host_key_refused(dagfs, git_sshd, ssh_repo,
                                                 kh, why):
    """A host key that known_hosts does not vouch for ends the connection
    before the user key is offered, at every try: nothing is served, and
    status.json names the reason."""
    log0 = len(git_sshd.log_text())
    m = ssh_mount(dagfs, git_sshd, ssh_repo, wait=False, period="100ms",
                  known_hosts=getattr(git_sshd, kh))
    err = wait_stderr(m, "git source sshsrc: listing remote refs: host key "
                      "for [127.0.0.1]:")
    assert why in err
    st = wait_for(lambda: (s := source_status(m, "sshsrc")).get(
        "failures", 0) >= 3 and s, 15, what="three refused tries")
    assert why in st["error"] and not st["revision"] and not st["healthy"], st
    meta = json.loads((m.mnt / ".dagfs/status.json").read_text())
    assert not meta["sources"]["sshsrc"].get("revision"), meta
    assert os.listdir(m.mnt) == []
    # the server saw the tries, and not one of them logged in
    sshd_log = git_sshd.log_text()[log0:]
    assert sshd_log.count("Connection closed by 127.0.0.1") >= 3, sshd_log
    assert "Accepted publickey" not in sshd_log, sshd_log


def test_ssh_wrong_user_key_refused(dagfs, git_sshd, ssh_repo):
    m = ssh_mount(dagfs, git_sshd, ssh_repo, wait=False,
                  ssh_key=git_sshd.wrong_key)
    wait_stderr(m, "git source sshsrc: listing remote refs: authentication "
                "failed")


def test_ssh_insecure_option_warns(dagfs, git_sshd, ssh_repo):
    m = ssh_mount(dagfs, git_sshd, ssh_repo,
                  known_hosts=git_sshd.empty_known_hosts,
                  insecure_no_host_key_check=1)
    assert "host keys are NOT verified" in m.stderr_text()


# ------------------------------------------- torn reads, driven by commits

def stage_commit(repo, r):
    """Revision @r of test_core's reader layout, as one commit."""
    d = repo.work / "d"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (repo.work / "big").mkdir(exist_ok=True)
    for i in range(core.N_NAMES):
        (d / core.rev_name(i, r)).write_bytes(core.small_bytes(r, i))
    for i in range(core.N_BIG):
        (repo.work / "big" / f"big{i}.bin").write_bytes(core.big_bytes(r, i))
    (repo.work / "REV").write_bytes(b"%08d" % r)
    repo.commit(f"rev {r}", when=T0 + r)


def test_no_torn_reads_monotonic_revisions_by_commits(dagfs, git_daemon,
                                                      git_repo, fast_dir):
    # the cache on tmpfs: this test is about atomicity, not about the
    # time 300 blob fsyncs per revision take on a shared disk
    stage_commit(git_repo, 0)
    m = dagfs.mount([git_spec(git_daemon.url(git_repo), period="100ms")],
                    cache=fast_dir / "cache",
                    ready=shows("REV", b"%08d" % 0))
    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=core.reader, args=(str(m.mnt), k, stop, out))
             for k in range(8)]
    for p in procs:
        p.start()
    nrev = 50
    try:
        for r in range(1, nrev + 1):
            stage_commit(git_repo, r)
            wait_shows(m, "REV", b"%08d" % r, what=f"revision {r} visible")
    finally:
        stop.set()
        results = core.collect_readers(procs, out)
    bad = [f"reader {s}: {b}" for s, _, _, bs in results for b in bs]
    assert not bad, "\n".join(bad[:40])
    for s, n, nrevs, _ in results:
        assert nrevs >= 10, f"reader {s} saw only {nrevs} revisions in {n} ops"
    assert sorted(os.listdir(m.mnt / "d")) == sorted(
        core.rev_name(i, nrev) for i in range(core.N_NAMES))
