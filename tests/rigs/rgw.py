# SPDX-License-Identifier: Apache-2.0
"""A real S3 server on loopback for the tests and benchmarks: Ceph's
RADOS Gateway from Debian's packages (ceph-mon, ceph-osd, radosgw), one
monitor, one OSD on the in-memory object store, pools of size 1, auth
none, radosgw's beast frontend on a free loopback port, and an S3 user
with known keys. Everything lives in a temporary directory and stops
with stop(). Start-up takes a few seconds.

    rgw = Rgw(); rgw.start()
    rgw.s3("PUT", "/bucket")                    # SigV4-signed with curl
    rgw.put("bucket", "key", b"bytes")
    rgw.stop()
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import uuid

ACCESS_KEY = "DAGFSTESTACCESSKEY01"
SECRET_KEY = "dagfs-test-secret-key-0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rgw:
    def __init__(self, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="dagfs-rgw-")
        self.procs = []
        self.port = None
        self.endpoint = None

    def _conf(self, mon_port):
        d = self.dir
        return f"""[global]
fsid = {uuid.uuid4()}
mon host = v2:127.0.0.1:{mon_port}
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms bind ipv6 = false
osd pool default size = 1
osd pool default min size = 1
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
paxos propose interval = 0.05
# a killed gateway leaves watches that block its successor until they time
# out (30 s by default); clients ping them every objecter tick
osd client watch timeout = 5
objecter tick interval = 1
run dir = {d}/run
log file = {d}/log/$name.log
admin socket = {d}/run/$name.asok
pid file = {d}/run/$name.pid
osd objectstore = memstore
memstore device bytes = 2147483648
osd data = {d}/osd
mon data = {d}/mon
[client]
ms mon client mode = crc
rgw data = {d}/rgw
rgw enable usage log = false
"""

    def _ceph(self, *args, timeout=30):
        return subprocess.run(["ceph", "-c", self.conf, *args],
                              capture_output=True, text=True,
                              timeout=timeout, check=True).stdout

    def start(self):
        d = self.dir
        for sub in ("mon", "osd", "run", "log", "rgw"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        mon_port = free_port()
        self.conf = os.path.join(d, "ceph.conf")
        with open(self.conf, "w") as f:
            f.write(self._conf(mon_port))
        monmap = os.path.join(d, "monmap")
        fsid = [l.split("=")[1].strip() for l in open(self.conf)
                if l.startswith("fsid")][0]
        subprocess.run(["monmaptool", "--create", "--addv", "a",
                        f"[v2:127.0.0.1:{mon_port}]", "--fsid", fsid, monmap],
                       check=True, capture_output=True)
        subprocess.run(["ceph-mon", "-c", self.conf, "--mkfs", "-i", "a",
                        "--monmap", monmap], check=True, capture_output=True)
        subprocess.run(["ceph-mon", "-c", self.conf, "-i", "a"], check=True,
                       capture_output=True)
        osd_id = self._ceph("osd", "create").strip()
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", osd_id, "--mkfs"],
                       check=True, capture_output=True)
        self._ceph("osd", "crush", "add", f"osd.{osd_id}", "1.0",
                   "host=localhost", "root=default")
        subprocess.run(["ceph-osd", "-c", self.conf, "-i", osd_id],
                       check=True, capture_output=True)
        self.start_gateway()
        subprocess.run(["radosgw-admin", "-c", self.conf, "user", "create",
                        "--uid=dagfs", "--display-name=dagfs",
                        f"--access-key={ACCESS_KEY}",
                        f"--secret-key={SECRET_KEY}"], check=True,
                       capture_output=True, timeout=60)
        return self

    def start_gateway(self, port=None):
        """(Re)start radosgw; on the same port when restarting."""
        self.port = port or self.port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        p = subprocess.Popen(
            ["radosgw", "-c", self.conf, "-n", "client.rgw", "-f",
             f"--rgw-frontends=beast endpoint=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.gateway = p
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2):
                    break
            except OSError:
                if p.poll() is not None:
                    raise RuntimeError("radosgw exited at start")
                time.sleep(0.1)
        else:
            raise RuntimeError("radosgw did not listen within 60 s")
        # wait until it answers S3 (pools are created on first use)
        while time.monotonic() < deadline:
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                                "%{http_code}", self.endpoint + "/"],
                               capture_output=True, text=True)
            if r.stdout == "200":
                return
            time.sleep(0.2)
        raise RuntimeError("radosgw did not answer within 60 s")

    def kill_gateway(self):
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait()

    def s3(self, method, path, data=None, key=ACCESS_KEY, secret=SECRET_KEY,
           query=""):
        """One SigV4-signed request with curl; returns (status, body)."""
        cmd = ["curl", "-s", "-X", method, "--aws-sigv4",
               "aws:amz:us-east-1:s3", "--user", f"{key}:{secret}",
               "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
               "-w", "\n%{http_code}"]
        if data is not None:
            cmd += ["--data-binary", "@-"]
        url = self.endpoint + urllib.parse.quote(path, safe="/")
        if query:
            url += "?" + query
        r = subprocess.run(cmd + [url], input=data, capture_output=True)
        body, _, code = r.stdout.rpartition(b"\n")
        return int(code or 0), body

    def bucket(self, name):
        status, body = self.s3("PUT", f"/{name}")
        assert status == 200, body
        return name

    def put(self, bucket, key, data):
        if isinstance(data, str):
            data = data.encode()
        status, body = self.s3("PUT", f"/{bucket}/{key}", data=data)
        assert status == 200, (key, body)

    def delete(self, bucket, key):
        status, body = self.s3("DELETE", f"/{bucket}/{key}")
        assert status in (200, 204), body

    def stop(self):
        for name in ("radosgw", "ceph-osd", "ceph-mon"):
            pids = subprocess.run(["pgrep", "-f", f"{name} -c {self.conf}"],
                                  capture_output=True, text=True).stdout
            for pid in pids.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)
