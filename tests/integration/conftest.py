# SPDX-License-Identifier: Apache-2.0
"""Shared fixtures of the integration tests: the dagfs binary, real FUSE
mounts started in the foreground, and small helpers to wait for things.

Environment:
  DAGFS_BUILD  build directory (absolute, or relative to the repository);
               default <repo>/build. The binary is <build>/sidecar/dagfs.
  CI=true      nothing may skip: a missing binary or /dev/fuse fails.

Typical use:

    def test_x(dagfs, tmp_path):
        src = tmp_path / "src"; src.mkdir(); (src / "a.py").write_text("x")
        m = dagfs.mount(sources=[f"dir:{src}"],
                        ready=lambda mnt: (mnt / "a.py").exists())
        assert (m.mnt / "a.py").read_text() == "x"
        m.stop()                       # or leave it to teardown
"""

import errno
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer",
                     "WARNING: ThreadSanitizer")


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason):
    """Skip outside CI; under CI=true nothing may skip, so fail."""
    if in_ci():
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def build_dir():
    b = pathlib.Path(os.environ.get("DAGFS_BUILD", "build"))
    if not b.is_absolute():
        b = REPO / b
    return b


def dagfs_binary():
    return build_dir() / "sidecar" / "dagfs"


# ------------------------------------------------------------- waiting

class Timeout(AssertionError):
    pass


class DaemonDied(AssertionError):
    """Raised from a wait predicate: stops the wait at once."""


def wait_for(pred, timeout=10.0, interval=0.02, what=None):
    """Call @pred until it returns a true value (returned) or @timeout
    seconds pass (Timeout, naming @what). Exceptions from @pred count as
    false; the last one is quoted in the failure."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except DaemonDied:
            raise
        except Exception as e:  # noqa: BLE001 - predicate may race a swap
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout:.1f}s waiting for {what or pred}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise Timeout(msg)
        time.sleep(interval)


def served(root):
    """{relative path: bytes} of every file under @root."""
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): p.read_bytes()
            for p in root.rglob("*") if p.is_file()}


def source_status(m, name):
    """Source @name's entry of @m's status.json, {} while there is none."""
    try:
        st = json.loads((m.cache / "status.json").read_text())
    except (OSError, ValueError):
        return {}
    return next((s for s in st["sources"] if s["name"] == name), {})


# ------------------------------------------------------------- mounts

def _unescape_mountinfo(field):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = bytearray(), 0
    b = field.encode("utf-8", "surrogateescape")
    while i < len(b):
        if b[i] == 0x5C and i + 3 < len(b) + 0 and b[i + 1:i + 4].isdigit():
            out.append(int(b[i + 1:i + 4], 8))
            i += 4
        else:
            out.append(b[i])
            i += 1
    return out.decode("utf-8", "surrogateescape")


def mounts():
    """[(mountpoint, fstype, source, options)] from /proc/self/mountinfo."""
    res = []
    with open("/proc/self/mountinfo", encoding="utf-8",
              errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            res.append((_unescape_mountinfo(lf[4]), rf[0],
                        _unescape_mountinfo(rf[1]) if len(rf) > 1 else "",
                        lf[5] + "," + (rf[2] if len(rf) > 2 else "")))
    return res


def mount_entry(path):
    """The last mountinfo entry for @path (the visible one), or None."""
    p = os.path.realpath(path) if os.path.exists(path) else str(path)
    found = None
    for m in mounts():
        if m[0] == p or m[0] == str(path):
            found = m
    return found


def is_fuse_mounted(path):
    m = mount_entry(path)
    return m is not None and m[1].startswith("fuse")


def force_unmount(path):
    """Lazy unmount, ignoring errors (teardown of a stuck mount)."""
    for cmd in (["fusermount3", "-u", "-z", str(path)],
                ["umount", "-l", str(path)]):
        if not is_fuse_mounted(path):
            return
        subprocess.run(cmd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)


def drop_caches():
    """Drop the page, dentry and inode caches (root only); False if not."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def freeze(pid, timeout=10.0):
    """SIGSTOP @pid and wait until no thread can run user code: kill()
    returns before the stop takes effect. A thread in uninterruptible
    sleep (D) stops as its system call returns; it may be waiting on the
    frozen process itself (a kernel invalidation waiting for a FUSE
    request), so D counts as stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/stat") as f:
                    states.append(f.read().rpartition(")")[2].split()[0])
            except OSError:
                pass
        if all(s in "tTD" for s in states):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {pid} did not stop within {timeout}s")


def proc_status(pid, field):
    """A kB figure (VmHWM, VmRSS...) from /proc/PID/status, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Dagfs:
    """One `dagfs mount ... MOUNTPOINT` running in the foreground.

    stderr goes to @stderr_path (read it with .stderr_text()); stdout is
    discarded. .start() waits until the mountpoint is a FUSE mount and
    @ready(mnt) is true; .stop() sends SIGTERM and falls back to a lazy
    unmount and SIGKILL.
    """

    def __init__(self, mnt, cache, sources=(), args=(), env=None,
                 stderr_path=None, binary=None, command="mount",
                 preexec=None):
        self.mnt = pathlib.Path(mnt)
        self.cache = pathlib.Path(cache) if cache is not None else None
        self.sources = list(sources)
        self.args = list(args)
        self.env = env
        self.binary = pathlib.Path(binary or dagfs_binary())
        self.command = command
        self.preexec = preexec
        self.stderr_path = pathlib.Path(
            stderr_path or tempfile.mktemp(prefix="dagfs-stderr-"))
        self.proc = None
        self.ready_after = None     # seconds from start to mounted and ready
        self.returncode = None
        self.stopped = False        # ended by the test (signal, unmount)
        self.death_reported = False # a test already failed on its death
        self.peak_rss_kib = None

    def argv(self):
        a = [str(self.binary), self.command]
        if self.cache is not None:
            a += ["--cache", str(self.cache)]
        for s in self.sources:
            a += ["--source", s]
        return a + self.args + [str(self.mnt)]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def start(self, ready=None, timeout=30.0, wait_mounted=True):
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=self._err, env=env,
                                     preexec_fn=self.preexec)
        self.started_at = time.monotonic()
        self.ready_after = None
        if wait_mounted:
            self.ready_after = self.wait_live(ready, timeout)
        return self

    def wait_live(self, ready=None, timeout=30.0):
        def live():
            if self.proc.poll() is not None:
                self.death_reported = True
                raise DaemonDied(
                    f"dagfs exited with status {self.proc.returncode} "
                    f"before mounting; stderr:\n{self.stderr_text()}")
            if not is_fuse_mounted(self.mnt):
                return False
            return ready is None or ready(self.mnt)
        try:
            wait_for(live, timeout, what=f"dagfs mount on {self.mnt}")
        except Timeout as e:
            raise Timeout(f"{e}; stderr:\n{self.stderr_text()}") from None
        return time.monotonic() - self.started_at

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        """Raise, quoting stderr, if the daemon ended by itself."""
        if self.proc is not None and self.proc.poll() is not None \
                and not self.stopped:
            self.death_reported = True
            raise DaemonDied(
                f"dagfs died with status {self.proc.returncode}; stderr "
                f"ends:\n{self.stderr_text()[-3000:]}")

    def wait(self, pred, timeout=10.0, what=None):
        """wait_for(@pred) that fails at once if the daemon died."""
        def p():
            self.check_alive()
            return pred()
        try:
            return wait_for(p, timeout, what=what)
        except Timeout as e:
            self.check_alive()
            # what the daemon said is what explains a wait that ran out
            raise Timeout(f"{e}; dagfs's stderr ends:\n"
                          f"{self.stderr_text()[-3000:]}") from None

    def stderr_text(self):
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def sample_rss(self):
        if self.alive():
            v = proc_status(self.pid, "VmHWM")
            if v is not None:
                self.peak_rss_kib = max(self.peak_rss_kib or 0, v)
        return self.peak_rss_kib

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def wait_exit(self, timeout=15.0):
        """Wait for the process to end; returns its status or None."""
        self.stopped = True
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._err.close()
        return self.returncode

    def stop(self, timeout=15.0):
        """SIGTERM and wait; then lazy unmount and SIGKILL if needed.
        Returns the exit status after SIGTERM (None if it had to be
        killed)."""
        if self.proc is None:
            return None
        if self.returncode is not None:
            force_unmount(self.mnt)
            return self.returncode
        self.sample_rss()
        self.signal(signal.SIGCONT)         # in case a test froze it
        self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        if rc is None:
            force_unmount(self.mnt)
            rc2 = self.wait_exit(5)
            if rc2 is None:
                self.proc.kill()
                self.proc.wait()
                self._err.close()
            self.returncode = None
        force_unmount(self.mnt)
        return rc

    def sanitizer_reports(self):
        t = self.stderr_text()
        return [m for m in SANITIZER_MARKERS if m in t]


class DagfsFactory:
    """The `dagfs` fixture: makes mounts in a per-test directory and stops
    them all at teardown, failing the test if one crashed or leaked."""

    def __init__(self, base):
        self.base = pathlib.Path(base)
        self.mounts = []
        self.n = 0

    def path(self, name):
        p = self.base / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def mount(self, sources, mnt=None, cache=None, args=(), ready=None,
              timeout=30.0, env=None, start=True):
        self.n += 1
        mnt = pathlib.Path(mnt) if mnt else self.path(f"mnt{self.n}")
        cache = pathlib.Path(cache) if cache else self.base / f"cache{self.n}"
        m = Dagfs(mnt, cache, sources, args, env=env,
                  stderr_path=self.base / f"dagfs{self.n}.stderr")
        self.mounts.append(m)
        if start:
            m.start(ready=ready, timeout=timeout)
        return m

    def run(self, argv, timeout=20.0, env=None, preexec=None):
        """Run `dagfs ARGV...` to completion (for commands and for bad
        input). Returns CompletedProcess with text stdout/stderr."""
        e = dict(os.environ)
        if env:
            e.update(env)
        return subprocess.run([str(dagfs_binary())] + [str(a) for a in argv],
                              capture_output=True, text=True, env=e,
                              timeout=timeout, stdin=subprocess.DEVNULL,
                              preexec_fn=preexec)

    def teardown(self):
        problems = []
        for m in self.mounts:
            if m.proc is not None and not m.stopped and not m.alive() \
                    and not m.death_reported:
                problems.append(
                    f"{m.mnt}: dagfs died with status {m.proc.returncode}; "
                    f"stderr ends:\n{m.stderr_text()[-3000:]}")
        for m in reversed(self.mounts):     # newest first: they may share
            if m.proc is None:              # a mountpoint with older ones
                continue
            was_alive = m.alive()
            rc = m.stop()
            if was_alive and rc is None:
                problems.append(f"{m.mnt}: dagfs did not exit on SIGTERM")
            for r in m.sanitizer_reports():
                problems.append(f"{m.mnt}: sanitizer report '{r}':\n"
                                + m.stderr_text()[-4000:])
            if is_fuse_mounted(m.mnt):
                problems.append(f"{m.mnt}: still mounted after teardown")
        return problems


@pytest.fixture(scope="session")
def dagfs_bin():
    b = dagfs_binary()
    if not os.access(b, os.X_OK):
        skip_or_fail(f"{b} not built (set DAGFS_BUILD or run meson/ninja)")
    return b


@pytest.fixture(scope="session")
def fuse_ok():
    if not os.path.exists("/dev/fuse"):
        skip_or_fail("/dev/fuse is missing")
    if not shutil.which("fusermount3"):
        skip_or_fail("fusermount3 is missing")
    return True


@pytest.fixture
def dagfs(dagfs_bin, fuse_ok, tmp_path):
    f = DagfsFactory(tmp_path)
    yield f
    problems = f.teardown()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def mount(dagfs):
    """Shorthand: mount(sources, **kw) is dagfs.mount(sources, **kw)."""
    return dagfs.mount


def rgw_started():
    """A started RADOS Gateway rig (tests/rigs/rgw.py); a skip, or a
    failure under CI, without Debian's radosgw. The caller stops it."""
    if not shutil.which("radosgw"):
        skip_or_fail("radosgw (Debian's ceph packages) not installed")
    rigs = str(REPO / "tests" / "rigs")
    if rigs not in sys.path:
        sys.path.insert(0, rigs)
    from rgw import Rgw
    return Rgw().start()


@pytest.fixture(scope="module")
def rgw():
    """One RADOS Gateway for a test file's S3 tests, started at the first
    that asks for it, stopped after the file's last test."""
    r = rgw_started()
    yield r
    r.stop()


@pytest.fixture
def world_tmp():
    """A temporary directory every user can traverse (tests that run
    dagfs as an unprivileged user need one; pytest's tmp_path is 0700)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-test-"))
    d.chmod(0o755)
    yield d
    for p in d.rglob("*"):
        try:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o755)
        except OSError:
            pass
    force_unmount(d)
    shutil.rmtree(d, ignore_errors=True)


def tree_equal_errors(a, b, skip=()):
    """Differences between two trees as a list of strings (empty if
    equal): names, types, permission bits, sizes, bytes, link targets and
    file mtimes. @skip: relative paths absent on the @b side by design."""
    errs = []
    a, b = pathlib.Path(a), pathlib.Path(b)
    for dirpath, dirnames, filenames in os.walk(a):
        rel = os.path.relpath(dirpath, a)
        rel = "" if rel == "." else rel
        bdir = b / rel
        want = set(dirnames) | set(filenames)
        want -= {n for n in want if os.path.join(rel, n) in skip}
        try:
            got = set(os.listdir(bdir))
        except OSError as e:
            errs.append(f"{rel or '.'}: cannot list: {e}")
            continue
        if want != got:
            errs.append(f"{rel or '.'}: names differ: missing "
                        f"{sorted(want - got)[:5]} extra {sorted(got - want)[:5]}")
        for n in sorted(want & got):
            errs += entry_errors(a / rel / n, bdir / n, os.path.join(rel, n))
        if len(errs) > 50:
            break
    return errs


def entry_errors(pa, pb, rel):
    import stat as S
    sa, sb = os.lstat(pa), os.lstat(pb)
    if S.S_IFMT(sa.st_mode) != S.S_IFMT(sb.st_mode):
        return [f"{rel}: type {oct(sa.st_mode)} != {oct(sb.st_mode)}"]
    if S.S_ISLNK(sa.st_mode):
        ta, tb = os.readlink(pa), os.readlink(pb)
        return [] if ta == tb else [f"{rel}: link {ta!r} != {tb!r}"]
    errs = []
    if S.S_IMODE(sa.st_mode) & ~0o022 != S.S_IMODE(sb.st_mode):
        errs.append(f"{rel}: mode {oct(S.S_IMODE(sa.st_mode))} != "
                    f"{oct(S.S_IMODE(sb.st_mode))}")
    if S.S_ISREG(sa.st_mode):
        if sa.st_size != sb.st_size:
            errs.append(f"{rel}: size {sa.st_size} != {sb.st_size}")
        elif pathlib.Path(pa).read_bytes() != pathlib.Path(pb).read_bytes():
            errs.append(f"{rel}: bytes differ")
        if sa.st_mtime_ns != sb.st_mtime_ns:
            errs.append(f"{rel}: mtime {sa.st_mtime_ns} != {sb.st_mtime_ns}")
    return errs


__all__ = ["Dagfs", "DagfsFactory", "wait_for", "Timeout", "mounts",
           "mount_entry", "is_fuse_mounted", "force_unmount", "drop_caches",
           "proc_status", "in_ci", "skip_or_fail", "build_dir",
           "dagfs_binary", "tree_equal_errors", "rgw_started", "REPO", "errno"]
