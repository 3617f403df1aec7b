# SPDX-License-Identifier: Apache-2.0
"""The production daemon: HTTP health, readiness, metrics and the signed
webhook; the validate= publish gate; kill -9 and restart over the dead
mount."""

import errno
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import stat
import time
import urllib.error
import urllib.request

from conftest import served, source_status, wait_for


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(port, path, method="GET", data=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                 method=method, data=data,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_counts(text):
    """{("requests"|"errors", op): count} from /metrics text."""
    return {x.group(1, 2): int(x.group(3)) for x in re.finditer(
        r'^dagfs_fuse_(requests|errors)_total\{op="([a-z_]+)"\} (\d+)$',
        text, re.M)}


def metrics_counts(port):
    return parse_counts(http(port, "/metrics")[1])


def test_readiness_flips_with_failures_and_recovers(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    port = free_port()
    m = dagfs.mount([f"dir:{src},name=local,period=200ms,max-failures=2"],
                    args=["--http", f"127.0.0.1:{port}"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    assert http(port, "/healthz")[0] == 200
    wait_for(lambda: http(port, "/readyz")[0] == 200, what="ready")
    moved = tmp_path / "moved"
    src.rename(moved)
    wait_for(lambda: http(port, "/readyz")[0] == 503, timeout=20,
             what="not ready after max-failures")
    code, body = http(port, "/readyz")
    assert "too many failures" in body
    assert (m.mnt / "a.py").read_text() == "x\n"  # last good still served
    assert http(port, "/healthz")[0] == 200
    moved.rename(src)
    wait_for(lambda: http(port, "/readyz")[0] == 200, timeout=30,
             what="ready again")


def test_metrics(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    port = free_port()
    m = dagfs.mount([f"dir:{src},name=local"],
                    args=["--http", f"127.0.0.1:{port}"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    code, text = http(port, "/metrics")
    assert code == 200
    for name in ("dagfs_source_revision_info{source=\"local\",revision=\"dir-",
                 "dagfs_source_last_success_timestamp_seconds{source=\"local\"}",
                 "dagfs_source_consecutive_failures{source=\"local\"} 0",
                 "dagfs_sync_duration_seconds_bucket{source=\"local\",le=\"+Inf\"}",
                 "dagfs_source_fetched_bytes_total{source=\"local\"} 2",
                 "dagfs_store_blobs 1"):
        assert name in text, name
    # FUSE counters: reads through the mount show up
    assert (m.mnt / "a.py").read_text() == "x\n"
    try:
        os.mkdir(m.mnt / "new")
    except OSError as e:
        assert e.errno == errno.EROFS
    else:
        raise AssertionError("mkdir on the mount succeeded")
    _, text = http(port, "/metrics")
    assert "# TYPE dagfs_fuse_requests_total counter" in text
    assert "# TYPE dagfs_fuse_errors_total counter" in text
    counts = parse_counts(text)
    assert counts[("requests", "lookup")] >= 1
    assert counts[("requests", "read")] >= 1
    # the mount is read-only (MS_RDONLY): the kernel refuses the mkdir
    # itself, so the write_refused counter only has to be there
    for op in ("lookup", "getattr", "readlink", "open", "read", "opendir",
               "readdir", "statfs", "getxattr", "listxattr", "ioctl",
               "releasedir", "release", "forget", "flush", "write_refused",
               "other"):
        assert ("requests", op) in counts and ("errors", op) in counts, op
    assert counts[("errors", "read")] == 0
    # Python's open() asks isatty() of the file: one ioctl per open. The
    # first close sends the one FLUSH; ENOSYS makes the kernel stop.
    ioctls = counts[("requests", "ioctl")]
    assert ioctls >= 1
    assert counts[("requests", "flush")] == 1
    assert (m.mnt / "a.py").read_text() == "x\n"
    counts = metrics_counts(port)
    assert counts[("requests", "ioctl")] == ioctls + 1
    assert counts[("requests", "flush")] == 1
    assert counts[("requests", "other")] <= 2  # init (and nothing else)
    # a swap drops the old a.py from the kernel, which forgets its inode
    (src / "a.py").write_text("y\n")
    m.wait(lambda: (m.mnt / "a.py").read_text() == "y\n", what="the swap")
    wait_for(lambda: metrics_counts(port)[("requests", "forget")] >= 1,
             what="a FORGET counted as forget")


def test_webhook_signatures(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    secret = tmp_path / "secret"
    secret.write_text("hook-secret\n")
    port = free_port()
    m = dagfs.mount([f"dir:{src},name=local,period=1h"],
                    args=["--http", f"127.0.0.1:{port}",
                          "--webhook-secret-file", str(secret)],
                    ready=lambda mnt: (mnt / "a.py").exists())
    body = b'{"ref": "refs/heads/main"}'
    good = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    bad = "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest()
    assert http(port, "/sync", "POST", body)[0] == 401
    assert http(port, "/sync", "POST", body, {"X-Hub-Signature-256": bad})[0] == 401
    assert http(port, "/sync", "POST", body,
                {"X-Hub-Signature-256": "sha256=zz"})[0] == 401
    assert http(port, "/sync?source=nope", "POST", body,
                {"X-Hub-Signature-256": good})[0] == 404
    (src / "b.py").write_text("new\n")  # the watcher would see this too;
    code, _ = http(port, "/sync?source=local", "POST", body,
                   {"X-Hub-Signature-256": good})
    assert code == 202
    m.wait(lambda: (m.mnt / "b.py").exists(), what="the kicked sync")
    assert "hook-secret" not in m.stderr_text()


def test_publish_gate_rejects_a_syntax_error(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.py").write_text("x = 1\n")
    m = dagfs.mount([f"dir:{src},name=local,debounce=100ms,"
                     "validate=python3 -m compileall -q"],
                    ready=lambda mnt: (mnt / "good.py").exists())
    (src / "bad.py").write_text("def broken(:\n")
    m.wait(lambda: "refused" in m.stderr_text(), timeout=20,
           what="the gate refusing the revision")
    assert not (m.mnt / "bad.py").exists()
    assert (m.mnt / "good.py").read_text() == "x = 1\n"
    line = [l for l in m.stderr_text().splitlines() if "refused" in l][0]
    assert "validate command failed" in line and "bad.py" in line
    (src / "bad.py").write_text("def fixed():\n    pass\n")
    m.wait(lambda: (m.mnt / "bad.py").exists(), timeout=20,
           what="the fixed revision published")


def test_kill_9_and_restart_over_the_dead_mount(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("one\n")
    m = dagfs.mount([f"dir:{src},name=local"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    m.signal(signal.SIGKILL)
    m.wait_exit()
    (src / "a.py").write_text("two\n")
    m2 = dagfs.mount([f"dir:{src},name=local"], mnt=m.mnt, cache=m.cache,
                     ready=lambda mnt: (mnt / "a.py").read_text() == "two\n")
    assert "dead FUSE mount" in m2.stderr_text()


def write_revision(src, i, names=("a.py", "sub/b.py", "sub/deep/c.py")):
    for n in names:
        p = src / n
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(f"revision {i}\n" * 50)
        tmp.rename(p)


def test_materialize_mode_swaps_atomically(dagfs, tmp_path):
    import threading
    src = tmp_path / "src"
    src.mkdir()
    write_revision(src, 0)
    out = tmp_path / "out"
    import subprocess
    from conftest import dagfs_binary
    proc = subprocess.Popen([str(dagfs_binary()), "mount", "--materialize",
                             str(out), "--cache", str(tmp_path / "cache"),
                             "--grace", "1s", "--source",
                             f"dir:{src},name=local,debounce=100ms"],
                            stderr=open(tmp_path / "log", "w"))
    try:
        wait_for(lambda: (out / "current" / "a.py").exists(), timeout=20,
                 what="first revision materialised")
        materialize_swaps(src, out, proc)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def materialize_swaps(src, out, proc):
    import threading
    errors, seen, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                cur = os.readlink(out / "current")
            except OSError as e:
                errors.append(f"current missing: {e}")
                continue
            root = out / cur
            try:
                revs = {(root / n).read_text().split("\n")[0]
                        for n in ("a.py", "sub/b.py", "sub/deep/c.py")}
            except OSError:
                continue  # retired and pruned under us after the grace
            if len(revs) != 1:
                errors.append(f"mixed revisions in {cur}: {revs}")
            seen.append(revs.pop())

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(1, 16):
            # a dir source publishes what was quiet for the debounce: hold
            # the daemon still while a revision is written, as a loaded
            # machine may pause the writer longer than that
            proc.send_signal(signal.SIGSTOP)
            write_revision(src, i)
            proc.send_signal(signal.SIGCONT)
            wait_for(lambda: (out / "current" / "a.py").read_text()
                     .startswith(f"revision {i}\n"), timeout=20,
                     what=f"revision {i} current")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert len(set(seen)) >= 10
    time.sleep(1.5)
    write_revision(src, 99)
    wait_for(lambda: (out / "current" / "a.py").read_text()
             .startswith("revision 99\n"), timeout=20, what="last revision")

    def kept():
        return [p for p in (out / ".revs").iterdir()
                if not p.name.endswith((".retired", ".json"))]
    # of 17: retired ones go after the grace, pruned just after the swap
    # that the wait above saw (so a loaded machine may show it first)
    wait_for(lambda: len(kept()) <= 5, timeout=10,
             what="retired revisions pruned to at most 5")
    revs = kept()
    # each revision's description goes with it
    descs = {p.name[:-5] for p in (out / ".revs").glob("*.json")}
    assert descs <= {p.name for p in revs} | {os.readlink(out / "current")
                                              .split("/")[-1]}, descs


def test_sync_once_and_pinned_revision(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("first\n")
    cache = tmp_path / "cache"
    r = dagfs.run(["sync", "--once", "--materialize", str(tmp_path / "o1"),
                   "--cache", str(cache), "--source", f"dir:{src},name=local"])
    assert r.returncode == 0, r.stderr
    first_rev = r.stdout.split()[1]
    assert (tmp_path / "o1" / "current" / "a.py").read_text() == "first\n"
    (src / "a.py").write_text("second\n")
    r = dagfs.run(["sync", "--once", "--materialize", str(tmp_path / "o2"),
                   "--cache", str(cache), "--source", f"dir:{src},name=local"])
    assert r.returncode == 0 and (tmp_path / "o2" / "current" / "a.py").read_text() == "second\n"
    # a worker pinned to the revision the scheduler saw
    r = dagfs.run(["sync", "--once", "--materialize", str(tmp_path / "o3"),
                   "--cache", str(cache), "--source", f"dir:{src},name=local",
                   "--revision", f"local={first_rev}"])
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o3" / "current" / "a.py").read_text() == "first\n"
    r = dagfs.run(["sync", "--once", "--materialize", str(tmp_path / "o4"),
                   "--cache", str(cache), "--source", f"dir:{src},name=local",
                   "--revision", "local=dir-0000000000"])
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "not in the cache" in r.stderr
    r = dagfs.run(["sync", "--materialize", str(tmp_path / "o5"),
                   "--source", f"dir:{src}"])
    assert r.returncode == 1 and "needs --once" in r.stderr


def test_commands_create_a_missing_cache_and_its_parents(dagfs, tmp_path):
    """--cache PARENT/.../cache whose parents do not exist yet: sync --once
    and mount create them and the cache, private to the user (0700), as
    mkdir -p would; a directory that exists keeps its mode."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    tmp_path.chmod(0o755)
    cache = tmp_path / "a" / "b" / "cache"
    out = tmp_path / "out" / "nested"
    r = dagfs.run(["sync", "--once", "--materialize", str(out),
                   "--cache", str(cache), "--source", f"dir:{src},name=local"])
    assert r.returncode == 0, r.stderr
    assert (out / "current" / "a.py").read_text() == "x\n"
    for d in (tmp_path / "a", tmp_path / "a" / "b", cache):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o755
    m = dagfs.mount([f"dir:{src},name=local"],
                    cache=tmp_path / "c" / "d" / "cache",
                    ready=lambda mnt: (mnt / "a.py").exists())
    assert (m.mnt / "a.py").read_text() == "x\n"
    for d in (tmp_path / "c", tmp_path / "c" / "d", m.cache):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_changed_options_rebuild_the_cached_revision(dagfs, tmp_path):
    """A revision id names the remote's state, not the options applied to
    it: after a restart with another option the cached tree is served at
    once and then rebuilt, not kept as "unchanged"."""
    src = tmp_path / "src"
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "a.py").write_text("x\n")
    (src / "other.py").write_text("y\n")
    m = dagfs.mount([f"dir:{src},name=local"],
                    ready=lambda mnt: (mnt / "other.py").exists())
    st0 = json.loads((m.mnt / ".dagfs/status.json").read_text())[
        "sources"]["local"]
    rev, published0 = st0["revision"], st0["published_ns"]
    m.stop()
    # the gate runs only on a rebuilt tree, never on an "unchanged" answer;
    # it holds the rebuild until the test lets it go (at most 20 s)
    mark, go = tmp_path / "gated", tmp_path / "go"
    port = free_port()
    m2 = dagfs.mount([f"dir:{src},name=local,validate=touch {mark} && "
                      f"for i in $(seq 400); do [ -e {go} ] && break; "
                      f"sleep 0.05; done && test -e {go} && true"],
                     cache=m.cache,
                     args=["--http", f"127.0.0.1:{port}",
                           "--status-interval", "100ms"],
                     ready=lambda mnt: (mnt / "other.py").exists())
    m2.wait(lambda: "options changed" in m2.stderr_text(), what="rebuild")
    wait_for(mark.exists, 10, what="the rebuilt tree reaching the gate")
    # while it rebuilds, the cached revision is served, and every report
    # (readiness, status file, `dagfs status`) says so the same way
    code, body = http(port, "/readyz")
    assert code == 200 and rev in body, body
    time.sleep(0.3)  # a status file written since the rebuild began
    r = dagfs.run(["status", "--cache", m.cache, "--json"])
    st = json.loads(r.stdout)["sources"][0]
    assert r.returncode == 0 and st["healthy"] and st["revision"] == rev, \
        r.stdout
    meta = json.loads((m2.mnt / ".dagfs/status.json").read_text())[
        "sources"]["local"]
    assert meta["published_ns"] == published0, meta  # still the cached one
    # the rebuild itself: the tree that passed the new gate is published,
    # the same revision in a new publication, and nothing else changed
    go.touch()

    def republished():
        s = json.loads((m2.mnt / ".dagfs/status.json").read_text())[
            "sources"]["local"]
        return s if s["published_ns"] > published0 else None
    meta = wait_for(republished, 20, what="the rebuilt tree published")
    assert meta["revision"] == rev, meta
    assert served(m2.mnt) == {"keep/a.py": b"x\n", "other.py": b"y\n"}
    wait_for(lambda: source_status(m2, "local").get("published_ns", 0) >
             published0, 10, what="status file naming the publication")


def test_fstab_mount_type(tmp_path):
    """`mount -t fuse.dagfs CONFIG MOUNTPOINT -o ...` (what /etc/fstab
    does) mounts in the background and `umount` stops the daemon. mount(8)
    runs `mount.fuse3 CONFIG MOUNTPOINT -t dagfs -o ...` with a safe PATH
    (dagfs must be installed there); the test runs mount.fuse3 itself
    with the build directory on PATH."""
    import subprocess
    from conftest import dagfs_binary
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    conf = tmp_path / "dagfs.conf"
    conf.write_text(f"[dagfs]\ncache = {tmp_path / 'cache'}\n"
                    f"[source local]\ntype = dir\nlocation = {src}\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, PATH=f"{dagfs_binary().parent}:{os.environ['PATH']}")
    log = tmp_path / "log"  # the daemon keeps stderr: not a pipe
    r = subprocess.run(["mount.fuse3", str(conf), str(mnt), "-t", "dagfs", "-o",
                        "allow_other,uid=50000,gid=0,_netdev"], env=env,
                       stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                       timeout=60)
    try:
        assert r.returncode == 0, log.read_text()
        wait_for(lambda: (mnt / "a.py").exists(), what="the fstab mount")
        st = os.stat(mnt / "a.py")
        assert st.st_uid == 50000 and st.st_gid == 0
    finally:
        subprocess.run(["umount", str(mnt)])
    wait_for(lambda: subprocess.run(["pgrep", "-f", str(conf)],
                                    capture_output=True).returncode != 0,
             what="the daemon to exit after umount")
    r = subprocess.run(["mount.fuse3", str(tmp_path / "nope.conf"), str(mnt),
                        "-t", "dagfs"], env=env, stdout=subprocess.DEVNULL,
                       stderr=open(log, "w"), timeout=60)
    assert r.returncode != 0 and "nope.conf" in log.read_text()


def test_a_slow_sync_does_not_hold_other_sources(dagfs, tmp_path):
    """Garbage collection runs on its own schedule: while one source's
    sync is slow (its validate= gate sleeps 6 s, the store held shared),
    another source publishes every change at once instead of waiting in
    a collection behind it."""
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    for d in (fast, slow):
        d.mkdir()
        (d / "a.py").write_text("1\n")
    m = dagfs.mount([f"dir:{fast},name=fast,at=fast,debounce=100ms",
                     f"dir:{slow},name=slow,at=slow,debounce=100ms,"
                     f"validate=sleep 6 && true"],
                    ready=lambda mnt: (mnt / "slow/a.py").exists(),
                    timeout=30)
    (slow / "b.py").write_text("2\n")           # a 6 s gate begins
    time.sleep(0.5)
    for i in range(3):
        (fast / "a.py").write_text(f"v{i}\n")
        t0 = time.monotonic()
        m.wait(lambda: (m.mnt / "fast/a.py").read_text() == f"v{i}\n", 10,
               what=f"fast revision {i}")
        assert time.monotonic() - t0 < 3, f"change {i} waited behind slow"
    assert not (m.mnt / "slow/b.py").exists()  # still in its gate


def test_collector_removes_what_no_revision_names(tmp_path):
    """The collector runs by itself after publications: with keep=1, the
    blob only the replaced revision named leaves the cache. (Materialise
    mode: no kernel inode keeps the old revision pinned.)"""
    import subprocess
    from conftest import dagfs_binary
    src, out, cache = tmp_path / "src", tmp_path / "out", tmp_path / "cache"
    src.mkdir()
    (src / "a.py").write_text("old\n")
    log = tmp_path / "log"
    proc = subprocess.Popen([str(dagfs_binary()), "mount", "--materialize",
                             str(out), "--cache", str(cache), "--source",
                             f"dir:{src},name=one,keep=1,debounce=100ms"],
                            stderr=open(log, "w"))
    blobs = lambda: sum(len(f) for _, _, f in os.walk(cache / "objects"))
    try:
        wait_for(lambda: (out / "current" / "a.py").exists(), 20,
                 what="the first revision")
        # the revision replaced is still pinned when the next is
        # published, so the history lets go of "old" at the third
        for text in ("mid\n", "new\n"):
            (src / "a.py").write_text(text)
            wait_for(lambda: (out / "current" / "a.py").read_text() == text,
                     10, what=f"revision {text!r}")
        assert blobs() == 3
        wait_for(lambda: blobs() == 2, 30, what="the old blob collected")
        # the collector logs its round once the unlinks are done: wait for
        # the line, it may follow the last unlink by a moment
        wait_for(lambda: "collected 1 unused blobs" in log.read_text(), 10,
                 what="the collector's log line")
        assert blobs() == 2
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
