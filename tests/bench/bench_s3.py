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
    return _rgw


def rclone_env(r):
    return dict(os.environ, RCLONE_CONFIG_RGW_TYPE="s3",
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


def bench_sync(files, workdir):
    corpus = bench_core.ensure_corpus(workdir, files, 42)
    bucket = f"sync-{files}"
    if not rgw_has(bucket):
        upload(corpus, bucket)
    rows = []
    for rnd in range(3):
        out = workdir / "rclone-copy"
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.monotonic()
        subprocess.run(["rclone", "copy", f"rgw:{bucket}/dags", str(out)],
                       env=rclone_env(rgw()), check=True)
        t_rclone = time.monotonic() - t0
        cache = workdir / "dagfs-sync-cache"
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(workdir / "dagfs-sync-out", ignore_errors=True)
        t0 = time.monotonic()
        subprocess.run([str(dagfs_binary()), "sync", "--once", "--materialize",
                        str(workdir / "dagfs-sync-out"), "--cache", str(cache),
                        "--source", dagfs_spec(bucket)], env=s3_env(),
                       check=True, capture_output=True)
        t_dagfs = time.monotonic() - t0
        rows.append((t_dagfs, t_rclone))
    d = statistics.median(r[0] for r in rows)
    c = statistics.median(r[1] for r in rows)
    print(f"| initial sync of {files} objects | dagfs {d:.2f} s | rclone copy "
          f"{c:.2f} s | {d / c:.2f}x |")


def bench_latency(puts, workdir):
    """Seconds from a PUT returning to the new content being readable."""
    bucket = "latency"
    if not rgw_has(bucket):
        rgw().bucket(bucket)
    rgw().put(bucket, "dags/probe.py", "v0\n")
    clients = {}
    mnt = workdir / "lat-dagfs"
    mnt.mkdir(parents=True, exist_ok=True)
    m = Dagfs(mnt, workdir / "lat-cache", [dagfs_spec(bucket, "1s")],
              env=s3_env(), stderr_path=workdir / "lat.stderr")
    m.start(ready=lambda p: (p / "probe.py").exists())
    clients["dagfs (period=1s)"] = mnt
    try:
        for name, path in clients.items():
            lat = []
            for i in range(1, puts + 1):
                rgw().put(bucket, "dags/probe.py", f"v{i}\n")
                t0 = time.monotonic()
                while True:
                    try:
                        if (path / "probe.py").read_text() == f"v{i}\n":
                            break
                    except OSError:
                        pass
                    time.sleep(0.01)
                lat.append(time.monotonic() - t0)
            lat.sort()
            print(f"| put-to-visible, {name} | p50 {statistics.median(lat):.2f} s"
                  f" | p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} s |")
    finally:
        m.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["sync", "latency"])
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--puts", type=int, default=20)
    ap.add_argument("--workdir", default="/var/tmp/dagfs-bench")
    o = ap.parse_args()
    wd = pathlib.Path(o.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    try:
        if o.what == "sync":
            bench_sync(o.files, wd)
        else:
            bench_latency(o.puts, wd)
    finally:
        if _rgw:
            _rgw.stop()


if __name__ == "__main__":
    main()
