#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Soak (not in CI): N concurrent readers over a dagfs mount while a dir
source publishes a new revision every INTERVAL seconds, for DURATION.

Every file of revision R holds only lines "rev R file K", R+K lines, so
a reader can tell a torn read (two revisions, or a size that does not
belong to the revision) from a good one. Each reader also checks that
revisions never go backwards and that no listing mixes the names of two
revisions. At the start (after warm-up) and the end it records the
daemon's open file descriptors and RSS. Exit status 0 only with zero
torn reads, zero errors, zero regressions and fds/RSS flat.

    tests/soak/soak.py [--duration 600] [--readers 32] [--interval 0.1]
                       [--build build]
"""

import argparse
import multiprocessing as mp
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
from conftest import Dagfs, freeze, proc_status, wait_for  # noqa: E402

FILES = 24


def content(rev, k):
    return f"rev {rev} file {k}\n" * (rev % 13 + k + 1)


def write_rev(src, rev):
    for k in range(FILES):
        p = src / f"t{k % 4}" / f"f{k}.py"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(content(rev, k))
        tmp.rename(p)
    # one name per revision: a listing must show exactly one of them
    for old in src.glob("rev-*"):
        old.unlink()
    (src / f"rev-{rev}").write_text("")


def reader(mnt, stop, out, seed):
    rng = random.Random(seed)
    n = torn = errors = back = mixed = back_listing = 0
    last, last_what = -1, None
    first_err = first_back = None
    while not stop.is_set():
        try:
            if rng.random() < 0.1:
                revs = [int(x[4:]) for x in os.listdir(mnt)
                        if x.startswith("rev-")]
                if len(revs) != 1:
                    mixed += 1
                    continue
                rev, what = revs[0], "listing"
            else:
                k = rng.randrange(FILES)
                with open(os.path.join(mnt, f"t{k % 4}", f"f{k}.py")) as f:
                    data = f.read()
                rev, what = int(data.split(" ", 2)[1]), f"f{k}.py"
                if data != content(rev, k):
                    torn += 1
                    continue
            n += 1
            if rev < last:
                back += 1
                back_listing += what == "listing"
                first_back = first_back or \
                    f"{what}: {rev} after {last} ({last_what})"
            if rev > last:
                last, last_what = rev, what
        except (OSError, ValueError, IndexError) as e:
            errors += 1
            first_err = first_err or repr(e)
    out.put((n, torn, errors, back, mixed, last, first_err, first_back,
             back_listing))


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--readers", type=int, default=32)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--build", default=os.environ.get("DAGFS_BUILD", "build"))
    a = ap.parse_args()
    build = pathlib.Path(a.build)
    binary = (build if build.is_absolute() else REPO / build) / "sidecar" / "dagfs"
    base = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-soak-"))
    src, mnt = base / "src", base / "mnt"
    for d in [src, mnt] + [src / f"t{i}" for i in range(4)]:
        d.mkdir(parents=True, exist_ok=True)
    write_rev(src, 0)
    m = Dagfs(mnt, base / "cache", [f"dir:{src},name=soak,debounce=20ms"],
              stderr_path=base / "dagfs.stderr", binary=binary)
    m.start(ready=lambda p: (p / "rev-0").exists())
    stop, out = mp.Event(), mp.Queue()
    procs = [mp.Process(target=reader, args=(str(mnt), stop, out, i))
             for i in range(a.readers)]
    for p in procs:
        p.start()
    time.sleep(2)
    fd0, rss0 = fds(m.pid), proc_status(m.pid, "VmRSS")
    rev, t0 = 0, time.monotonic()
    next_t = t0
    while time.monotonic() - t0 < a.duration and m.alive():
        rev += 1
        # freeze the daemon while a revision is written, so it can only
        # publish whole revisions (readers block meanwhile, a few ms)
        freeze(m.pid)
        write_rev(src, rev)
        m.signal(signal.SIGCONT)
        next_t += a.interval
        time.sleep(max(0.0, next_t - time.monotonic()))
    try:
        wait_for(lambda: (mnt / f"rev-{rev}").exists(), 10)
        caught_up = True
    except AssertionError:
        caught_up = False
    stop.set()
    res = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join()
    fd1, rss1 = fds(m.pid), proc_status(m.pid, "VmRSS")
    hwm = proc_status(m.pid, "VmHWM")
    alive = m.alive()
    m.stop()
    reads = sum(r[0] for r in res)
    torn, errors, back, mixed = (sum(r[i] for r in res) for i in (1, 2, 3, 4))
    errs = [r[6] for r in res if r[6]]
    backs = [r[7] for r in res if r[7]]
    published = len([x for x in m.stderr_text().splitlines()
                     if "publish" in x])
    print(f"soak: {a.duration:.0f}s, {a.readers} readers, {rev} revisions "
          f"written every {a.interval * 1000:.0f} ms, newest served at the "
          f"end: {caught_up}")
    print(f"reads {reads} ({reads / a.duration:.0f}/s), torn {torn}, "
          f"errors {errors}, backwards {back} ({sum(r[8] for r in res)} of "
          f"them listings), mixed listings {mixed}"
          + (f" (first error: {errs[0]})" if errs else "")
          + (f" (e.g. {'; '.join(backs[:4])})" if backs else ""))
    print(f"daemon fds start {fd0} end {fd1}; RSS start {rss0} KiB end "
          f"{rss1} KiB, peak {hwm} KiB; alive {alive}; "
          f"publication log lines {published}")
    ok = (alive and caught_up and not (torn or errors or back or mixed)
          and fd1 <= fd0 + 2 and rss1 <= rss0 * 1.5 + 4096)
    if ok:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"soak: FAILED (kept {base})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
