#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The dagfs daemon's memory over a dir or an s3 source: VmHWM and VmRSS
(MiB) of one daemon after each phase, for one or more binaries in turn,
and how much of the RSS is the daemon's own (anonymous) memory rather
than pages of the binary and its libraries.

  start    a fresh mount over a populated cache (the first mount, on an
           empty cache, comes before and is not counted)
  read     after reading every file through the mount
  rescans  after WAIT seconds more, periodic rescans included (the
           default period is 10 s)

Usage: bench_rss.py [--source dir|s3] [--files 10000] [--wait 25]
                    [--workdir DIR] BINARY...
(the corpus is gen_corpus.py's, seed 42; --source s3 uploads it once to
a bucket of the RADOS Gateway rig, as bench_s3.py does). Run as root on a
quiet machine.
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
    return (mib(proc_status(pid, "VmHWM")), mib(proc_status(pid, "VmRSS")),
            mib(proc_status(pid, "RssAnon")))


def mappings(pid, top=8):
    """The @top mappings by resident KiB at the end: which library or
    heap the RSS is made of."""
    rss, name = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5:
                name = head[5] if len(head) > 5 else "[anon]"
            elif head[0] == "Rss:":
                rss[name] = rss.get(name, 0) + int(head[1])
    return sorted(rss.items(), key=lambda kv: -kv[1])[:top]


def source_of(kind, corpus):
    """(source spec, environment) serving @corpus from a @kind source."""
    if kind == "dir":
        return f"dir:{corpus},name=bench", None
    import bench_s3
    bucket = f"bench-{corpus.name}"
    if not bench_s3.rgw_has(bucket):
        bench_s3.upload(corpus, bucket)
    return bench_s3.dagfs_spec(bucket), bench_s3.s3_env()


def measure(binary, spec, env, work, wait):
    cache, mnt = work / "cache", work / "mnt"
    shutil.rmtree(cache, ignore_errors=True)
    mnt.mkdir(parents=True, exist_ok=True)

    def start():
        return Dagfs(mnt, cache, [spec], [], env=env,
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
        out["maps"] = mappings(d.pid)
    finally:
        d.stop()
    return files, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--source", choices=("dir", "s3"), default="dir")
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--wait", type=float, default=25)
    ap.add_argument("--workdir", default="/var/tmp/dagfs-bench-rss")
    opts = ap.parse_args()
    work = pathlib.Path(opts.workdir)
    corpus = work / f"corpus-{opts.files}"
    if not corpus.exists():
        gen_corpus.generate(corpus, opts.files, 42)
    spec, env = source_of(opts.source, corpus)
    print(f"{opts.source} source, {opts.files} files; HWM / RSS (of which "
          "anonymous), MiB")
    print(f"| binary | files read | {' | '.join(p for p in ('start', 'read', 'rescans'))} |")
    print("|---|---:|---:|---:|---:|")
    for b in opts.binaries:
        files, r = measure(b, spec, env, work, opts.wait)
        maps = r.pop("maps")
        cells = " | ".join(f"{h} / {s} ({a})" for h, s, a in r.values())
        print(f"| {b} | {files} | {cells} |", flush=True)
        print("  resident at the end (KiB): " + ", ".join(
            f"{os.path.basename(n)} {k}" for n, k in maps), flush=True)


if __name__ == "__main__":
    main()
