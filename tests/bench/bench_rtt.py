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


def calls(path, n, gap_ns=0):
    """Median ns of @n ioctl(TCGETS) on @path (each one round trip), with
    @gap_ns of busy CPU in this process between two calls."""
    fd = os.open(path, os.O_RDONLY)
    t = []
    try:
        for i in range(n + 200):
            t0 = time.perf_counter_ns()
            try:
                fcntl.ioctl(fd, termios.TCGETS, bytes(60))
            except OSError:
                pass
            t1 = time.perf_counter_ns()
            if i >= 200:  # warm-up
                t.append(t1 - t0)
            while time.perf_counter_ns() - t1 < gap_ns:
                pass
    finally:
        os.close(fd)
    return statistics.median(t)


def burst(path, n, cpu, gap_ns):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    calls(path, n, gap_ns)


def pin_daemon(pid, cpu):
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), {cpu})


def parse_variant(v):
    """Daemon arguments, (client CPU, daemon CPU) or None, and whether to
    hold a zero CPU latency request, of variant @v ("a=1+b=2")."""
    args, pin, qos = [], None, False
    for part in v.split("+"):
        kind, _, val = part.partition("=")
        if kind == "threads":
            args += ["--threads", val]
        elif kind == "spin":
            args += ["--fuse-spin", val]
        elif kind == "awake":
            args += ["--fuse-awake", val]
        elif kind == "pin":
            pin = tuple(int(x) for x in val.split(":"))
        elif kind == "qos":
            qos = True
        else:
            sys.exit(f"bench_rtt: unknown variant {part!r}")
    return args, pin, qos


def one_round(path, a, pin, qos):
    """Per-call µs of one round over @path."""
    gap_ns = int(a.gap * 1000)
    client = pin[0] if pin else None
    lat = None
    if qos:  # no vCPU halts while this is held (diagnosis only)
        lat = os.open("/dev/cpu_dma_latency", os.O_WRONLY)
        os.write(lat, (0).to_bytes(4, "little"))
    try:
        if a.parallel == 1:
            old = os.sched_getaffinity(0)
            if client is not None:
                os.sched_setaffinity(0, {client})
            try:
                return calls(path, a.calls, gap_ns) / 1000
            finally:
                os.sched_setaffinity(0, old)
        ps = [mp.Process(target=burst, args=(path, a.calls, client, gap_ns))
              for _ in range(a.parallel)]
        t0 = time.perf_counter()
        for p in ps:
            p.start()
        for p in ps:
            p.join()
        busy = a.calls * a.gap * a.parallel / 2  # 2 CPUs share the gaps
        return ((time.perf_counter() - t0) * 1e6 - busy) / (a.calls *
                                                            a.parallel)
    finally:
        if lat is not None:
            os.close(lat)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--parallel", type=int, default=1)
    ap.add_argument("--gap", type=float, default=0,
                    help="µs of busy CPU between two calls (a scan's work)")
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
            args, pin, qos = parse_variant(v)
            m = f.mount([f"dir:{src},name=rtt"], args=args,
                        ready=lambda mnt: (mnt / "a.py").exists())
            if pin:
                pin_daemon(m.pid, pin[1])
            variants[v] = (m, pin, qos)
        res = {v: [] for v in variants}
        for _ in range(a.rounds):
            for v, (m, pin, qos) in variants.items():
                res[v].append(one_round(str(m.mnt / "a.py"), a, pin, qos))
        print(f"round trip (ioctl TCGETS), {a.parallel} client(s), "
              f"{a.calls} calls x {a.rounds} rounds, gap {a.gap:g} us, "
              f"load {' '.join(open('/proc/loadavg').read().split()[:3])}")
        for v, r in res.items():
            print(f"  {v:18s} median {statistics.median(r):6.1f} us   "
                  f"rounds {' '.join(f'{x:.1f}' for x in r)}")
    finally:
        f.teardown()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
