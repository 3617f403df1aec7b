#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""S3 benchmark, side by side on one RADOS Gateway bucket (tests/rigs):

  bench_s3.py sync  [--files 10000]   initial sync: dagfs vs `rclone copy`
  bench_s3.py latency [--puts 20]     put-to-visible: dagfs vs s3fs vs rclone mount
  bench_core.py --plugin bench_s3 --targets native,dagfs-s3,s3fs,rclone \
      --sizes 2000                    the Airflow-like scan over each

The scan targets upload the corpus to the bucket once (with rclone) and
present it through dagfs (s3 source), s3fs-fuse and rclone mount.
"""

import argparse
import atexit
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "rigs"))
sys.path.insert(0, str(HERE.parent / "integration"))
import bench_core  # noqa: E402
from conftest import Dagfs, dagfs_binary, proc_status  # noqa: E402
from rgw import ACCESS_KEY, SECRET_KEY, Rgw  # noqa: E402

_rgw = None


def rgw():
    global _rgw
    if _rgw is None:
        _rgw = Rgw().start()
        atexit.register(_rgw.stop)  # also when loaded as a plugin
    return _rgw


def rclone_env(r):
    env = dict(os.environ)
    # rclone fails outright on a custom CA bundle with plain HTTP
    env.pop("AWS_CA_BUNDLE", None)
    return dict(env, RCLONE_CONFIG_RGW_TYPE="s3",
                RCLONE_CONFIG_RGW_PROVIDER="Ceph",
                RCLONE_CONFIG_RGW_ENDPOINT=r.endpoint,
                RCLONE_CONFIG_RGW_ACCESS_KEY_ID=ACCESS_KEY,
                RCLONE_CONFIG_RGW_SECRET_ACCESS_KEY=SECRET_KEY,
                RCLONE_CONFIG_RGW_REGION="us-east-1")


def upload(corpus, bucket):
    r = rgw()
    r.bucket(bucket)
    subprocess.run(["rclone", "copy", "--transfers", "32", str(corpus),
                    f"rgw:{bucket}/dags"], env=rclone_env(r), check=True)


def s3_env():
    return dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
                AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                AWS_EC2_METADATA_DISABLED="true")


def dagfs_spec(bucket, period="10s"):
    return (f"s3:{bucket}/dags/,endpoint={rgw().endpoint},region=us-east-1,"
            f"name=bench,period={period}")


class S3Target(bench_core.Target):
    """The corpus in a bucket, presented by a FUSE client at self.mnt."""

    def prepare(self):
        self.bucket = f"bench-{self.corpus.name}"
        marker = self.workdir / f"{self.bucket}.uploaded"
        if not marker.exists() or not rgw_has(self.bucket):
            upload(self.corpus, self.bucket)
            marker.touch()
        self.mnt = self.workdir / f"mnt-{self.name}-{self.corpus.name}"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.start()

    @property
    def path(self):
        return self.mnt

    def fresh(self):
        self.stop()
        self.start()

    def close(self):
        self.stop()


def rgw_has(bucket):
    return rgw().s3("GET", f"/{bucket}", query="list-type=2&max-keys=1")[0] == 200


class DagfsS3(S3Target):
    name = "dagfs-s3"

    def start(self):
        self.cache = self.workdir / f"cache-s3-{self.corpus.name}"
        self.m = Dagfs(self.mnt, self.cache, [dagfs_spec(self.bucket)],
                       env=s3_env(),
                       stderr_path=self.workdir / "dagfs-s3.stderr")
        self.m.start(timeout=900, ready=lambda mnt: len(os.listdir(mnt)) > 0)

    def stop(self):
        self.m.stop()

    def peak_rss_kib(self):
        return proc_status(self.m.pid, "VmHWM")


class S3fs(S3Target):
    name = "s3fs"

    def start(self):
        pw = self.workdir / "s3fs.passwd"
        pw.write_text(f"{ACCESS_KEY}:{SECRET_KEY}\n")
        pw.chmod(0o600)
        subprocess.run(["s3fs", f"{self.bucket}:/dags", str(self.mnt), "-o",
                        f"url={rgw().endpoint},use_path_request_style,"
                        f"passwd_file={pw},endpoint=us-east-1,ro"],
                       check=True)
        wait_mounted(self.mnt)

    def stop(self):
        subprocess.run(["fusermount", "-u", str(self.mnt)])


class RcloneMount(S3Target):
    name = "rclone"

    def start(self):
        self.p = subprocess.Popen(
            ["rclone", "mount", "--read-only", f"rgw:{self.bucket}/dags",
             str(self.mnt)], env=rclone_env(rgw()),
            stderr=subprocess.DEVNULL)
        wait_mounted(self.mnt)

    def stop(self):
        subprocess.run(["fusermount", "-u", str(self.mnt)])
        self.p.wait(timeout=30)


def wait_mounted(mnt, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.ismount(mnt) and os.listdir(mnt):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{mnt} not mounted")


bench_core.register("dagfs-s3", DagfsS3)
bench_core.register("s3fs", S3fs)
bench_core.register("rclone", RcloneMount)


def rclone_copy(bucket, out, transfers=None):
    """Seconds for `rclone copy` of the bucket's dags/ into @out."""
    shutil.rmtree(out, ignore_errors=True)
    extra = ["--transfers", str(transfers)] if transfers else []
    t0 = time.monotonic()
    subprocess.run(["rclone", "copy", *extra, f"rgw:{bucket}/dags", str(out)],
                   env=rclone_env(rgw()), check=True)
    return time.monotonic() - t0


def dagfs_sync_once(bucket, workdir):
    """Seconds for `dagfs sync --once` of the bucket into a fresh cache."""
    cache = workdir / "dagfs-sync-cache"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(workdir / "dagfs-sync-out", ignore_errors=True)
    t0 = time.monotonic()
    subprocess.run([str(dagfs_binary()), "sync", "--once", "--materialize",
                    str(workdir / "dagfs-sync-out"), "--cache", str(cache),
                    "--source", dagfs_spec(bucket)], env=s3_env(),
                   check=True, capture_output=True)
    return time.monotonic() - t0


def bench_sync(files, workdir, rounds=3):
    """dagfs (16 GETs in flight) vs rclone copy with its defaults (4
    transfers) and with as many transfers as dagfs; medians of @rounds,
    the three interleaved so load hits them alike."""
    corpus = bench_core.ensure_corpus(workdir, files, 42)
    bucket = f"sync-{files}"
    if not rgw_has(bucket):
        upload(corpus, bucket)
    out = workdir / "rclone-copy"
    times = {"dagfs": [], "rclone": [], "rclone16": []}
    for _ in range(rounds):
        times["dagfs"].append(dagfs_sync_once(bucket, workdir))
        times["rclone"].append(rclone_copy(bucket, out))
        times["rclone16"].append(rclone_copy(bucket, out, 16))
    d, c, c16 = (statistics.median(times[k])
                 for k in ("dagfs", "rclone", "rclone16"))
    print(f"| initial sync of {files} objects, median of {rounds} | dagfs "
          f"{d:.2f} s | rclone copy {c:.2f} s ({d / c:.2f}x) | rclone copy "
          f"--transfers 16 {c16:.2f} s ({d / c16:.2f}x) |")


def wait_content(path, want, cap):
    """Seconds until @path reads @want, or None past @cap seconds."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < cap:
        try:
            if path.read_text() == want:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.01)
    return None


def latency_clients(bucket, workdir):
    """Each client mounted on the latency bucket, default cache settings
    but dagfs's period (1 s)."""
    lat_corpus = workdir / "lat-corpus"
    lat_corpus.mkdir(exist_ok=True)
    dg = DagfsS3(lat_corpus, workdir, None)
    dg.bucket = bucket
    dg.mnt = workdir / "lat-dagfs"
    dg.mnt.mkdir(parents=True, exist_ok=True)
    dg.m = Dagfs(dg.mnt, workdir / "lat-cache", [dagfs_spec(bucket, "1s")],
                 env=s3_env(), stderr_path=workdir / "lat.stderr")
    dg.m.start(ready=lambda p: (p / "probe.py").exists())
    clients = {"dagfs (period=1s)": dg}
    for cls in (S3fs, RcloneMount):
        t = cls(lat_corpus, workdir, None)
        t.bucket = bucket
        t.mnt = workdir / f"lat-{t.name}"
        t.mnt.mkdir(parents=True, exist_ok=True)
        t.start()
        clients[f"{t.name} (defaults)"] = t
    return clients


def bench_latency(puts, workdir, cap=30.0):
    """Seconds from a PUT returning to the new content being readable."""
    bucket = "latency"
    if not rgw_has(bucket):
        rgw().bucket(bucket)
    rgw().put(bucket, "dags/probe.py", "v0\n")
    clients = latency_clients(bucket, workdir)
    seq = 0
    try:
        for name, t in clients.items():
            lat, stale = [], 0
            for _ in range(puts):
                seq += 1
                rgw().put(bucket, "dags/probe.py", f"v{seq}\n")
                d = wait_content(t.mnt / "probe.py", f"v{seq}\n", cap)
                if d is None:
                    stale += 1
                else:
                    lat.append(d)
            lat.sort()
            if lat:
                print(f"| put-to-visible, {name} | p50 "
                      f"{statistics.median(lat):.2f} s | p95 "
                      f"{lat[int(0.95 * (len(lat) - 1))]:.2f} s | "
                      f"{stale} of {puts} not visible within {cap:.0f} s |",
                      flush=True)
            else:
                print(f"| put-to-visible, {name} | none of {puts} visible "
                      f"within {cap:.0f} s | | |", flush=True)
    finally:
        for t in clients.values():
            t.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sync", "latency"])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--puts", type=int, default=20)
    ap.add_argument("--cap", type=float, default=30.0,
                    help="latency: give up on one put after this many s")
    ap.add_argument("--workdir", default="/var/tmp/dagfs-bench")
    o = ap.parse_args()
    wd = pathlib.Path(o.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    if o.what == "sync":
        bench_sync(o.files, wd)
    else:
        bench_latency(o.puts, wd, o.cap)


if __name__ == "__main__":
    main()
