#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark: the Airflow-like DAG-folder scan (airflow_scan.py) over a
native directory and over a dagfs mount of the same files (dir: source),
in one run; cold and warm; as ratios to native; and the daemon's peak RSS.

  cold  first scan after a fresh mount (daemon restarted on its cache),
        after `echo 3 > /proc/sys/vm/drop_caches`, for every target
  warm  median of --warm scans (default 5) right after

Two scans are timed: "full" (walk, stat, read, heuristic, compile()
of every .py) and "io" (the same without compile(), which shows the
file-system part alone). Root is needed to drop caches.

Other comparators (s3fs, rclone mount...) plug in with --plugin MODULE:
a module in tests/bench that calls bench_core.register(NAME, CLASS) with
a Target subclass, then --targets native,dagfs,NAME. A target
"dagfs:OPT=V+OPT=V" is dagfs with the extra options --OPT=V (each its own
mount and cache), so settings compare in one interleaved run, e.g.
--targets native,dagfs:fuse-spin=0,dagfs:fuse-spin=300. An UPPER_CASE
OPT sets that environment variable of the daemon instead
(dagfs:MALLOC_ARENA_MAX=16).

The daemon is <build>/sidecar/dagfs, build from env DAGFS_BUILD (default
build). Usage: bench_core.py [--sizes 2000,10000] [--seed 42] [--warm 5]
                     [--workdir /var/tmp/dagfs-bench] [--out FILE]
"""

import argparse
import glob
import importlib
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import statistics
import sys
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import airflow_scan  # noqa: E402
import gen_corpus  # noqa: E402
from conftest import Dagfs, drop_caches, proc_status  # noqa: E402

TARGETS = {}
opts_min_idle = 0.0     # --min-idle


def register(name, cls):
    """Make Target subclass @cls selectable as --targets ...,NAME."""
    TARGETS[name] = cls


class Target:
    """One way of presenting the corpus to the scan."""

    name = "?"

    def __init__(self, corpus, workdir, opts):
        self.corpus = pathlib.Path(corpus)
        self.workdir = pathlib.Path(workdir)
        self.opts = opts
        self.notes = {}

    def prepare(self):
        """One-time set-up (mount, initial sync)."""

    def fresh(self):
        """Make the next scan cold: e.g. remount. Caches are dropped
        after this by the caller."""

    @property
    def path(self):
        return self.corpus

    def peak_rss_kib(self):
        """Peak RSS of the serving process in KiB, or None."""
        return None

    def rss_kib(self):
        """RSS of the serving process now, in KiB, or None."""
        return None

    def requests(self):
        """{op: count} of the FUSE requests served so far, or None."""
        return None

    def close(self):
        pass


class NativeTarget(Target):
    name = "native"


class DagfsTarget(Target):
    name = "dagfs"
    extra = []  # options of a "dagfs:OPT=V+..." target
    env = {}    # its environment variables (UPPER_CASE keys)

    def prepare(self):
        tag = re.sub(r"[^A-Za-z0-9=-]+", "-", self.name)
        self.cache = self.workdir / f"cache-{self.corpus.name}-{tag}"
        self.mnt = self.workdir / f"mnt-{self.corpus.name}-{tag}"
        shutil.rmtree(self.cache, ignore_errors=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self.m = self._start()
        self.notes["initial sync s"] = round(time.monotonic() - t0, 2)
        self.notes["initial sync peak RSS MiB"] = _mib(
            proc_status(self.m.pid, "VmHWM"))

    def _start(self):
        self.port = free_port()
        m = Dagfs(self.mnt, self.cache, [f"dir:{self.corpus},name=bench"],
                  list(self.opts.dagfs_args) + self.extra +
                  ["--http", f"127.0.0.1:{self.port}"], env=self.env,
                  stderr_path=self.mnt.with_suffix(".stderr"))
        m.start(timeout=600, ready=lambda mnt: glob.glob(
            str(self.cache / "sources" / "*" / "current"))
            and len(os.listdir(mnt)) > 0)
        return m

    def fresh(self):
        rc = self.m.stop()
        if rc != 0:
            raise RuntimeError(f"dagfs exited {rc}: {self.m.stderr_text()}")
        self.m = self._start()

    @property
    def path(self):
        return self.mnt

    def peak_rss_kib(self):
        return proc_status(self.m.pid, "VmHWM")

    def rss_kib(self):
        return proc_status(self.m.pid, "VmRSS")

    def requests(self):
        return fuse_requests(self.port)

    def close(self):
        if getattr(self, "m", None):
            self.m.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuse_requests(port):
    """{op: count} from dagfs_fuse_requests_total on /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^dagfs_fuse_requests_total\{op="([a-z_]+)"\} (\d+)$', text, re.M)}


register("native", NativeTarget)
register("dagfs", DagfsTarget)


def _mib(kib):
    return None if kib is None else round(kib / 1024, 1)


def ensure_corpus(workdir, files, seed):
    corpus = workdir / f"corpus-{files}"
    done = workdir / f"corpus-{files}.seed-{seed}.done"
    if not done.exists():
        shutil.rmtree(corpus, ignore_errors=True)
        for d in glob.glob(str(workdir / f"corpus-{files}.seed-*.done")):
            os.unlink(d)
        gen_corpus.generate(corpus, files, seed)
        done.touch()
    return corpus


def _cpu_idle(interval=1.0):
    """Fraction of CPU time idle over @interval seconds (/proc/stat)."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)
    i0, t0 = snap()
    time.sleep(interval)
    i1, t1 = snap()
    return (i1 - i0) / max(1, t1 - t0)


def wait_quiet(min_idle, timeout=120):
    """On a shared machine, wait (up to @timeout s) until other work
    leaves at least @min_idle of the CPUs idle; returns the idle seen."""
    deadline, idle = time.monotonic() + timeout, 0.0
    while min_idle > 0 and time.monotonic() < deadline:
        idle = _cpu_idle()
        if idle >= min_idle:
            break
    return idle


def timed_scan(path, compile_py):
    st = airflow_scan.scan(str(path), compile_py)
    if st["errors"]:
        raise RuntimeError(f"{path}: {st['errors']} files failed to compile")
    return st["seconds"], (st["walked"], st["dag_files"], st["bytes"])


def measure(targets, mode, warm_runs):
    """{target name: (cold s, [warm s...])}, checking every target saw
    the same files."""
    compile_py = mode == "full"
    res, shapes = {}, {}
    for t in targets:
        t.fresh()
        wait_quiet(opts_min_idle)
        if not drop_caches():
            raise RuntimeError("cannot drop caches (run as root)")
        cold, shapes[t.name] = timed_scan(t.path, compile_py)
        res[t.name] = (cold, [])
    for _ in range(warm_runs):
        wait_quiet(opts_min_idle)
        for t in targets:
            before = t.requests()
            s, shape = timed_scan(t.path, compile_py)
            res[t.name][1].append(s)
            after = t.requests()
            if before is not None:
                # deterministic: the round trips one warm scan costs
                sent = {op: n - before.get(op, 0) for op, n in after.items()
                        if n - before.get(op, 0)}
                t.notes[f"warm {mode} scan requests ({shape[0]} files)"] = \
                    sent
    if len(set(shapes.values())) != 1:
        raise RuntimeError(f"targets disagree on the corpus: {shapes}")
    return res


def table(rows, warm_runs):
    out = [f"| files | scan | target | cold (s) | cold × native | "
           f"warm, median of {warm_runs} (s) | warm × native | peak RSS (MiB) |",
           "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['files']} | {r['mode']} | {r['target']} | "
                   f"{r['cold']:.3f} | {r['cold_ratio']:.2f} | "
                   f"{r['warm']:.3f} | {r['warm_ratio']:.2f} | "
                   f"{'' if r['rss'] is None else r['rss']} |")
    return "\n".join(out)


def run(opts):
    workdir = pathlib.Path(opts.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    rows, notes = [], {}
    for files in opts.sizes:
        corpus = ensure_corpus(workdir, files, opts.seed)
        targets = [TARGETS[n](corpus, workdir, opts) for n in opts.targets]
        try:
            for t in targets:
                t.prepare()
            for mode in ("full", "io"):
                res = {t.name: ([], []) for t in targets}
                for _ in range(opts.rounds):
                    for name, (cold, warm) in measure(targets, mode,
                                                      opts.warm).items():
                        res[name][0].append(cold)
                        res[name][1].extend(warm)
                res = {n: (statistics.median(c), w) for n, (c, w) in res.items()}
                ncold, nwarm = res["native"][0], statistics.median(res["native"][1])
                for t in targets:
                    cold, warm = res[t.name][0], statistics.median(res[t.name][1])
                    rows.append({"files": files, "mode": mode, "target": t.name,
                                 "cold": cold, "warm": warm,
                                 "cold_ratio": cold / ncold,
                                 "warm_ratio": warm / nwarm,
                                 "rss": _mib(t.peak_rss_kib())})
                    if t.rss_kib() is not None:
                        t.notes[f"RSS after the {mode} scans MiB"] = _mib(
                            t.rss_kib())
            for t in targets:
                if t.notes:
                    notes[f"{t.name} @ {files}"] = t.notes
        finally:
            for t in targets:
                t.close()
    return rows, notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="2000,10000")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--warm", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1,
                    help="repeat cold+warm; report the median cold and the "
                    "median of every warm scan (for noisy machines)")
    ap.add_argument("--workdir", default="/var/tmp/dagfs-bench")
    ap.add_argument("--targets", default="native,dagfs")
    ap.add_argument("--skip-isatty", action="store_true",
                    help="EMULATE Python 3.14's open(), which asks no "
                    "isatty() of regular files (labelled in the output)")
    ap.add_argument("--min-idle", type=float, default=0.8,
                    help="before each measurement wait (up to 2 min) until "
                    "this fraction of CPU time is idle; 0 to not wait")
    ap.add_argument("--plugin", action="append", default=[])
    ap.add_argument("--dagfs-arg", dest="dagfs_args", action="append",
                    default=[], help="extra option for dagfs mount")
    ap.add_argument("--out", help="also write the Markdown here")
    ap.add_argument("--json", help="also write raw figures here")
    opts = ap.parse_args()
    global opts_min_idle
    opts_min_idle = opts.min_idle
    airflow_scan.SKIP_ISATTY = opts.skip_isatty
    sys.modules.setdefault("bench_core", sys.modules[__name__])
    for p in opts.plugin:
        importlib.import_module(p)
    opts.sizes = [int(s) for s in opts.sizes.split(",")]
    opts.targets = opts.targets.split(",")
    for t in opts.targets:
        if t.startswith("dagfs:"):
            extra, env = [], {}
            for o in t[len("dagfs:"):].split("+"):
                k, _, v = o.partition("=")
                if k.isupper():
                    env[k] = v
                else:
                    extra += [f"--{k}={v}"] if v else [f"--{k}"]
            register(t, type("DagfsVariant", (DagfsTarget,),
                             {"name": t, "extra": extra, "env": env}))
    if "native" not in opts.targets:
        opts.targets.insert(0, "native")
    unknown = [t for t in opts.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    rows, notes = run(opts)
    md = table(rows, opts.warm * opts.rounds)
    head = (f"Airflow-like scan, {platform.node()}, {os.cpu_count()} CPUs, "
            f"Linux {platform.release()}, {time.strftime('%Y-%m-%d')}, "
            f"seed {opts.seed}, {opts.rounds} round(s), load average "
            f"{os.getloadavg()[0]:.1f} at the end"
            + (", open() EMULATING Python 3.14 (no isatty: an explicit "
               "buffer size)" if opts.skip_isatty else ""))
    text = f"{head}\n\n{md}\n"
    if notes:
        text += "\n" + "\n".join(f"- {k}: " + ", ".join(
            f"{a} {b}" for a, b in v.items()) for k, v in notes.items()) + "\n"
    print(text)
    if opts.out:
        pathlib.Path(opts.out).write_text(text)
    if opts.json:
        pathlib.Path(opts.json).write_text(json.dumps(
            {"rows": rows, "notes": notes}, indent=1))


if __name__ == "__main__":
    main()
