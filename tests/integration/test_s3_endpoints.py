# SPDX-License-Identifier: Apache-2.0
"""The s3 source's endpoints against the real RADOS Gateway
(tests/rigs/rgw.py): a second radosgw on the same cluster serves HTTPS
with a certificate of our own making (TLS is verified unless ca-file=
names its CA) and, with `rgw dns name = localhost`, virtual-hosted
buckets (BUCKET.localhost, which curl resolves to loopback)."""

import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import REPO, rgw_started

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from rgw import ACCESS_KEY, SECRET_KEY, free_port  # noqa: E402

ENV = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
           AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_EC2_METADATA_DISABLED="true")
for k in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE"):
    ENV.pop(k, None)  # only the system store, or ca-file=


def make_cert(d):
    key, crt = d / "key.pem", d / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    return key, crt


def wait_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the second radosgw exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the second radosgw did not listen")


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    """The rig plus a second gateway: plain HTTP with virtual-hosted
    buckets on .http, HTTPS on .https, our CA in .ca."""
    d = tmp_path_factory.mktemp("tls")
    key, crt = make_cert(d)
    r = rgw_started()
    http, https = free_port(), free_port()
    p = subprocess.Popen(
        ["radosgw", "-c", r.conf, "-n", "client.rgw2", "-f",
         "--rgw-dns-name=localhost",
         f"--rgw-frontends=beast endpoint=127.0.0.1:{http} "
         f"ssl_endpoint=127.0.0.1:{https} ssl_certificate={crt} "
         f"ssl_private_key={key}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(http, p)
        wait_port(https, p)
        r.http, r.https, r.ca = http, https, crt
        yield r
    finally:
        p.kill()
        p.wait()
        r.stop()


def test_tls_is_verified_unless_ca_file_names_the_ca(dagfs, gw):
    b = gw.bucket(f"tls-{os.getpid()}")
    gw.put(b, "dags/a.py", "# over TLS\n")
    s = (f"s3:{b}/dags/,endpoint=https://127.0.0.1:{gw.https},"
         f"region=us-east-1,period=300ms,name=tls")
    m = dagfs.mount([s], env=ENV)
    m.wait(lambda: "certificate" in m.stderr_text(), timeout=30,
           what="the certificate refused")
    line = [l for l in m.stderr_text().splitlines() if "certificate" in l][0]
    assert "s3 source tls" in line, line
    assert os.listdir(m.mnt) == []
    m.stop()
    m = dagfs.mount([s + f",ca-file={gw.ca}"], env=ENV,
                    ready=lambda mnt: (mnt / "a.py").exists())
    assert (m.mnt / "a.py").read_text() == "# over TLS\n"


def test_virtual_hosted_addressing(dagfs, gw):
    b = gw.bucket(f"vhost-{os.getpid()}")
    gw.put(b, "dags/team/v.py", "# virtual host\n")
    s = (f"s3:{b}/dags/,endpoint=http://localhost:{gw.http},"
         f"region=us-east-1,period=300ms,addressing=virtual")
    m = dagfs.mount([s], env=ENV,
                    ready=lambda mnt: (mnt / "team" / "v.py").exists())
    assert (m.mnt / "team" / "v.py").read_text() == "# virtual host\n"
