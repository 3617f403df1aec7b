# SPDX-License-Identifier: Apache-2.0
"""A long sync shows its progress (sidecar/progress.c, struct
source_progress): status.json and `dagfs status` while a mount's first S3
sync runs, and the updating line of `dagfs sync --once` on a terminal (a
pty) against plain log lines when stderr is a file. The S3 server is the
RADOS Gateway rig; a fault proxy in front delays each object's GET so
that the sync lasts long enough to be watched."""

import concurrent.futures
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest

from conftest import REPO, dagfs_binary, source_status

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from faultproxy import FaultProxy  # noqa: E402
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402

ENV = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
           AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")
N = 120  # objects
DELAY = 0.04  # seconds the proxy holds each object's GET


@pytest.fixture
def slow_bucket(rgw):
    """A bucket of N objects and a proxy that delays every object GET:
    yields (bucket, proxy endpoint)."""
    name = f"prog-{os.getpid()}-{time.monotonic_ns() % 100000}"
    b = rgw.bucket(name)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: rgw.put(b, f"dags/d{i:03}.py",
                                        f"x = {i}\n" * 300), range(N)))
    proxy = FaultProxy(rgw.port, plan=["stall"], stall_s=DELAY,
                       match="/dags/d").start()
    try:
        yield b, f"http://127.0.0.1:{proxy.port}"
    finally:
        proxy.stop()


def spec(bucket, endpoint):
    return (f"s3:{bucket}/dags/,endpoint={endpoint},region=us-east-1,"
            f"parallel=1,name=big")


def test_status_shows_a_sync_in_flight(dagfs, slow_bucket):
    """While the first sync runs, status.json's progress counts objects
    of the known total upwards and `dagfs status` prints it; once
    published, progress is null and the status says nothing of it."""
    bucket, endpoint = slow_bucket
    m = dagfs.mount([spec(bucket, endpoint)], env=ENV, ready=None,
                    args=["--status-interval", "100ms"])
    seen = []

    def moving():
        p = source_status(m, "big").get("progress")
        if p and 0 < p["objects"] < N:
            if not seen or p["objects"] > seen[-1]["objects"]:
                seen.append(p)
        return len(seen) >= 3

    m.wait(moving, 30, what="progress moving in status.json")
    assert all(p["objects_total"] == N for p in seen), seen
    assert all(p["bytes_total"] == sum(len(f"x = {i}\n" * 300)
                                       for i in range(N)) for p in seen)
    assert seen[0]["bytes"] < seen[-1]["bytes"] <= seen[-1]["bytes_total"]
    out = dagfs.run(["status", "--cache", m.cache])
    match = re.search(r"syncing: (\d+)/(\d+) objects, .* of .*/s", out.stdout)
    assert match and int(match[2]) == N, out.stdout
    assert 0 < int(match[1]) <= N
    js = json.loads(dagfs.run(["status", "--cache", m.cache,
                               "--json"]).stdout)
    p = js["sources"][0]["progress"]
    assert p is None or (p["objects_total"] == N and p["elapsed_s"] > 0), p
    m.wait(lambda: source_status(m, "big").get("revision"), 60,
           what="the first revision")
    m.wait(lambda: source_status(m, "big").get("progress", 0) is None, 10,
           what="progress null after the sync")
    assert "syncing:" not in dagfs.run(["status", "--cache",
                                        m.cache]).stdout


def run_sync(dagfs, bucket, endpoint, tty):
    """`dagfs sync --once` with stderr on a pty (tty) or a pipe: (rc,
    stderr bytes)."""
    out = dagfs.path("out")
    argv = [str(dagfs_binary()), "sync", "--once", "--materialize", str(out),
            "--cache", str(dagfs.path("cache")), "--source",
            spec(bucket, endpoint)]
    if not tty:
        r = subprocess.run(argv, env=ENV, capture_output=True, timeout=120)
        return r.returncode, r.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    got = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            got += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(10), got


def test_sync_once_draws_one_updating_line_on_a_terminal(dagfs, slow_bucket):
    """On a terminal the progress is one line redrawn in place (carriage
    return, erase line) with the objects of the total and a rate, and is
    erased at the end; with stderr not a terminal there is no such line
    and no per-object log line: a short sync logs no progress at all."""
    bucket, endpoint = slow_bucket
    rc, err = run_sync(dagfs, bucket, endpoint, tty=True)
    assert rc == 0, err[-2000:]
    # every draw erases the line first; log lines come the same way
    # (erase, the line, then the progress again under it)
    draws = re.findall(rb"\r\x1b\[K([^\r\n]*)", err)
    lines = [d for d in draws if d.startswith(b"big: ")]
    assert b"fetching %d of %d objects" % (N, N) in err
    counts = [int(x) for x in re.findall(rb"big: (\d+)/%d objects" % N,
                                         b"\n".join(lines))]
    assert len(counts) >= 3, err[-2000:]
    assert counts == sorted(counts) and counts[0] < counts[-1], counts
    assert all(re.search(rb"/s, \d+s$", d) for d in lines), lines[:3]
    assert draws[-1] == b"", "the line is not erased at the end"
    # a second run into a fresh cache, stderr a pipe
    for p in ("out", "cache"):
        subprocess.run(["rm", "-rf", str(dagfs.path(p))], check=True)
    t0 = time.monotonic()
    rc, err = run_sync(dagfs, bucket, endpoint, tty=False)
    took = time.monotonic() - t0
    assert rc == 0, err[-2000:]
    assert b"\r" not in err and b"\x1b[" not in err
    assert err.count(b"syncing:") <= took // 10, err[-2000:]
