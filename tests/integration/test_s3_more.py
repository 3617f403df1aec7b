# SPDX-License-Identifier: Apache-2.0
"""More of the s3 source against the real RADOS Gateway
(tests/rigs/rgw.py): connections are kept alive (through a pass-through
TCP proxy that only counts them, a sync of many objects opens no more
connections than GETs in flight, and polls that find nothing new reuse
one); a multipart object (ETag "<md5>-<parts>", no MD5 to check) is
served whole; a key that is both a file and a directory prefix yields
the directory; temporary credentials (from the IMDS STAND-IN,
tests/rigs/aws_standin.py) are fetched again only near their expiry."""

import asyncio
import datetime
import hashlib
import re
import os
import sys
import threading
import time

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from aws_standin import AwsStandIn  # noqa: E402
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402

ENV = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
           AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")


class CountingProxy:
    """Bytes both ways, untouched; counts accepted connections."""

    def __init__(self, upstream_port):
        self.upstream = upstream_port
        self.accepted = 0
        self.port = None

    async def _pipe(self, r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            w.close()

    async def _handle(self, reader, writer):
        self.accepted += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1",
                                                   self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, uw), self._pipe(ur, writer))

    def start(self):
        ready = threading.Event()

        def run():
            self.loop = asyncio.new_event_loop()
            self.srv = self.loop.run_until_complete(asyncio.start_server(
                self._handle, "127.0.0.1", 0))
            self.port = self.srv.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def stop(self):
        async def shutdown():
            self.srv.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_connections_are_kept_alive(dagfs, rgw):
    bucket = rgw.bucket(f"conn-{os.getpid()}")
    for i in range(60):
        rgw.put(bucket, f"dags/d{i:02}.py", f"# dag {i}\n")
    proxy = CountingProxy(rgw.port).start()
    try:
        s = (f"s3:{bucket}/dags/,endpoint=http://127.0.0.1:{proxy.port},"
             f"region=us-east-1,period=200ms,parallel=8")
        m = dagfs.mount([s], env=ENV,
                        ready=lambda mnt: len(os.listdir(mnt)) == 60)
        first = proxy.accepted
        assert first <= 8 + 1, f"{first} connections for 60 GETs, 8 at a time"
        time.sleep(2.5)  # about 12 polls that find nothing new
        assert proxy.accepted - first <= 1, \
            f"{proxy.accepted - first} new connections for idle polls"
        rgw.put(bucket, "dags/new.py", "# new\n")
        m.wait(lambda: (m.mnt / "new.py").exists(), timeout=20,
               what="the new object")
        m.stop()
    finally:
        proxy.stop()


def test_multipart_object_is_served_whole(dagfs, rgw):
    bucket = rgw.bucket(f"mp-{os.getpid()}")
    key = "dags/big/model.bin"
    parts = [os.urandom(5 << 20), os.urandom(12345)]
    st, body = rgw.s3("POST", f"/{bucket}/{key}", query="uploads=")
    assert st == 200, body
    upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", body)[1].decode()
    xml = "<CompleteMultipartUpload>"
    for n, data in enumerate(parts, 1):
        st, body = rgw.s3("PUT", f"/{bucket}/{key}", data=data,
                          query=f"partNumber={n}&uploadId={upload_id}")
        assert st == 200, body
        xml += (f"<Part><PartNumber>{n}</PartNumber><ETag>\""
                f"{hashlib.md5(data).hexdigest()}\"</ETag></Part>")
    xml += "</CompleteMultipartUpload>"
    st, body = rgw.s3("POST", f"/{bucket}/{key}", data=xml.encode(),
                      query=f"uploadId={upload_id}")
    assert st == 200, body
    st, body = rgw.s3("GET", f"/{bucket}", query="list-type=2")
    assert re.search(rb"<ETag>&quot;[0-9a-f]{32}-2&quot;</ETag>|"
                     rb"<ETag>\"[0-9a-f]{32}-2\"</ETag>", body), body
    rgw.put(bucket, "dags/a.py", "# a\n")
    s = (f"s3:{bucket}/dags/,endpoint={rgw.endpoint},region=us-east-1,"
         f"period=300ms")
    m = dagfs.mount([s], env=ENV,
                    ready=lambda mnt: (mnt / "big" / "model.bin").exists())
    got = (m.mnt / "big" / "model.bin").read_bytes()
    assert got == b"".join(parts)


def test_file_and_directory_prefix_directory_wins(dagfs, rgw):
    bucket = rgw.bucket(f"fd-{os.getpid()}")
    rgw.put(bucket, "dags/x", "a file named x\n")
    rgw.put(bucket, "dags/x/y.py", "# y\n")
    rgw.put(bucket, "dags/z.py", "# z\n")
    s = (f"s3:{bucket}/dags/,endpoint={rgw.endpoint},region=us-east-1,"
         f"period=300ms")
    m = dagfs.mount([s], env=ENV,
                    ready=lambda mnt: (mnt / "z.py").exists())
    assert (m.mnt / "x").is_dir()
    assert (m.mnt / "x" / "y.py").read_text() == "# y\n"
    assert "x is both a file and a directory" in m.stderr_text()


def _in(minutes):
    return (datetime.datetime.utcnow() + datetime.timedelta(
        minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_temporary_credentials_refreshed_before_expiry(dagfs, rgw, tmp_path):
    bucket = rgw.bucket(f"exp-{os.getpid()}")
    rgw.put(bucket, "dags/a.py", "# a\n")
    imds = AwsStandIn(ACCESS_KEY, SECRET_KEY).start()
    imds.expires = _in(2)  # inside the refresh margin: every poll renews
    env = {k: v for k, v in ENV.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)

    def fetches():
        return sum(1 for c in imds.calls if c[0] == "imds-token")
    try:
        s = (f"s3:{bucket}/dags/,endpoint={rgw.endpoint},region=us-east-1,"
             f"period=200ms")
        m = dagfs.mount([s], env=env,
                        ready=lambda mnt: (mnt / "a.py").exists())
        m.wait(lambda: fetches() >= 4, timeout=10,
               what="credentials about to expire fetched again")
        imds.expires = _in(60)
        time.sleep(0.5)  # a fetch in flight at the switch settles
        n = fetches()
        time.sleep(2)  # ~10 polls
        assert fetches() == n, "fresh credentials fetched again"
        assert (m.mnt / "a.py").read_text() == "# a\n"
        assert SECRET_KEY not in m.stderr_text()
    finally:
        imds.stop()
