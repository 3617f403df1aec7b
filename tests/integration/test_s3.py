# SPDX-License-Identifier: Apache-2.0
"""The s3 source against a real S3 server on loopback: Ceph's RADOS
Gateway (tests/rigs/rgw.py), which verifies Signature V4 and pages
ListObjectsV2 for real. Faults come from tests/rigs/faultproxy.py; STS
and IMDS from a STAND-IN (tests/rigs/aws_standin.py), the only thing
here that is not the real service."""

import concurrent.futures
import datetime
import os
import pathlib
import signal
import ssl
import subprocess
import sys
import time

import pytest

from conftest import REPO, source_status, wait_for

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from aws_standin import AwsStandIn  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402

ENV = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
           AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")


_n = [0]


@pytest.fixture
def bucket(rgw):
    _n[0] += 1
    return rgw.bucket(f"dags-{os.getpid()}-{_n[0]}")


def spec(rgw, bucket, prefix="dags/", endpoint=None, **kw):
    s = (f"s3:{bucket}/{prefix},endpoint={endpoint or rgw.endpoint},"
         f"region=us-east-1,period=300ms")
    for k, v in kw.items():
        s += f",{k.replace('_', '-')}={v}"
    return s


def upload(rgw, bucket, files, prefix="dags/"):
    for k, v in files.items():
        rgw.put(bucket, prefix + k, v)


def served(mnt):
    out = {}
    for dirpath, _, files in os.walk(mnt):
        for f in files:
            p = pathlib.Path(dirpath) / f
            out[str(p.relative_to(mnt))] = p.read_bytes()
    return out


def want(files):
    return {k: (v.encode() if isinstance(v, str) else v)
            for k, v in files.items()}


FILES = {"a.py": "print('a')\n", "team/b.py": "import os\n",
         "team/sql/q.sql": "select 1;\n", "empty.py": ""}


def test_mount_equals_bucket(dagfs, rgw, bucket):
    upload(rgw, bucket, FILES)
    m = dagfs.mount([spec(rgw, bucket)], env=ENV,
                    ready=lambda mnt: (mnt / "team" / "sql" / "q.sql").exists())
    assert served(m.mnt) == want(FILES)
    # mtime is the object's LastModified, not the sync time
    st = os.stat(m.mnt / "a.py")
    age = time.time() - st.st_mtime
    assert 0 <= age < 120
    assert oct(st.st_mode & 0o777) == "0o644"


def test_wrong_secret_is_a_clear_error(dagfs, rgw, bucket):
    upload(rgw, bucket, FILES)
    env = dict(ENV, AWS_SECRET_ACCESS_KEY="not-the-secret-key-0000")
    m = dagfs.mount([spec(rgw, bucket, name="team-b")], env=env)
    m.wait(lambda: "SignatureDoesNotMatch" in m.stderr_text(), timeout=20,
           what="the signature error in the log")
    line = [l for l in m.stderr_text().splitlines()
            if "SignatureDoesNotMatch" in l][0]
    assert "s3 source team-b" in line and "check the secret key" in line
    assert "not-the-secret-key" not in m.stderr_text()
    assert os.listdir(m.mnt) == []


def put_many(rgw, bucket, n, prefix, tmp):
    """n objects with curl --parallel (SigV4-signed each)."""
    d = tmp / "many"
    d.mkdir()
    names = []
    for i in range(n):
        (d / f"f{i:05d}.py").write_text(f"# {i}\n")
        names.append(f"f{i:05d}.py")
    for start in range(0, n, 200):
        batch = ",".join(names[start:start + 200])
        subprocess.run(
            ["curl", "-s", "--parallel", "--parallel-max", "16", "--aws-sigv4",
             "aws:amz:us-east-1:s3", "--user", f"{ACCESS_KEY}:{SECRET_KEY}",
             "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD",
             "-T", "{" + batch + "}", f"{rgw.endpoint}/{bucket}/{prefix}"],
            cwd=d, check=True, capture_output=True)


def test_more_than_1000_keys(dagfs, rgw, bucket, tmp_path):
    put_many(rgw, bucket, 1234, "dags/many/", tmp_path)
    m = dagfs.mount([spec(rgw, bucket)], env=ENV, timeout=60,
                    ready=lambda mnt: len(os.listdir(mnt / "many")) == 1234
                    if (mnt / "many").exists() else False)
    assert (m.mnt / "many" / "f01233.py").read_text() == "# 1233\n"


def test_listing_pages_cut_short_are_never_published(dagfs, rgw, bucket,
                                                    tmp_path):
    # each page is parsed as it arrives: a page cut short mid-body (with
    # or without a Content-Length to tell) or a reset must be retried or
    # fail the round, and never leave part of a listing behind
    put_many(rgw, bucket, 1234, "dags/many/", tmp_path)
    proxy = FaultProxy(rgw.port, match="list-type=2",
                       plan=["truncate", "pass", "truncate-close",
                             "reset", "pass", "pass"]).start()
    try:
        m = dagfs.mount([spec(rgw, bucket,
                              endpoint=f"http://127.0.0.1:{proxy.port}")],
                        env=ENV, start=False)
        m.start(timeout=60, ready=lambda mnt: os.path.ismount(mnt))
        seen = set()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            d = m.mnt / "many"
            n = len(os.listdir(d)) if d.exists() else 0
            seen.add(n)
            if n == 1234:
                break
            time.sleep(0.05)
        assert seen <= {0, 1234} and 1234 in seen, seen
        assert (m.mnt / "many" / "f01233.py").read_text() == "# 1233\n"
        for f in ("truncate", "truncate-close", "reset"):
            assert proxy.counts[f] > 0, proxy.counts
        # and the revision is the listing's own: later clean polls (about
        # five) find it unchanged, which a page counted twice would not
        first = m.wait(lambda: source_status(m, "dags").get("revision") and
                       source_status(m, "dags"), what="status.json")
        n = len(proxy.requests)
        time.sleep(1.5)
        st = source_status(m, "dags")
        assert (st["revision"], st["published_ns"]) == \
            (first["revision"], first["published_ns"])
        assert len(proxy.requests) >= n + 4  # the polls' pages
    finally:
        proxy.stop()


def test_add_change_delete_propagate(dagfs, rgw, bucket):
    upload(rgw, bucket, FILES)
    m = dagfs.mount([spec(rgw, bucket)], env=ENV,
                    ready=lambda mnt: (mnt / "a.py").exists())
    rgw.put(bucket, "dags/new.py", "new\n")
    rgw.put(bucket, "dags/a.py", "changed\n")
    rgw.delete(bucket, "dags/team/b.py")
    m.wait(lambda: (m.mnt / "new.py").exists() and
           (m.mnt / "a.py").read_text() == "changed\n" and
           not (m.mnt / "team" / "b.py").exists(), timeout=20,
           what="changes visible")


HOSTILE = ["dags/../escape.py", "dags/./dot.py", "dags//empty.py",
           "dags/ctl\x01.py", "dags/" + "x" * 256 + ".py"]


def test_hostile_keys_are_skipped(dagfs, rgw, bucket):
    upload(rgw, bucket, {"ok.py": "ok\n"})
    stored = []
    for k in HOSTILE:
        r = subprocess.run(
            ["curl", "-s", "--path-as-is", "-o", "/dev/null", "-w",
             "%{http_code}", "--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
             f"{ACCESS_KEY}:{SECRET_KEY}", "-H",
             "x-amz-content-sha256: UNSIGNED-PAYLOAD", "--data-binary", "evil",
             "-X", "PUT", f"{rgw.endpoint}/{bucket}/" +
             __import__("urllib.parse").parse.quote(k, safe="/.")],
            capture_output=True, text=True)
        if r.stdout == "200":
            stored.append(k)
    assert len(stored) >= 3, "the gateway refused most hostile keys"
    m = dagfs.mount([spec(rgw, bucket)], env=ENV,
                    ready=lambda mnt: (mnt / "ok.py").exists())
    names = set(served(m.mnt))
    assert names == {"ok.py"}, names
    log = m.stderr_text()
    assert log.count("refused") >= len(stored) - 1  # "dags//" may list as "dags/"
    assert not (m.mnt.parent / "escape.py").exists()


def test_gateway_killed_then_back(dagfs, rgw, bucket):
    upload(rgw, bucket, FILES)
    m = dagfs.mount([spec(rgw, bucket, max_failures=2)], env=ENV,
                    ready=lambda mnt: (mnt / "a.py").exists())
    rgw.kill_gateway()
    try:
        m.wait(lambda: "sync failed" in m.stderr_text(), timeout=20,
               what="the failure reported")
        assert served(m.mnt) == want(FILES)  # last good stays served
    finally:
        rgw.start_gateway()
    rgw.put(bucket, "dags/after.py", "back\n")
    m.wait(lambda: (m.mnt / "after.py").exists(), timeout=60,
           what="catching up after the gateway is back")


def test_marker_publishes_atomically(dagfs, rgw, bucket):
    upload(rgw, bucket, {"a.py": "v1\n"})
    rgw.put(bucket, "dags/_dagfs/commit", "1")
    m = dagfs.mount([spec(rgw, bucket, marker="_dagfs/commit")], env=ENV,
                    ready=lambda mnt: (mnt / "a.py").exists())
    assert not (m.mnt / "_dagfs").exists() or \
        not (m.mnt / "_dagfs" / "commit").exists()
    upload(rgw, bucket, {"a.py": "v2\n", "b.py": "v2\n"})
    time.sleep(1.5)  # several polls: the marker has not moved
    assert (m.mnt / "a.py").read_text() == "v1\n"
    assert not (m.mnt / "b.py").exists()
    rgw.put(bucket, "dags/_dagfs/commit", "2")
    m.wait(lambda: (m.mnt / "b.py").exists() and
           (m.mnt / "a.py").read_text() == "v2\n", timeout=20,
           what="the revision switching with the marker")


def test_no_change_poll_costs_only_listing(dagfs, rgw, bucket):
    upload(rgw, bucket, FILES)
    proxy = FaultProxy(rgw.port).start()
    try:
        m = dagfs.mount([spec(rgw, bucket, endpoint=f"http://127.0.0.1:{proxy.port}")],
                        env=ENV, ready=lambda mnt: (mnt / "a.py").exists())
        gets = [r for r in proxy.requests if "list-type" not in r]
        assert len(gets) == len(FILES)
        n = len(proxy.requests)
        time.sleep(2)  # about 6 polls
        later = proxy.requests[n:]
        assert later and all("list-type=2" in r for r in later), later
        m.stop()
        # a restart fetches nothing again: the map and the store persist
        n = len(proxy.requests)
        m2 = dagfs.mount([spec(rgw, bucket, endpoint=f"http://127.0.0.1:{proxy.port}")],
                         cache=m.cache, env=ENV,
                         ready=lambda mnt: (mnt / "a.py").exists())
        time.sleep(1)
        assert all("list-type=2" in r for r in proxy.requests[n:])
        # the map is read from disk only now that the listing changed,
        # and it still spares every unchanged object
        n = len(proxy.requests)
        rgw.put(bucket, "dags/a.py", "changed\n")
        m2.wait(lambda: (m2.mnt / "a.py").read_text() == "changed\n",
                timeout=20, what="the change served")
        gets = [r for r in proxy.requests[n:] if "list-type" not in r]
        assert len(gets) == 1 and "/dags/a.py" in gets[0], gets
        m2.stop()
    finally:
        proxy.stop()


def test_faults_are_retried_and_nothing_corrupt(dagfs, rgw, bucket, tmp_path):
    files = {f"d{i}.py": f"# dag {i}\n" * (50 + i) for i in range(40)}
    upload(rgw, bucket, files)
    proxy = FaultProxy(rgw.port, plan=["pass", "pass", "500", "pass", "reset",
                                       "pass", "503", "pass", "truncate",
                                       "pass"]).start()
    try:
        m = dagfs.mount([spec(rgw, bucket, endpoint=f"http://127.0.0.1:{proxy.port}")],
                        env=ENV, timeout=120,
                        ready=lambda mnt: len(os.listdir(mnt)) == 40)
        assert served(m.mnt) == want(files)
        for f in ("500", "503", "reset", "truncate"):
            assert proxy.counts[f] > 0, proxy.counts
        m.stop()
    finally:
        proxy.stop()
    r = dagfs.run(["fsck", "--cache", str(m.cache)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_web_identity_through_the_sts_stand_in(dagfs, rgw, bucket, tmp_path):
    upload(rgw, bucket, FILES)
    sts = AwsStandIn(ACCESS_KEY, SECRET_KEY).start()
    tok = tmp_path / "token"
    tok.write_text("web-id-token\n")
    env = {k: v for k, v in ENV.items() if not k.startswith("AWS_")}
    env.update(AWS_WEB_IDENTITY_TOKEN_FILE=str(tok), HOME=str(tmp_path),
               AWS_ROLE_ARN="arn:aws:iam::123456789012:role/dagfs",
               AWS_STS_ENDPOINT=sts.url, AWS_EC2_METADATA_DISABLED="true")
    try:
        m = dagfs.mount([spec(rgw, bucket)], env=env,
                        ready=lambda mnt: (mnt / "a.py").exists())
        assert "credentials from the web identity" in m.stderr_text()
        assert sts.calls and sts.calls[0][0] == "sts"
        assert "web-id-token" not in m.stderr_text()
    finally:
        sts.stop()


def test_instance_metadata_through_the_imds_stand_in(dagfs, rgw, bucket,
                                                     tmp_path):
    upload(rgw, bucket, FILES)
    imds = AwsStandIn(ACCESS_KEY, SECRET_KEY).start()
    env = {k: v for k, v in ENV.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_EC2_METADATA_SERVICE_ENDPOINT=imds.url)
    try:
        m = dagfs.mount([spec(rgw, bucket)], env=env,
                        ready=lambda mnt: (mnt / "a.py").exists())
        assert "credentials from the instance metadata" in m.stderr_text()
        kinds = [c[0] for c in imds.calls]
        assert kinds[:2] == ["imds-token", "imds"]
    finally:
        imds.stop()


def test_credentials_file_and_profile(dagfs, rgw, bucket, tmp_path):
    upload(rgw, bucket, FILES)
    cred = tmp_path / "credentials"
    cred.write_text(f"[default]\naws_access_key_id = WRONG\n"
                    f"aws_secret_access_key = WRONG\n\n[dags]\n"
                    f"aws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in ENV.items() if not k.startswith("AWS_")}
    m = dagfs.mount([spec(rgw, bucket, credentials_file=cred, profile="dags")],
                    env=env, ready=lambda mnt: (mnt / "a.py").exists())
    assert served(m.mnt) == want(FILES)
    assert SECRET_KEY not in m.stderr_text()
    assert SECRET_KEY not in pathlib.Path(f"/proc/{m.pid}/cmdline").read_text()


def self_signed(tmp):
    key, crt = tmp / "tls.key", tmp / "tls.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", str(key), "-out", str(crt), "-days", "1",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    return crt, ctx


def test_tls_is_verified_and_ca_file_trusts(dagfs, rgw, bucket, tmp_path):
    """HTTPS (the fault proxy terminating TLS in front of the gateway):
    an unknown certificate is refused with a clear error, ca-file= trusts
    it."""
    upload(rgw, bucket, FILES)
    crt, ctx = self_signed(tmp_path)
    proxy = FaultProxy(rgw.port, ssl_context=ctx).start()
    env = {k: v for k, v in ENV.items()
           if k not in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")}
    https = f"https://127.0.0.1:{proxy.port}"
    try:
        m = dagfs.mount([spec(rgw, bucket, endpoint=https, name="tls")],
                        env=env)
        m.wait(lambda: "s3 source tls" in m.stderr_text() and
               "certificate" in m.stderr_text().lower(), timeout=20,
               what="the certificate error in the log")
        assert os.listdir(m.mnt) == []
        m.stop()
        m = dagfs.mount([spec(rgw, bucket, endpoint=https, name="tls",
                              ca_file=crt)], env=env,
                        ready=lambda mnt: (mnt / "a.py").exists())
        assert served(m.mnt) == want(FILES)
    finally:
        proxy.stop()


def test_sigterm_stops_a_sync_in_progress(dagfs, rgw, bucket):
    """SIGTERM during a 600-object sync with parallel=1 ends the daemon
    within a second: the download loop and its backoff sleeps watch the
    source's stop, and nothing half-fetched is published."""
    files = {f"d{i:03}.py": f"x = {i}\n" * 200 for i in range(600)}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: rgw.put(bucket, "dags/" + kv[0], kv[1]),
                      files.items()))
    m = dagfs.mount([spec(rgw, bucket, parallel=1, name="big")], env=ENV,
                    ready=None)
    blobs = lambda: sum(len(f) for _, _, f in os.walk(m.cache / "objects"))
    m.wait(lambda: blobs() >= 20, 20, what="downloads under way")
    assert "published revision" not in m.stderr_text() and \
        "sync failed" not in m.stderr_text(), \
        "the sync is not in progress: nothing to stop"
    t0 = time.monotonic()
    m.signal(signal.SIGTERM)
    rc = m.wait_exit(10)
    took = time.monotonic() - t0
    assert rc == 0 and took < 1.0, (rc, took, m.stderr_text()[-2000:])
    assert "published revision" not in m.stderr_text()
    assert blobs() < 600, "the sync ran to its end"
