#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: the cost of one FUSE round trip, the thing a warm scan still
pays once per Python open() (ioctl TCGETS, which the kernel always
forwards). Mounts one dagfs per variant over the same one-file dir source
and times ioctl(TCGETS) on an open file, the variants interleaved round by
round; prints the median per call of each round and the median of rounds.

Variants: `--threads N` of the daemon (most idle FUSE worker threads; a
burst may still start up to 10), and where the daemon and this client run
(`pin=C,D`: client on CPU C, every daemon thread on CPU D), which shows
what a wake-up across CPUs costs.

  bench_rtt.py [--calls 4000] [--rounds 9] [--parallel P]
               [--variants threads=10,threads=2,threads=1,pin=0:0,pin=0:1]

With --parallel P, P processes call at once and the figure is wall time
over all calls. The daemon is <build>/sidecar/dagfs (env DAGFS_BUILD).
"""

import argparse
import fcntl
import multiprocessing as mp
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import termios
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
from conftest import DagfsFactory  # noqa: E402


def calls(path, n):
    """Median ns of @n ioctl(TCGETS) on @path (each one round trip)."""
    fd = os.open(path, os.O_RDONLY)
    t = []
    try:
        for i in range(n + 200):
            t0 = time.perf_counter_ns()
            try:
                fcntl.ioctl(fd, termios.TCGETS, bytes(60))
            except OSError:
                pass
            if i >= 200:  # warm-up
                t.append(time.perf_counter_ns() - t0)
    finally:
        os.close(fd)
    return statistics.median(t)


def burst(path, n, cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    calls(path, n)


def pin_daemon(pid, cpu):
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--variants",
                    default="threads=10,threads=2,threads=1,pin=0:0,pin=0:1")
    a = ap.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-bench-rtt-"))
    src = work / "src"
    src.mkdir()
    (src / "a.py").write_text("x = 1\n")
    f = DagfsFactory(work)
    variants = {}
    try:
        for v in a.variants.split(","):
            kind, _, val = v.partition("=")
            args, client = [], None
            if kind == "threads":
                args = ["--threads", val]
            m = f.mount([f"dir:{src},name=rtt"], args=args,
                        ready=lambda mnt: (mnt / "a.py").exists())
            if kind == "pin":
                client, daemon = (int(x) for x in val.split(":"))
                pin_daemon(m.pid, daemon)
            variants[v] = (m, client)
        res = {v: [] for v in variants}
        for _ in range(a.rounds):
            for v, (m, client) in variants.items():
                path = str(m.mnt / "a.py")
                if a.parallel == 1:
                    old = os.sched_getaffinity(0)
                    if client is not None:
                        os.sched_setaffinity(0, {client})
                    res[v].append(calls(path, a.calls) / 1000)
                    os.sched_setaffinity(0, old)
                    continue
                ps = [mp.Process(target=burst, args=(path, a.calls, client))
                      for _ in range(a.parallel)]
                t0 = time.perf_counter()
                for p in ps:
                    p.start()
                for p in ps:
                    p.join()
                res[v].append((time.perf_counter() - t0) * 1e6 /
                              (a.calls * a.parallel))
        load = open("/proc/loadavg").read().split()[:3]
        print(f"round trip (ioctl TCGETS), {a.parallel} client(s), "
              f"{a.calls} calls x {a.rounds} rounds, load {' '.join(load)}")
        for v, r in res.items():
            print(f"  {v:12s} median {statistics.median(r):6.1f} us   "
                  f"rounds {' '.join(f'{x:.1f}' for x in r)}")
    finally:
        f.teardown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
