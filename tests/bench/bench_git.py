#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Benchmark of the git source, against a real `git daemon` on loopback
(tests/rigs/git_servers.py) and a real dagfs mount:

  latency   push-to-visible over --pushes pushes (default 25) with
            period=1s: p50, p95, max (target p50 <= 1.5 s); pushes are
            spaced at random so they land at every phase of the poll
  onefile   one-file change in a --files (10,000) file repository:
            bytes and objects fetched, wall time push -> visible, against
            the repository's packed size
  idle      CPU time of one no-change poll (daemon utime+stime over
            --idle seconds of period=200ms polls, divided by the polls)
  history   first fetch of a repository with --commits (10,000) commits:
            time to the first published snapshot, daemon peak RSS, and
            the same repository's size; over git:// every fetch is whole
  shallow   over smart HTTP, a repository of --commits commits each
            rewriting one of 100 files with --blob-bytes (10,000) of
            incompressible data (about 100 MB of history, 1 MB of tree):
            bytes fetched and seconds for the first
            sync of main and for a pin to the middle commit, for each
            build in --builds (e.g. one against libgit2 1.5, which
            fetches the whole history, one against 1.8, which fetches
            one commit); --only shallow runs just this

Prints a Markdown table (and --out FILE writes it too).
Usage: bench_git.py [--pushes 25] [--files 10000] [--commits 10000]
                    [--idle 20] [--workdir DIR] [--out FILE]
                    [--only shallow --builds build,build-lg18
                     --blob-bytes 10000]
"""

import argparse
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "rigs"))

import gen_corpus  # noqa: E402
from conftest import Dagfs, proc_status  # noqa: E402
from git_servers import Servers  # noqa: E402


def mount(base, name, spec, ready, timeout=600, binary=None):
    d = pathlib.Path(base) / name
    (d / "mnt").mkdir(parents=True)
    m = Dagfs(d / "mnt", d / "cache", [spec],
              args=["--status-interval", "200ms", "--log-level", "notice"],
              stderr_path=d / "stderr", binary=binary)
    t0 = time.monotonic()
    m.start(ready=ready, timeout=timeout)
    return m, time.monotonic() - t0


def status(m):
    for _ in range(50):
        try:
            return json.loads((m.cache / "status.json").read_text())[
                "sources"][0]
        except (OSError, ValueError, KeyError, IndexError):
            time.sleep(0.05)
    raise RuntimeError("no status.json")


def wait_bytes(path, data, timeout=60):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        try:
            if path.read_bytes() == data:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{path} never showed {data!r}")


def du(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*")
               if p.is_file())


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


# ------------------------------------------------------------ measures

def bench_latency(srv, daemon, base, pushes):
    repo = srv.repo("latency")
    for i in range(100):
        repo.write(f"dags/d{i:03d}.py", f"# dag {i}\n")
    repo.write("probe.txt", "0\n")
    repo.commit("start")
    m, _ = mount(base, "latency",
                 f"git:{daemon.url(repo)},period=1s",
                 lambda mnt: (mnt / "probe.txt").exists())
    lat, rng = [], random.Random(7)
    try:
        for i in range(1, pushes + 1):
            time.sleep(rng.uniform(0.1, 1.1))
            data = f"{i}\n".encode()
            repo.write("probe.txt", data)
            repo.commit(f"push {i}")             # returns once pushed
            t_pushed = time.monotonic()
            lat.append(wait_bytes(m.mnt / "probe.txt", data) - t_pushed)
    finally:
        m.stop()
    return {"pushes": len(lat), "p50": statistics.median(lat),
            "p95": pct(lat, 95), "max": max(lat)}


def bench_onefile_and_idle(srv, daemon, base, files, idle_s):
    repo = srv.repo("big")
    gen_corpus.generate(repo.work, files=files, seed=42)
    repo.commit("corpus")
    subprocess.run(["git", "gc", "-q"], cwd=repo.bare, check=True)
    nfiles = int(repo.git("ls-files").stdout.count("\n"))
    m, first = mount(base, "big", f"git:{daemon.url(repo)},period=200ms",
                     lambda mnt: any(mnt.iterdir()))
    try:
        s0 = status(m)
        rel = repo.git("ls-files").stdout.splitlines()[files // 2]
        data = (repo.work / rel).read_bytes() + b"# one-line change\n"
        repo.write(rel, data)
        repo.commit("one file")
        t0 = time.monotonic()
        t1 = wait_bytes(m.mnt / rel, data)
        time.sleep(0.5)
        s1 = status(m)
        one = {"files": nfiles, "first_s": first,
               "repo_bytes": du(repo.bare),
               "fetched_bytes": s1["bytes_fetched"] - s0["bytes_fetched"],
               "fetched_objects": s1["objects_fetched"] -
               s0["objects_fetched"],
               "visible_s": t1 - t0}
        # idle: no pushes; every poll lists refs and finds no change
        time.sleep(1)
        c0, n0 = cpu_s(m.pid), status(m)["syncs"]
        time.sleep(idle_s)
        c1, n1 = cpu_s(m.pid), status(m)["syncs"]
        polls = max(1, n1 - n0)
        idle = {"polls": polls, "cpu_ms_per_poll": (c1 - c0) * 1000 / polls}
    finally:
        m.stop()
    return one, idle


def fast_import_history(repo, commits, nfiles=200):
    """@commits commits, each changing one of @nfiles files."""
    lines = []
    when = 1_600_000_000
    for i in range(commits):
        when += 60
        body = f"# file {i % nfiles} revision {i}\n" + "x = 1\n" * 20
        msg = f"commit {i}"
        lines.append(f"commit refs/heads/main\nmark :{i + 1}\n"
                     f"committer t <t@example.com> {when} +0000\n"
                     f"data {len(msg)}\n{msg}\n")
        if i:
            lines.append(f"from :{i}\n")
        lines.append(f"M 100644 inline dags/f{i % nfiles:03d}.py\n"
                     f"data {len(body)}\n{body}\n")
    stream = "".join(lines).encode()
    subprocess.run(["git", "fast-import", "--quiet"], input=stream,
                   cwd=repo.bare, check=True)
    subprocess.run(["git", "gc", "-q"], cwd=repo.bare, check=True)


def bench_history(srv, daemon, base, commits):
    repo = srv.repo("history")
    fast_import_history(repo, commits)
    head = subprocess.run(["git", "rev-parse", "main"], cwd=repo.bare,
                          capture_output=True, text=True).stdout.strip()
    m, t = mount(base, "history", f"git:{daemon.url(repo)},period=10s",
                 lambda mnt: (mnt / "dags").exists())
    try:
        rss = proc_status(m.pid, "VmHWM")
        st = status(m)
        assert st["revision"] == head, (st["revision"], head)
    finally:
        m.stop()
    return {"commits": commits, "first_s": t, "rss_mib": rss / 1024,
            "repo_bytes": du(repo.bare),
            "fetched_bytes": st["bytes_fetched"]}


def fast_import_big(repo, commits, blob_bytes):
    """@commits commits, each rewriting one of 100 files with @blob_bytes
    random bytes: the history holds every version, a tree only 100."""
    when = 1_600_000_000
    p = subprocess.Popen(["git", "fast-import", "--quiet"],
                         stdin=subprocess.PIPE, cwd=repo.bare)
    for i in range(commits):
        when += 60
        msg = f"commit {i}"
        body = os.urandom(blob_bytes)
        p.stdin.write((f"commit refs/heads/main\nmark :{i + 1}\n"
                       f"committer t <t@example.com> {when} +0000\n"
                       f"data {len(msg)}\n{msg}\n").encode())
        if i:
            p.stdin.write(f"from :{i}\n".encode())
        p.stdin.write(f"M 100644 inline data/b{i % 100:02d}.bin\n"
                      f"data {len(body)}\n".encode() + body + b"\n")
    p.stdin.close()
    if p.wait():
        raise RuntimeError("git fast-import failed")


def bench_shallow(srv, base, commits, blob_bytes, builds):
    """First sync of main and of a pin to the middle commit, over smart
    HTTP, for each build: seconds to the first snapshot, bytes fetched."""
    http = srv.http()
    repo = srv.repo("big")
    fast_import_big(repo, commits, blob_bytes)
    revs = subprocess.run(["git", "rev-list", "--reverse", "main"],
                          cwd=repo.bare, capture_output=True, text=True,
                          check=True).stdout.split()
    url = (f"git:{http.url(repo)},username={http.user},"
           f"password-file={http.password_file},period=1h")
    res = {"commits": len(revs), "repo_bytes": du(repo.bare), "builds": {}}
    for b in builds:
        binary = pathlib.Path(b) / "sidecar" / "dagfs"
        out = {}
        for what, ref in (("main", "main"), ("pin", revs[len(revs) // 2])):
            m, t = mount(base, f"{pathlib.Path(b).name}-{what}",
                         f"{url},ref={ref}",
                         lambda mnt: (mnt / "data").exists(), binary=binary)
            try:
                want = revs[-1] if what == "main" else ref
                for _ in range(100):  # status.json lags by its interval
                    st = status(m)
                    if st["revision"] == want:
                        break
                    time.sleep(0.1)
                assert st["revision"] == want, (b, what, st, want)
                out[what] = {"s": t, "bytes": st["bytes_fetched"],
                             "rss_mib": proc_status(m.pid, "VmHWM") / 1024}
            finally:
                m.stop()
        res["builds"][b] = out
    return res


def shallow_table(sh):
    mib = 1024 * 1024
    out = [f"over smart HTTP, {sh['commits']} commits, repository "
           f"{sh['repo_bytes'] / mib:.1f} MiB, load "
           f"{open('/proc/loadavg').read().split()[0]}", "",
           "| build | first sync of main | pin to the middle commit |",
           "|---|---|---|"]
    for b, r in sh["builds"].items():
        cells = [f"{r[w]['bytes'] / mib:.2f} MiB in {r[w]['s']:.2f} s "
                 f"(peak RSS {r[w]['rss_mib']:.1f} MiB)"
                 for w in ("main", "pin")]
        out.append(f"| {b} | {cells[0]} | {cells[1]} |")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------- report

def table(lat, one, idle, hist):
    mib = 1024 * 1024
    rows = [
        ("push-to-visible, period=1s",
         f"p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, "
         f"max {lat['max']:.2f} s over {lat['pushes']} pushes",
         "p50 <= 1.5 s"),
        (f"one-file change, {one['files']} files",
         f"{one['fetched_bytes']} bytes / {one['fetched_objects']} objects "
         f"fetched, visible in {one['visible_s']:.2f} s; repository "
         f"{one['repo_bytes'] / mib:.1f} MiB", ""),
        (f"first sync, {one['files']} files",
         f"{one['first_s']:.2f} s (fetch, hash and store every blob)", ""),
        ("no-change poll (git://)",
         f"{idle['cpu_ms_per_poll']:.2f} ms CPU per poll "
         f"({idle['polls']} polls)", ""),
        (f"first fetch, {hist['commits']} commits",
         f"{hist['first_s']:.2f} s, peak RSS {hist['rss_mib']:.1f} MiB, "
         f"{hist['fetched_bytes'] / mib:.1f} MiB fetched; repository "
         f"{hist['repo_bytes'] / mib:.1f} MiB", "whole history (no shallow)"),
    ]
    out = ["| git source | measured | note |", "|---|---|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pushes", type=int, default=25)
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--commits", type=int, default=10000)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--workdir")
    ap.add_argument("--out")
    ap.add_argument("--only", choices=["shallow"])
    ap.add_argument("--builds", default=os.environ.get("DAGFS_BUILD",
                                                       "build"))
    ap.add_argument("--blob-bytes", type=int, default=10000)
    o = ap.parse_args()
    base = pathlib.Path(o.workdir or tempfile.mkdtemp(prefix="dagfs-bgit-"))
    base.mkdir(parents=True, exist_ok=True)
    srv = Servers(base / "servers")
    if o.only == "shallow":
        try:
            t = shallow_table(bench_shallow(srv, base, o.commits,
                                            o.blob_bytes,
                                            o.builds.split(",")))
        finally:
            srv.close()
        print(t)
        if o.out:
            pathlib.Path(o.out).write_text(t)
        return
    try:
        daemon = srv.daemon()
        lat = bench_latency(srv, daemon, base, o.pushes)
        print(f"latency: {lat}", flush=True)
        one, idle = bench_onefile_and_idle(srv, daemon, base, o.files, o.idle)
        print(f"one-file: {one}\nidle: {idle}", flush=True)
        hist = bench_history(srv, daemon, base, o.commits)
        print(f"history: {hist}", flush=True)
    finally:
        srv.close()
    t = table(lat, one, idle, hist)
    print(t)
    if o.out:
        pathlib.Path(o.out).write_text(t)


if __name__ == "__main__":
    main()
