#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The dagfs daemon's memory over a dir source: VmHWM and VmRSS (MiB) of
one daemon after each phase, for one or more binaries in turn.

  start    a fresh mount over a populated cache (the first mount, on an
           empty cache, comes before and is not counted)
  read     after reading every file through the mount
  rescans  after WAIT seconds more, periodic rescans included (the
           default period is 10 s)

Usage: bench_rss.py [--files 10000] [--wait 25] [--workdir DIR] BINARY...
(the corpus is gen_corpus.py's, seed 42). Run as root on a quiet machine.
"""

import argparse
import glob
import os
import pathlib
import shutil
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))

import gen_corpus  # noqa: E402
from conftest import Dagfs, proc_status  # noqa: E402


def mib(kib):
    return round(kib / 1024, 1)


def sample(pid):
    return mib(proc_status(pid, "VmHWM")), mib(proc_status(pid, "VmRSS"))


def measure(binary, corpus, work, wait):
    cache, mnt = work / "cache", work / "mnt"
    shutil.rmtree(cache, ignore_errors=True)
    mnt.mkdir(parents=True, exist_ok=True)

    def start():
        return Dagfs(mnt, cache, [f"dir:{corpus},name=bench"], [],
                     binary=binary, stderr_path=work / "stderr").start(
            ready=lambda m: glob.glob(str(cache / "sources/*/current"))
            and os.listdir(m), timeout=600)

    start().stop()  # fills the cache
    d = start()
    try:
        out = {"start": sample(d.pid)}
        files = 0
        for root, _, names in os.walk(d.mnt):
            for n in names:
                with open(os.path.join(root, n), "rb") as f:
                    f.read()
                files += 1
        out["read"] = sample(d.pid)
        time.sleep(wait)
        out["rescans"] = sample(d.pid)
    finally:
        d.stop()
    return files, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--wait", type=float, default=25)
    ap.add_argument("--workdir", default="/var/tmp/dagfs-bench-rss")
    opts = ap.parse_args()
    work = pathlib.Path(opts.workdir)
    corpus = work / f"corpus-{opts.files}"
    if not corpus.exists():
        gen_corpus.generate(corpus, opts.files, 42)
    print(f"| binary | files read | {' | '.join(f'{p} HWM / RSS (MiB)' for p in ('start', 'read', 'rescans'))} |")
    print("|---|---:|---:|---:|---:|")
    for b in opts.binaries:
        files, r = measure(b, corpus, work, opts.wait)
        cells = " | ".join(f"{h} / {s}" for h, s in r.values())
        print(f"| {b} | {files} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
