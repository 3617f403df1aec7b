# SPDX-License-Identifier: Apache-2.0
"""Core behaviour of `dagfs mount` with a `dir:` source, on real FUSE
mounts: byte-exact equality, atomic swaps seen by concurrent readers,
open files across swaps, read-only answers, restart from the cache, bad
input, signals and unmounting, mtimes and directories created later.
"""

import errno
import multiprocessing as mp
import os
import pathlib
import random
import re
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import (dagfs_binary, drop_caches, freeze, is_fuse_mounted,
                      mounts, tree_equal_errors)
from tree_gen import gen_tree

DEBOUNCE = "100ms"


def dir_spec(path, **keys):
    keys.setdefault("debounce", DEBOUNCE)
    return "dir:" + str(path) + "".join(f",{k}={v}" for k, v in keys.items())


def listing(p):
    return sorted(os.listdir(p))


def write_file(path, data, mode=None):
    """Write through a temporary name and rename, as editors and git do."""
    path = pathlib.Path(path)
    tmp = path.parent.parent / f".tmp-{path.name}-{os.getpid()}"
    tmp.write_bytes(data)
    if mode is not None:
        os.chmod(tmp, mode)
    os.rename(tmp, path)


def read_or_none(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return None


# ------------------------------------------------------------ equality

@pytest.fixture(scope="module")
def big_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree") / "src"
    return gen_tree(root, seed=20261124, files=2100)


def test_tree_equal_byte_for_byte(dagfs, big_tree):
    src = big_tree.root
    assert big_tree.files >= 2000
    want_top = set(os.listdir(src))
    m = dagfs.mount([dir_spec(src)], timeout=120,
                    ready=lambda mnt: set(os.listdir(mnt)) == want_top)
    errs = tree_equal_errors(src, m.mnt, skip=set(big_tree.outside))
    assert not errs, "mount differs from source:\n" + "\n".join(errs[:40])

    for rel in big_tree.outside:                 # left out, and logged
        assert not os.path.lexists(m.mnt / rel), rel
    err = m.stderr_text()
    missing = [r for r in big_tree.outside
               if pathlib.PurePath(r).name not in err]
    assert not missing, f"no logged error names {missing}:\n{err[-2000:]}"

    deep = m.mnt / big_tree.deep_file
    assert deep.read_bytes() == b"from airflow import DAG\n"
    assert len(big_tree.deep_file.split("/")) == 31
    for n in big_tree.long_names:
        assert (m.mnt / n).exists() and len(pathlib.Path(n).name.encode()) == 255
    # links resolve inside the mount as they do in the source
    assert (m.mnt / "links/to_dir/in_dir.py").read_bytes() == b"x = 1\n"
    assert (m.mnt / "links/to_link").read_bytes() == b"print('target')\n"
    assert (m.mnt / "links/to deep").read_bytes() == deep.read_bytes()
    st = os.statvfs(m.mnt)
    assert st.f_namemax >= 255


def test_modes_and_exec_bits(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    modes = [0o755, 0o700, 0o644, 0o600, 0o555, 0o444, 0o750, 0o640, 0o711]
    for md in modes:
        p = src / f"f{md:o}.sh"
        p.write_bytes(b"#!/bin/sh\necho ok\n")
        os.chmod(p, md)
    m = dagfs.mount([dir_spec(src)],
                    ready=lambda mnt: len(os.listdir(mnt)) == len(modes))
    for md in modes:
        got = stat.S_IMODE(os.stat(m.mnt / f"f{md:o}.sh").st_mode)
        assert got == md & ~0o022, f"{md:o}: got {got:o}"
    out = subprocess.run([str(m.mnt / "f755.sh")], capture_output=True)
    assert out.stdout == b"ok\n"


# ------------------------------------------------- torn reads, monotonic

N_NAMES = 300          # one listing spans several FUSE readdir replies
N_BIG = 4
BIG_RECORDS = 20000    # 16 bytes each: 320 KB, several FUSE reads
NAME_PAD = "x" * 48
NAME_RE = re.compile(r"^n(\d{3})_r(\d{4})_x+\.txt$")


def rev_name(i, r):
    return f"n{i:03d}_r{r:04d}_{NAME_PAD}.txt"


def big_bytes(r, i):
    return b"".join(b"%08d|%05d\n" % (r, i) for _ in range(BIG_RECORDS))


def small_bytes(r, i):
    return (b"rev %08d file %03d\n" % (r, i)) * (1 + i % 7)


def revs_in(data, rec):
    """Set of revision numbers in @data made of @rec-byte records."""
    if len(data) % rec:
        return {"bad size %d" % len(data)}
    return {data[k:k + 8] for k in range(0, len(data), rec)}


def stage_revision(stage, r):
    stage.mkdir(exist_ok=True)
    for i in range(N_NAMES):
        (stage / rev_name(i, r)).write_bytes(small_bytes(r, i))
    for i in range(N_BIG):
        (stage / f"big{i}.bin").write_bytes(big_bytes(r, i))
    (stage / "REV").write_bytes(b"%08d" % r)


def apply_revision(src, stage, r):
    """Move a staged revision into the source with renames only, so it is
    complete well inside the debounce. Returns the seconds it took."""
    t0 = time.monotonic()
    for i in range(N_BIG):
        os.rename(stage / f"big{i}.bin", src / "big" / f"big{i}.bin")
    for i in range(N_NAMES):
        os.rename(stage / rev_name(i, r), src / "d" / rev_name(i, r))
        if r > 0:
            os.unlink(src / "d" / rev_name(i, r - 1))
    os.rename(stage / "REV", src / "REV")
    return time.monotonic() - t0


def reader(mnt, seed, stop, out):
    """One concurrent reader: lists, reads big files, small files and REV,
    and records every violation of atomicity or monotonicity."""
    rng = random.Random(seed)
    mnt = pathlib.Path(mnt)
    os.nice(5)                  # the writer must stay well inside the debounce
    seen, bad, n, names = 0, [], 0, []
    revs = set()

    def observe(r, what):
        nonlocal seen
        revs.add(r)
        if r < seen:
            bad.append(f"older revision {r} after {seen} ({what})")
        seen = max(seen, r)

    while not stop.is_set() and len(bad) < 20:
        n += 1
        op = rng.random()
        try:
            if op < 0.3:
                if rng.random() < 0.5:
                    names = os.listdir(mnt / "d")
                else:
                    with os.scandir(mnt / "d") as it:
                        names = [e.name for e in it]
                rs = set()
                for nm in names:
                    mt = NAME_RE.match(nm)
                    rs.add(int(mt.group(2)) if mt else nm)
                if len(rs) != 1 or len(names) != N_NAMES:
                    bad.append(f"listing of {len(names)} names mixes {sorted(map(str, rs))[:4]}")
                else:
                    observe(rs.pop(), "listing")
            elif op < 0.6:
                i = rng.randrange(N_BIG)
                data = (mnt / "big" / f"big{i}.bin").read_bytes()
                rs = revs_in(data, 15)
                if len(rs) != 1 or len(data) != 15 * BIG_RECORDS:
                    bad.append(f"big{i}.bin torn: {len(data)} bytes, revisions {sorted(rs)[:4]}")
                else:
                    observe(int(rs.pop()), f"big{i}.bin")
            elif op < 0.9 and names:
                nm = rng.choice(names)
                mt = NAME_RE.match(nm)
                try:
                    data = (mnt / "d" / nm).read_bytes()
                except FileNotFoundError:
                    continue            # a newer revision removed it
                i, r = int(mt.group(1)), int(mt.group(2))
                if data != small_bytes(r, i):
                    bad.append(f"{nm}: wrong bytes {data[:40]!r}")
                else:
                    observe(r, nm)
            else:
                observe(int((mnt / "REV").read_bytes()), "REV")
        except OSError as e:
            bad.append(f"error {e!r}")
    out.put((seed, n, len(revs), bad))


def collect_readers(procs, out, budget=60):
    """Results of every reader; a reader still stuck in the mount after
    @budget seconds is killed and reported as hung."""
    import queue
    results, deadline = [], time.monotonic() + budget
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=max(0.1, deadline - time.monotonic())))
        except queue.Empty:
            break
    done = {r[0] for r in results}
    for k, p in enumerate(procs):
        if k not in done:
            results.append((k, 0, 0, ["hung in the mount (no answer)"]))
            p.kill()
        p.join(5)
    return results


@pytest.fixture
def fast_dir(tmp_path):
    """A directory on tmpfs (root) so the test's own renames never wait on
    the journal while the daemon fsyncs blobs on the same disk."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    ok = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(d)]).returncode == 0
    yield d
    if ok:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_no_torn_reads_monotonic_revisions(dagfs, fast_dir):
    src, stage = fast_dir / "src", fast_dir / "stage"
    (src / "d").mkdir(parents=True)
    (src / "big").mkdir()
    stage_revision(stage, 0)
    apply_revision(src, stage, 0)
    m = dagfs.mount([dir_spec(src, debounce="200ms")],
                    ready=lambda mnt: (mnt / "REV").read_bytes() == b"%08d" % 0)

    ctx = mp.get_context("fork")
    stop, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=reader, args=(str(m.mnt), k, stop, out))
             for k in range(8)]
    for p in procs:
        p.start()
    slowest, nrev = 0.0, 50
    try:
        for r in range(1, nrev + 1):
            stage_revision(stage, r)
            # The revision must land whole inside the debounce. On a loaded
            # machine the writer can be descheduled for longer, so freeze
            # the readers and the daemon while it moves files in: the
            # daemon then sees the revision complete, as if written at once
            # (inotify queues the events; the debounce starts on resume).
            try:
                for p in procs:
                    freeze(p.pid)
                freeze(m.pid)
                took = apply_revision(src, stage, r)
            finally:
                m.signal(signal.SIGCONT)
                for p in procs:
                    os.kill(p.pid, signal.SIGCONT)
            slowest = max(slowest, took)
            want = b"%08d" % r
            m.wait(lambda: read_or_none(m.mnt / "REV") == want, 15,
                   what=f"revision {r} visible")
            time.sleep(0.05)
    finally:
        stop.set()
        results = collect_readers(procs, out)
    bad = [f"reader {s}: {b}" for s, _, _, bs in results for b in bs]
    assert not bad, f"(slowest revision write {slowest:.3f}s)\n" + \
        "\n".join(bad[:40])
    for s, n, nrevs, _ in results:
        assert nrevs >= 10, f"reader {s} saw only {nrevs} revisions in {n} ops"
    final = listing(m.mnt / "d")
    assert final == sorted(rev_name(i, nrev) for i in range(N_NAMES))


def lister(mnt, seed, seconds, out):
    """List, stat and read in a tight loop; report mismatches."""
    rng, bad, n = random.Random(seed), [], 0
    want = {f"d{k}": sorted(f"f{i:04d}.py" for i in range(k * 40 + 1))
            for k in range(6)}
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(bad) < 10:
        d = rng.choice(sorted(want))
        try:
            got = sorted(os.listdir(os.path.join(mnt, d)))
            if got != want[d]:
                bad.append(f"{d}: {len(got)} names, want {len(want[d])}")
            name = rng.choice(got)
            with open(os.path.join(mnt, d, name), "rb") as f:
                if f.read() != name.encode():
                    bad.append(f"{d}/{name}: wrong bytes")
        except OSError as e:
            bad.append(f"{d}: {e!r}")
        n += 1
    out.put((seed, n, bad))


def test_concurrent_listings(dagfs, tmp_path):
    """Many short-lived directory handles at once (opendir, readdir,
    releasedir racing on the daemon's workers)."""
    src = tmp_path / "src"
    for k in range(6):
        (src / f"d{k}").mkdir(parents=True)
        for i in range(k * 40 + 1):
            (src / f"d{k}" / f"f{i:04d}.py").write_text(f"f{i:04d}.py")
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: len(os.listdir(mnt / "d5")) == 201)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=lister, args=(str(m.mnt), k, 4, out))
             for k in range(8)]
    for p in procs:
        p.start()
    results = []
    for _ in procs:
        try:
            results.append(out.get(timeout=60))
        except Exception:  # noqa: BLE001 - a reader hung in the mount
            break
    for p in procs:
        if p.is_alive():
            p.kill()
        p.join(5)
    m.check_alive()
    assert len(results) == len(procs), "a reader hung in the mount"
    bad = [f"reader {s}: {b}" for s, _, bs in results for b in bs]
    assert not bad, "\n".join(bad[:20])
    assert sum(n for _, n, _ in results) > 100


# ------------------------------------------------------ open across swaps

def test_open_file_keeps_bytes_across_swaps(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()

    def content(r):
        return random.Random(r).randbytes(2 * 1024 * 1024)

    write_file(src / "dag.py", content(0))
    # keep=1: only the open handle can keep the old snapshot and blob alive
    m = dagfs.mount([dir_spec(src, keep=1)],
                    ready=lambda mnt: (mnt / "dag.py").stat().st_size > 0)
    path = m.mnt / "dag.py"
    fd0 = os.open(path, os.O_RDONLY)
    fd1 = None
    try:
        assert os.pread(fd0, 4096, 0) == content(0)[:4096]
        for r in range(1, 6):
            write_file(src / "dag.py", content(r))
            m.wait(lambda: read_or_none(path) == content(r), 15,
                     what=f"revision {r} of dag.py")
            if r == 2:
                fd1 = os.open(path, os.O_RDONLY)
            drop_caches()
        for fd, r in ((fd0, 0), (fd1, 2)):
            got = b""
            while len(got) < len(content(r)):
                chunk = os.pread(fd, 1 << 20, len(got))
                if not chunk:
                    break
                got += chunk
            assert got == content(r), f"handle opened at revision {r} changed"
            assert os.fstat(fd).st_size == len(content(r))
    finally:
        os.close(fd0)
        if fd1 is not None:
            os.close(fd1)
    assert path.read_bytes() == content(5)


# ------------------------------------------------------------ read-only

def _erofs_ops(mnt):
    f, d, e = mnt / "f.py", mnt / "sub", mnt / "emptyd"

    def opn(p, flags, mode=0o644):
        os.close(os.open(p, flags, mode))

    return [
        ("write", lambda: opn(f, os.O_WRONLY)),
        ("open rdwr", lambda: opn(f, os.O_RDWR)),
        ("open append", lambda: opn(f, os.O_WRONLY | os.O_APPEND)),
        ("open trunc", lambda: opn(f, os.O_WRONLY | os.O_TRUNC)),
        ("create", lambda: opn(mnt / "new.py", os.O_CREAT | os.O_WRONLY)),
        ("create in sub", lambda: opn(d / "new.py", os.O_CREAT | os.O_RDWR)),
        ("mkdir", lambda: os.mkdir(mnt / "newdir")),
        ("unlink", lambda: os.unlink(f)),
        ("unlink in sub", lambda: os.unlink(d / "g.py")),
        ("rmdir", lambda: os.rmdir(e)),
        ("rename", lambda: os.rename(f, mnt / "moved.py")),
        ("rename dir", lambda: os.rename(d, mnt / "moved")),
        ("rename over", lambda: os.rename(f, d / "g.py")),
        ("chmod", lambda: os.chmod(f, 0o777)),
        ("chmod dir", lambda: os.chmod(d, 0o700)),
        ("chown", lambda: os.chown(f, 1, 1)),
        ("truncate", lambda: os.truncate(f, 0)),
        ("setxattr", lambda: os.setxattr(f, "user.dagfs", b"1")),
        ("removexattr", lambda: os.removexattr(f, "user.dagfs")),
        ("utime", lambda: os.utime(f, (1, 1))),
        ("utime now", lambda: os.utime(f)),
        ("symlink", lambda: os.symlink("f.py", mnt / "newlink")),
        ("link", lambda: os.link(f, mnt / "hard")),
        ("mknod", lambda: os.mknod(mnt / "node", stat.S_IFREG | 0o644)),
        ("mkfifo", lambda: os.mkfifo(mnt / "fifo")),
    ]


def _state(root):
    out = {}
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            st = os.lstat(p)
            data = open(p, "rb").read() if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid,
                                             st.st_size, st.st_mtime_ns, data)
    return out


def test_write_operations_fail_with_erofs(dagfs, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "emptyd").mkdir()
    (src / "f.py").write_bytes(b"print(1)\n")
    (src / "sub" / "g.py").write_bytes(b"print(2)\n")
    m = dagfs.mount([dir_spec(src)],
                    ready=lambda mnt: (mnt / "sub" / "g.py").exists())
    before_src, before_mnt = _state(src), _state(m.mnt)
    wrong = []
    for name, op in _erofs_ops(m.mnt):
        try:
            op()
            wrong.append(f"{name}: succeeded")
        except OSError as e:
            if e.errno != errno.EROFS:
                wrong.append(f"{name}: {errno.errorcode.get(e.errno)} "
                             f"instead of EROFS")
    assert not wrong, "\n".join(wrong)
    assert _state(m.mnt) == before_mnt
    assert _state(src) == before_src


# ------------------------------------------------------------ restart

def test_restart_with_source_gone_serves_last_snapshot(dagfs, tmp_path):
    src = tmp_path / "src"
    gen_tree(src, seed=7, files=200)
    want_top = set(os.listdir(src))
    spec = dir_spec(src, name="dags")
    m1 = dagfs.mount([spec], ready=lambda mnt: set(os.listdir(mnt)) == want_top)
    assert m1.stop() == 0
    saved = tmp_path / "saved"
    os.rename(src, saved)                     # the source is gone
    m2 = dagfs.mount([spec], mnt=m1.mnt, cache=m1.cache, start=False)
    t = m2.start(ready=lambda mnt: set(os.listdir(mnt)) == want_top,
                 timeout=10).ready_after
    assert t < 3.0, f"took {t:.2f}s to serve the cached snapshot"
    errs = tree_equal_errors(saved, m2.mnt, skip={
        "links/escape_rel", "links/escape_deep", "links/escape_abs",
        "links/escape_abs_dir"})
    assert not errs, "\n".join(errs[:40])
    assert m2.alive()
    assert str(src) in m2.stderr_text(), "the missing source is not logged"


# ------------------------------------------------------------ bad input

def _ro_bind(path):
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)


def _check_refused(dagfs, argv, mnt, patterns, prefix=(), timeout=20):
    """Run dagfs with @argv (as another user through @prefix): it must
    exit non-zero with one line on stderr matching every pattern, and
    leave nothing mounted. Returns that line."""
    # only mounts under this test's own directories count: other tests
    # (and other people's) may mount elsewhere at the same time
    roots = (str(dagfs.base) + "/", str(pathlib.Path(mnt).parent) + "/")

    def ours():
        return {m[0] for m in mounts() if m[0].startswith(roots)}

    before = ours()
    if prefix:
        r = subprocess.run(list(prefix) + [str(dagfs_binary())] + list(argv),
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    else:
        r = dagfs.run(argv, timeout=timeout)
    new = ours() - before
    for p in new:
        subprocess.run(["fusermount3", "-u", "-z", p], check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0, f"exit status 0; stderr: {r.stderr!r}"
    assert not new and not is_fuse_mounted(mnt), f"mounted: {new}"
    assert len(lines) == 1, f"want one line on stderr, got {r.stderr!r}"
    for pat in patterns:
        assert re.search(pat, lines[0]), f"{pat!r} not in {lines[0]!r}"
    return lines[0]


@pytest.fixture
def bad(dagfs, tmp_path):
    """Paths for a bad-input run: a good source, an empty mountpoint and
    a fresh cache, all of which a case then spoils."""
    src, mnt, cache = tmp_path / "src", tmp_path / "mnt", tmp_path / "cache"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    mnt.mkdir()
    return src, mnt, cache


def _mount_argv(cache, sources, mnt):
    a = ["mount", "--cache", str(cache)]
    for s in sources:
        a += ["--source", s]
    return a + [str(mnt)]


def test_bad_missing_source(dagfs, bad):
    src, mnt, cache = bad
    gone = src.parent / "no-such-dir"
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{gone}"], mnt), mnt,
                   [re.escape(str(gone)),
                    re.escape(str(gone)) + r": (?i:no such file or directory)"])


def test_bad_source_is_a_file(dagfs, bad):
    src, mnt, cache = bad
    f = src / "a.py"
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{f}"], mnt), mnt,
                   [re.escape(str(f)), r"(?i)director",
                    re.escape(str(f)) + r": (?i:not a directory)"])


def test_bad_unreadable_source(dagfs, world_tmp):
    src, mnt, cache = world_tmp / "src", world_tmp / "mnt", world_tmp / "cache"
    for d in (src, mnt, cache):
        d.mkdir()
        os.chown(d, 65534, 65534)
    (src / "a.py").write_text("x = 1\n")
    src.chmod(0o000)
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{src}"], mnt), mnt,
                   [re.escape(str(src)), r"(?i)permission|denied|readable|access"],
                   prefix=["setpriv", "--reuid=65534", "--regid=65534",
                           "--clear-groups", "--"])


def test_bad_mountpoint_missing(dagfs, bad):
    src, mnt, cache = bad
    gone = mnt.parent / "no-such-mnt"
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{src}"], gone), gone,
                   [re.escape(str(gone)),
                    rf"mountpoint {re.escape(str(gone))}"
                    r": (?i:no such file or directory|does not exist)"])


def test_bad_mountpoint_not_empty(dagfs, bad):
    src, mnt, cache = bad
    (mnt / "something").write_text("here")
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{src}"], mnt), mnt,
                   [re.escape(str(mnt)), r"(?i)empty",
                    rf"mountpoint {re.escape(str(mnt))} is not empty"])
    assert os.listdir(mnt) == ["something"]


def test_bad_cache_not_writable(dagfs, bad):
    src, mnt, cache = bad
    cache.mkdir()
    if os.geteuid() == 0:
        _ro_bind(cache)
    else:
        cache.chmod(0o555)
    try:
        _check_refused(dagfs, _mount_argv(cache, [f"dir:{src}"], mnt), mnt,
                       [re.escape(str(cache)),
                        r"(?i)read-only|permission|denied|writ"])
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(cache)], check=False)


def test_bad_cache_not_writable_unprivileged(dagfs, world_tmp):
    src, mnt, cache = world_tmp / "src", world_tmp / "mnt", world_tmp / "cache"
    for d in (src, mnt):
        d.mkdir()
        os.chown(d, 65534, 65534)
    (src / "a.py").write_text("x = 1\n")
    cache.mkdir(mode=0o755)                   # owned by root
    _check_refused(dagfs, _mount_argv(cache, [f"dir:{src}"], mnt), mnt,
                   [re.escape(str(cache)), r"(?i)permission|denied|writ"],
                   prefix=["setpriv", "--reuid=65534", "--regid=65534",
                           "--clear-groups", "--"])


def test_bad_unknown_source_type(dagfs, bad):
    src, mnt, cache = bad
    _check_refused(dagfs, _mount_argv(cache, ["ftp://example.com/dags"], mnt),
                   mnt, [r"ftp", r"(?i)unknown|type",
                         r"unknown source type 'ftp'"])


# @reason is what only the refusal itself says: the spec is echoed in the
# line too, so a pattern it matches would pass on any refusal of it
@pytest.mark.parametrize("spec,pattern,reason", [
    ("dir", r"(?i)source", r"expected TYPE:LOCATION"),
    ("dir:", r"(?i)source|location|empty", r"': empty location"),
    ("{src},debounce", r"debounce", r"expected key=value, got 'debounce'"),
    ("{src},bogus=1", r"bogus", r"unknown key 'bogus'"),
    ("{src},debounce=soon", r"debounce", r"bad debounce 'soon'"),
    ("{src},name=a,name=b", r"name", r"key 'name' given twice"),
    (":{src}", r"(?i)type|source", r"expected TYPE:LOCATION"),
])
def test_bad_malformed_source(dagfs, bad, spec, pattern, reason):
    src, mnt, cache = bad
    spec = spec.replace("{src}", f"dir:{src}")
    _check_refused(dagfs, _mount_argv(cache, [spec], mnt), mnt,
                   [pattern, reason])


def test_bad_overlapping_sub_paths(dagfs, bad):
    src, mnt, cache = bad
    specs = [dir_spec(src, name="one", at="team"),
             dir_spec(src, name="two", at="team/sub")]
    _check_refused(dagfs, _mount_argv(cache, specs, mnt), mnt,
                   [r"(?i)overlap|team",
                    r"sources one \(at /team\) and two \(at /team/sub\) "
                    r"overlap"])


# ------------------------------------------------- signals and unmounting

def _simple_src(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("from airflow import DAG\n")
    return src


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(dagfs, tmp_path, sig):
    src = _simple_src(tmp_path)
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "a.py").exists())
    m.signal(sig)
    rc = m.wait_exit(15)
    assert rc == 0, f"exit status {rc} after {sig.name}; {m.stderr_text()}"
    assert not is_fuse_mounted(m.mnt)
    assert os.listdir(m.mnt) == []            # no ENOTCONN left behind
    assert not m.sanitizer_reports(), m.stderr_text()


def test_fusermount_unmount(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "a.py").exists())
    r = subprocess.run(["fusermount3", "-u", str(m.mnt)], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    rc = m.wait_exit(15)
    assert rc == 0, f"exit status {rc} after fusermount3 -u; {m.stderr_text()}"
    assert not is_fuse_mounted(m.mnt)
    assert os.listdir(m.mnt) == []


def test_second_daemon_on_same_mountpoint_refused(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "a.py").exists())
    line = _check_refused_running(dagfs, m, tmp_path / "other-cache", src)
    assert re.search(r"(?i)already|mounted|busy|in use", line), line
    assert (m.mnt / "a.py").read_text() == "from airflow import DAG\n"
    assert m.alive()


def test_second_daemon_on_same_cache_refused(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "a.py").exists())
    mnt2 = tmp_path / "mnt-b"
    mnt2.mkdir()
    r = dagfs.run(_mount_argv(m.cache, [dir_spec(src)], mnt2), timeout=20)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0 and not is_fuse_mounted(mnt2)
    assert len(lines) == 1 and str(m.cache) in lines[0], r.stderr
    assert m.alive() and (m.mnt / "a.py").exists()


def _check_refused_running(dagfs, m, cache2, src):
    r = dagfs.run(_mount_argv(cache2, [dir_spec(src)], m.mnt), timeout=20)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode != 0, f"second daemon exit 0: {r.stderr!r}"
    assert len(lines) == 1, f"want one line on stderr, got {r.stderr!r}"
    assert str(m.mnt) in lines[0], lines[0]
    stacked = [x for x in mounts() if x[0] == str(m.mnt)]
    assert len(stacked) == 1, f"mounted twice: {stacked}"
    return lines[0]


# ------------------------------------------------------ mtimes, new dirs

def test_files_keep_their_own_mtimes(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    old = 1_000_000_000_123_456_789                      # 2001-09-09
    (src / "old.py").write_text("old = 1\n")
    os.utime(src / "old.py", ns=(old, old))
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "old.py").exists())
    assert os.stat(m.mnt / "old.py").st_mtime_ns == old
    time.sleep(0.2)
    (src / "a.py").write_text("from airflow import DAG  # changed\n")
    m.wait(lambda: b"changed" in read_or_none(m.mnt / "a.py"), 20,
             what="a.py changed")
    assert os.stat(m.mnt / "old.py").st_mtime_ns == old
    assert os.stat(m.mnt / "a.py").st_mtime_ns == os.stat(src / "a.py").st_mtime_ns


def test_new_directories_are_watched(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    m = dagfs.mount([dir_spec(src)], ready=lambda mnt: (mnt / "a.py").exists())

    def shows(rel, data):
        m.wait(lambda: read_or_none(m.mnt / rel) == data, 20,
                 what=f"{rel} = {data!r} in the mount")

    (src / "new" / "a" / "b").mkdir(parents=True)
    (src / "new" / "a" / "b" / "f.py").write_bytes(b"one\n")
    shows("new/a/b/f.py", b"one\n")
    time.sleep(0.3)
    (src / "new" / "a" / "b" / "g.py").write_bytes(b"two\n")   # needs a watch
    shows("new/a/b/g.py", b"two\n")
    (src / "new" / "a" / "b" / "c").mkdir()
    time.sleep(0.3)
    (src / "new" / "a" / "b" / "c" / "h.py").write_bytes(b"three\n")
    shows("new/a/b/c/h.py", b"three\n")

    outside = tmp_path / "elsewhere"                    # moved in whole
    (outside / "x" / "y").mkdir(parents=True)
    (outside / "x" / "y" / "m.py").write_bytes(b"moved\n")
    os.rename(outside / "x", src / "x")
    shows("x/y/m.py", b"moved\n")
    time.sleep(0.3)
    (src / "x" / "y" / "m.py").write_bytes(b"edited\n")
    shows("x/y/m.py", b"edited\n")
    shutil.rmtree(src / "new")
    m.wait(lambda: not (m.mnt / "new").exists(), 20, what="new/ removed")


# ------------------------------------------------- composition, options

def test_two_sources_at_sub_paths(dagfs, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.py").write_text("a\n")
    (b / "y.py").write_text("b\n")
    m = dagfs.mount([dir_spec(a, name="ta", at="team_a"),
                     dir_spec(b, name="tb", at="nested/team_b")],
                    ready=lambda mnt: (mnt / "nested/team_b/y.py").exists()
                    and (mnt / "team_a/x.py").exists())
    assert listing(m.mnt) == ["nested", "team_a"]
    assert (m.mnt / "team_a/x.py").read_text() == "a\n"
    (b / "y.py").write_text("b2\n")
    m.wait(lambda: read_or_none(m.mnt / "nested/team_b/y.py") == b"b2\n",
             20, what="team_b swap")
    assert (m.mnt / "team_a/x.py").read_text() == "a\n"


def test_uid_gid_umask_options(dagfs, tmp_path):
    src = _simple_src(tmp_path)
    os.chmod(src / "a.py", 0o775)
    m = dagfs.mount([dir_spec(src)],
                    args=["--uid", "50000", "--gid=0", "--umask", "027"],
                    ready=lambda mnt: (mnt / "a.py").exists())
    st = os.stat(m.mnt / "a.py")
    assert (st.st_uid, st.st_gid) == (50000, 0)
    assert stat.S_IMODE(st.st_mode) == 0o750
