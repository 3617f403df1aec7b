#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Scale benchmark of the served store (issue 13): one publisher over a
git source (smart HTTP, lighttpd + git http-backend) or, with --upstream
s3, an S3 prefix (Ceph's RADOS Gateway), behind a counting TCP proxy,
and --mirrors (default 30) `dagfs:` mirror daemons on loopback, each
with its own cache and FUSE mount; then, in the same run, the same
number of daemons each fetching from the upstream directly.

Measured:
  exact      every mirror byte-exact with the publisher (at start, end)
  lag        per push: each mirror's swap minus the publisher's own swap
             (both from the daemons' log timestamps), p50/p95/max
  visible    push -> every daemon serving it, fanout vs direct
  upstream   requests at the git server (ref listings, packs) or the
             gateway (listings and marker reads, object GETs) per push
             and per minute idle, fanout vs direct (S3 changes are
             published atomically with marker=, written last)
  bytes      bytes the mirrors fetched per push against the changed
             blobs x mirrors; bytes the publisher served
  publisher  RSS and CPU (utime+stime over --idle s) with every
             long-poll open
  restart    a mirror SIGKILLed, a push, the mirror started again: time
             to serving the push
  pubdown    publisher SIGKILLed: mirrors keep serving; a push; the
             publisher back: time to every mirror serving it
  corrupt    a mirror behind the fault proxy flipping one bit of one blob
             in five: refused, fetched again, byte-exact

The machine's load is part of every figure: `uptime` is recorded.
Usage: bench_fanout.py [--upstream git|s3] [--mirrors 30] [--pushes 5]
                       [--files 200] [--idle 10] [--workdir DIR]
                       [--out FILE.json]
"""

import argparse
import datetime
import json
import os
import pathlib
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "rigs"))

from conftest import Dagfs, proc_status, served, source_status  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from git_servers import Servers, free_port  # noqa: E402
from rgw import ACCESS_KEY, SECRET_KEY, Rgw  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
          "AWS_EC2_METADATA_DISABLED": "true"}

PUBLISHED = re.compile(r"^(\S+Z) dagfs notice: \w+ source (\S+): published "
                       r"revision (\S+)", re.M)
NAME = "dags"
MARKER = "_dagfs/commit"  # S3: written after the objects of each change


def uptime():
    return subprocess.run(["uptime"], capture_output=True,
                          text=True).stdout.strip()


def wall(ts):
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def swap_time(m, rev):
    """Wall time of @m's first 'published revision @rev' line, or None."""
    for ts, _, r in PUBLISHED.findall(m.stderr_text()):
        if r == rev:
            return wall(ts)
    return None


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rpartition(")")[2].split()
    return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def stats(v):
    return {"p50": round(pct(v, 50), 3), "p95": round(pct(v, 95), 3),
            "max": round(max(v), 3), "n": len(v)}


def metric(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


class Bench:
    def __init__(self, a):
        self.a = a
        self.base = pathlib.Path(a.workdir or tempfile.mkdtemp(
            prefix="fanout-bench-"))
        self.s3 = a.upstream == "s3"
        if self.s3:
            self.rgw = Rgw(str(self.base / "rgw")).start()
            self.bucket = self.rgw.bucket("dags")
            up_port = self.rgw.port
        else:
            self.servers = Servers(self.base / "git")
            self.http = self.servers.http()
            self.repo = self.servers.repo("dags")
            up_port = self.http.port
        self.proxy = FaultProxy(up_port).start()
        self.daemons = []
        self.res = {"uptime_start": uptime(), "mirrors": a.mirrors,
                    "upstream": a.upstream}
        keys = self.base / "keys"
        keys.mkdir()
        self.sk, self.pk = keys / "signing.pem", keys / "signing.pub"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519",
                        "-out", str(self.sk)], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(self.sk), "-pubout",
                        "-out", str(self.pk)], check=True, capture_output=True)

    # ------------------------------------------------------- helpers
    def daemon(self, name, spec, args=(), cache=None):
        d = self.base / name
        (d / "mnt").mkdir(parents=True, exist_ok=True)
        m = Dagfs(d / "mnt", cache or d / "cache", [spec],
                  args=["--status-interval", "200ms"] + list(args),
                  stderr_path=d / f"stderr.{len(self.daemons)}",
                  env=S3_ENV if self.s3 and spec.startswith("s3:") else None)
        self.daemons.append(m)
        return m

    def git_spec(self, period="1s"):
        """The publisher's (and the direct daemons') upstream source."""
        if self.s3:
            return (f"s3:{self.bucket}/p/,endpoint=http://127.0.0.1:"
                    f"{self.proxy.port},region=us-east-1,name={NAME},"
                    f"period={period},marker={MARKER}")
        url = f"http://127.0.0.1:{self.proxy.port}/git/{self.repo.name}.git"
        return (f"git:{url},name={NAME},period={period},username=dagfs,"
                f"password-file={self.http.password_file}")

    def requests(self):
        """(listings, fetches) the upstream saw: git ref advertisements
        and packs, or S3 listings and object GETs."""
        r = list(self.proxy.requests)
        if self.s3:
            marker = f"/{self.bucket}/p/{MARKER}"
            return (sum("list-type=2" in x or marker in x for x in r),
                    sum(x.startswith(f"GET /{self.bucket}/") and
                        marker not in x for x in r))
        return (sum("/info/refs" in x for x in r),
                sum("/git-upload-pack" in x for x in r))

    def write(self, rel, data):
        if self.s3:
            self.rgw.put(self.bucket, "p/" + rel, data)
        else:
            self.repo.write(rel, data)

    def push_rev(self, who, before, i):
        """The revision of the first publication in @who's log past the
        first @before."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            lines = PUBLISHED.findall(who.stderr_text())
            if len(lines) > before:
                return lines[before][2]
            time.sleep(0.05)
        raise AssertionError(f"push {i}: no new revision published")

    def push(self, i, nfiles=3, who=None, wait=True):
        """Change @nfiles files (one new): returns (revision, changed
        bytes). S3 revisions are the daemons' own listing digests: the
        one @who (the publisher by default) publishes next."""
        rnd = random.Random(i)
        changed = 0
        who = who or self.pub
        before = len(PUBLISHED.findall(who.stderr_text())) if wait else 0
        for k in range(nfiles - 1):
            data = rnd.randbytes(8192).hex().encode()
            self.write(f"dags/d{rnd.randrange(self.a.files)}.py", data)
            changed += len(data)
        data = f"# new in push {i}\n".encode() * 100
        self.write(f"dags/new_{i}.py", data)
        changed += len(data)
        if not self.s3:
            return self.repo.commit(f"push {i}"), changed
        self.write(MARKER, f"push {i}".encode())
        if not wait:
            return None, changed
        return self.push_rev(who, before, i), changed

    def wait_all(self, ms, rev, timeout=60):
        deadline = time.monotonic() + timeout
        left = list(ms)
        while left and time.monotonic() < deadline:
            left = [m for m in left if swap_time(m, rev) is None]
            for m in left:
                m.check_alive()
            time.sleep(0.05)
        assert not left, f"{len(left)} daemons never showed {rev}"

    def exact(self, ms, ref):
        want = served(ref.mnt)
        bad = [str(m.mnt) for m in ms if served(m.mnt) != want]
        assert not bad, f"not byte-exact: {bad[:3]}"
        return len(want)

    # -------------------------------------------------------- phases
    def corpus(self):
        for i in range(self.a.files):
            self.write(f"dags/d{i}.py",
                       f"# dag {i}\n".encode() * (20 + i % 50))
        if self.s3:
            self.write(MARKER, b"corpus")
        else:
            self.repo.commit("corpus")

    def start_publisher(self, cache=None):
        self.pport = getattr(self, "pport", None) or free_port()
        p = self.daemon("pub", self.git_spec(),
                        ["--http", f"127.0.0.1:{self.pport}", "--serve",
                         "--serve-key-file", str(self.sk)], cache=cache)
        p.start(ready=lambda mnt: (mnt / "dags/d0.py").exists(), timeout=120)
        self.pub = p
        return p

    def start_mirrors(self):
        store = f"http://127.0.0.1:{self.pport}/store"
        spec = f"dagfs:{store},source={NAME},public-key={self.pk}"
        t0 = time.monotonic()
        ms = [self.daemon(f"m{i}", spec) for i in range(self.a.mirrors)]
        for m in ms:
            m.start(wait_mounted=False)
        for m in ms:
            m.wait_live(lambda mnt: (mnt / "dags/d0.py").exists(), 180)
        self.res["mirrors_ready_s"] = round(time.monotonic() - t0, 2)
        self.res["files"] = self.exact(ms, self.pub)
        self.mirrors = ms
        return ms

    def fanout_pushes(self):
        ms, pub = self.mirrors, self.pub
        time.sleep(2)  # every long-poll open
        self.res["waiting_long_polls"] = metric(self.pport,
                                                "dagfs_serve_waiting")
        c0, rss0 = cpu_s(pub.pid), proc_status(pub.pid, "VmRSS")
        r0 = self.requests()
        time.sleep(self.a.idle)
        self.res["publisher_idle"] = {
            "cpu_s_per_s": round((cpu_s(pub.pid) - c0) / self.a.idle, 4),
            "rss_kib": proc_status(pub.pid, "VmRSS"), "rss_kib_before": rss0,
            "hwm_kib": proc_status(pub.pid, "VmHWM"),
            "long_polls": metric(self.pport, "dagfs_serve_waiting"),
            "uptime": uptime()}
        r1 = self.requests()
        self.res["fanout_upstream_idle_per_min"] = {
            "listings": round((r1[0] - r0[0]) * 60 / self.a.idle, 1),
            "fetches": round((r1[1] - r0[1]) * 60 / self.a.idle, 1)}
        lags, vis, per_push = [], [], []
        for i in range(self.a.pushes):
            time.sleep(random.Random(i).uniform(0.2, 1.0))
            b0 = [source_status(m, NAME).get("bytes_fetched", 0) for m in ms]
            s0 = metric(self.pport, "dagfs_serve_bytes_total")
            r0 = self.requests()
            t_push = time.time()
            rev, changed = self.push(i)
            if not self.s3:
                t_push = time.time()  # the commit and push are done
            self.wait_all([pub] + ms, rev)
            tp = swap_time(pub, rev)
            lag = [swap_time(m, rev) - tp for m in ms]
            lags += lag
            vis.append(max(lag) + tp - t_push)
            time.sleep(0.5)  # status.json catches up
            r1 = self.requests()
            b1 = [source_status(m, NAME).get("bytes_fetched", 0) for m in ms]
            per_push.append({
                "changed_bytes": changed,
                "mirror_bytes": sum(b1) - sum(b0),
                "expected": changed * len(ms),
                "served_bytes": metric(self.pport, "dagfs_serve_bytes_total")
                - s0,
                "upstream_listings": r1[0] - r0[0],
                "upstream_fetches": r1[1] - r0[1],
                "publisher_swap_after_push_s": round(tp - t_push, 3)})
        self.res["lag_vs_publisher_s"] = stats(lags)
        self.res["fanout_push_to_all_s"] = stats(vis)
        self.res["per_push"] = per_push
        self.res["uptime_pushes"] = uptime()
        self.exact(ms, pub)

    def restart_mirror(self):
        m = self.mirrors[0]
        m.proc.kill()
        m.proc.wait()
        rev, _ = self.push(100)
        self.wait_all([self.pub], rev)
        again = self.daemon("m0", m.sources[0], cache=m.cache)
        again.mnt = m.mnt
        t0 = time.monotonic()
        again.start(wait_mounted=False)
        self.wait_all([again], rev)
        self.res["mirror_restart_catch_up_s"] = round(
            time.monotonic() - t0, 3)
        self.mirrors[0] = again
        m.stopped = True

    def publisher_down(self):
        pub = self.pub
        pub.proc.kill()
        pub.proc.wait()
        pub.stopped = True
        subprocess.run(["fusermount3", "-u", "-z", str(pub.mnt)],
                       capture_output=True)
        time.sleep(1)
        ok = sum((m.mnt / "dags/d0.py").exists() for m in self.mirrors)
        rev, _ = self.push(200, wait=False)
        t0 = time.time()
        p2 = self.start_publisher(cache=pub.cache)
        if rev is None:  # S3: the first revision the new publisher makes
            rev = self.push_rev(p2, 0, 200)
        self.wait_all([p2] + self.mirrors, rev, 120)
        tp = swap_time(p2, rev)
        lag = [swap_time(m, rev) - tp for m in self.mirrors]
        self.res["publisher_down"] = {
            "mirrors_serving_while_down": ok,
            "publisher_back_to_swap_s": round(tp - t0, 3),
            "mirror_lag_after_back_s": stats(lag)}
        self.exact(self.mirrors, p2)

    def corrupt(self):
        fp = FaultProxy(self.pport, plan=["corrupt"] + ["pass"] * 4,
                        match="/objects/").start()
        try:
            spec = (f"dagfs:http://127.0.0.1:{fp.port}/store,source={NAME},"
                    f"public-key={self.pk}")
            m = self.daemon("corrupt", spec)
            m.start(ready=lambda mnt: (mnt / "dags/d0.py").exists(),
                    timeout=120)
            rev, _ = self.push(300)
            self.wait_all([self.pub, m], rev)
            self.exact([m], self.pub)
            self.res["corrupt"] = {
                "blobs_damaged": fp.counts["corrupt"],
                "refusals_logged": m.stderr_text().count(
                    "failed verification"),
                "byte_exact": True}
            m.stop()
        finally:
            fp.stop()

    def direct(self):
        for m in self.mirrors + [self.pub]:  # the git server sees only them
            m.stop()
        self.proxy.requests.clear()
        spec = self.git_spec()
        t0 = time.monotonic()
        ds = [self.daemon(f"g{i}", spec) for i in range(self.a.mirrors)]
        for d in ds:
            d.start(wait_mounted=False)
        for d in ds:
            d.wait_live(lambda mnt: (mnt / "dags/d0.py").exists(), 300)
        self.res["direct_ready_s"] = round(time.monotonic() - t0, 2)
        r0 = self.requests()
        time.sleep(self.a.idle)
        r1 = self.requests()
        self.res["direct_upstream_idle_per_min"] = {
            "listings": round((r1[0] - r0[0]) * 60 / self.a.idle, 1),
            "fetches": round((r1[1] - r0[1]) * 60 / self.a.idle, 1)}
        vis, packs = [], []
        for i in range(min(3, self.a.pushes)):
            time.sleep(random.Random(i).uniform(0.2, 1.0))
            r0 = self.requests()
            t_push = time.time()
            rev, _ = self.push(400 + i, who=ds[0])
            if not self.s3:
                t_push = time.time()
            self.wait_all(ds, rev, 120)
            vis.append(max(swap_time(d, rev) for d in ds) - t_push)
            time.sleep(0.5)
            packs.append(self.requests()[1] - r0[1])
        self.res["direct_push_to_all_s"] = stats(vis)
        self.res["direct_upstream_fetches_per_push"] = packs
        self.res["uptime_direct"] = uptime()
        for d in ds:
            d.stop()

    def run(self):
        try:
            self.corpus()
            self.start_publisher()
            self.start_mirrors()
            self.fanout_pushes()
            self.restart_mirror()
            self.publisher_down()
            self.corrupt()
            self.direct()
        finally:
            for m in reversed(self.daemons):
                if m.proc is not None:
                    m.stop()
            self.proxy.stop()
            if self.s3:
                self.rgw.stop()
            else:
                self.servers.close()
            if not self.a.workdir:
                shutil.rmtree(self.base, ignore_errors=True)
        self.res["uptime_end"] = uptime()
        return self.res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", choices=("git", "s3"), default="git")
    ap.add_argument("--mirrors", type=int, default=30)
    ap.add_argument("--pushes", type=int, default=5)
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--idle", type=float, default=10)
    ap.add_argument("--workdir")
    ap.add_argument("--out")
    a = ap.parse_args()
    res = Bench(a).run()
    text = json.dumps(res, indent=1)
    print(text)
    if a.out:
        pathlib.Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
