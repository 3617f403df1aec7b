# SPDX-License-Identifier: Apache-2.0
"""Hostile input and security checks on real mounts: symlinks that
escape a dir source; a directory of 100,000 entries and a 1 GiB file
(daemon RSS must stay bounded); mount flags; a non-root daemon with
allow_other; secrets never in logs, status, metrics or the command line;
TLS to a self-signed server refused unless its CA is given.

Covered elsewhere, not repeated here: SSH host-key mismatch
(test_git.py::test_ssh_unknown_or_changed_host_key_refused), hostile S3
keys (test_s3.py::test_hostile_keys_are_skipped), git tree entries that
escape (tests/unit git tree tests)."""

import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import REPO, Dagfs, mount_entry, proc_status, skip_or_fail

sys.path.insert(0, str(REPO / "tests" / "rigs"))
from git_servers import (free_port, git_http, git_repo,  # noqa: E402,F401
                         git_servers)
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402


# ------------------------------------------------------------ symlinks

def test_hostile_symlinks_are_left_out(dagfs, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("secret outside the source\n")
    (src / "ok.py").write_text("ok\n")
    benign = {"good_link": "ok.py", "sub/rel_ok": "../ok.py",
              "sub/d2": "../sub", "chain": "good_link"}
    hostile = {
        "abs": "/etc/passwd",
        "abs_dir": "/etc",
        "up": "../outside.txt",
        "deep": "sub/../../outside.txt",
        "sub/esc": "../../outside.txt",
        "via_link": "sub/esc",               # escapes through another link
        "to_abs": "abs",
        "lexical_trick": "sub/d2/../../outside.txt",  # ".." after a link
        "self_loop": "self_loop",
    }
    for rel, target in {**benign, **hostile}.items():
        os.symlink(target, src / rel)
    m = dagfs.mount([f"dir:{src},name=local"],
                    ready=lambda mnt: (mnt / "chain").is_symlink())
    for rel, target in benign.items():
        assert os.readlink(m.mnt / rel) == target, rel
    for rel in hostile:
        assert not os.path.lexists(m.mnt / rel), f"{rel} is served"
    # whatever is served resolves inside the mount
    root = os.path.realpath(m.mnt)
    for dirpath, dirs, files in os.walk(m.mnt):
        for n in dirs + files:
            real = os.path.realpath(os.path.join(dirpath, n))
            assert real == root or real.startswith(root + "/"), real
    assert (m.mnt / "chain").read_text() == "ok\n"
    err = m.stderr_text()
    for rel in ("abs", "up", "via_link", "lexical_trick"):
        assert rel in err, f"no logged error for {rel}"


# --------------------------------------------------------- big inputs

def test_100k_entries_and_a_1gib_file(dagfs, tmp_path):
    """Served, never a crash; the daemon's peak RSS stays bounded (the
    1 GiB file is streamed through the store, not held in memory)."""
    src = tmp_path / "src"
    wide = src / "wide"
    wide.mkdir(parents=True)
    for i in range(100_000):
        (wide / f"f{i:06d}.py").touch()
    big = src / "big.bin"
    with open(big, "wb") as f:      # sparse in the source, real in the store
        f.seek((1 << 30) - 6)
        f.write(b"THEEND")
    m = dagfs.mount([f"dir:{src},name=local"], timeout=300,
                    ready=lambda mnt: (mnt / "big.bin").exists())
    rss = m.sample_rss()
    assert len(os.listdir(m.mnt / "wide")) == 100_000
    assert (m.mnt / "wide" / "f099999.py").stat().st_size == 0
    st = (m.mnt / "big.bin").stat()
    assert st.st_size == 1 << 30
    with open(m.mnt / "big.bin", "rb") as f:
        f.seek((1 << 30) - 6)
        assert f.read() == b"THEEND"
        f.seek(1 << 29)
        assert f.read(4096) == bytes(4096)
    rss = m.sample_rss()
    print(f"\n100k entries + 1 GiB file: daemon peak RSS {rss / 1024:.1f} MiB")
    (tmp_path / "rss.txt").write_text(f"{rss}\n")
    assert rss < 256 * 1024, f"peak RSS {rss} KiB"


# ------------------------------------------------------- mount flags

def test_mount_is_read_only_nosuid_nodev(dagfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    m = dagfs.mount([f"dir:{src}"], ready=lambda mnt: (mnt / "a.py").exists())
    _, fstype, _, opts = mount_entry(m.mnt)
    opts = opts.split(",")
    assert fstype.startswith("fuse")
    for flag in ("ro", "nosuid", "nodev"):
        assert flag in opts, f"{flag} missing from {opts}"
    st = os.statvfs(m.mnt)
    assert st.f_flag & os.ST_RDONLY and st.f_flag & os.ST_NOSUID
    assert st.f_flag & os.ST_NODEV


# ------------------------------------------------ non-root allow_other

def as_user(uid):
    def pre():
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    return pre


@pytest.fixture
def user_allow_other():
    """user_allow_other in /etc/fuse.conf, and /dev/fuse 0666 as udev
    makes it on Debian (containers often leave it 0600); both restored."""
    conf = pathlib.Path("/etc/fuse.conf")
    old = conf.read_bytes() if conf.exists() else None
    mode = os.stat("/dev/fuse").st_mode & 0o777
    conf.write_text((old or b"").decode() + "\nuser_allow_other\n")
    os.chmod("/dev/fuse", 0o666)
    yield
    os.chmod("/dev/fuse", mode)
    if old is None:
        conf.unlink()
    else:
        conf.write_bytes(old)


def test_non_root_daemon_with_allow_other(dagfs, world_tmp, user_allow_other):
    if os.geteuid() != 0:
        skip_or_fail("needs root to switch users and edit /etc/fuse.conf")
    src, cache = world_tmp / "src", world_tmp / "cache"
    for d in (src, cache, world_tmp / "mnt-a", world_tmp / "mnt-b"):
        d.mkdir()
        os.chown(d, 65534, 65534)
    (src / "a.py").write_text("shared\n")
    (src / "a.py").chmod(0o644)

    def read_as(uid, path):
        return subprocess.run(["cat", str(path)], capture_output=True,
                              text=True, preexec_fn=as_user(uid))

    def start(mnt, cache_dir, args):
        m = Dagfs(mnt, cache_dir, [f"dir:{src},name=local"], args,
                  stderr_path=world_tmp / f"{mnt.name}.stderr",
                  preexec=as_user(65534))
        dagfs.mounts.append(m)
        return m.start(ready=lambda mnt:
                       read_as(65534, mnt / "a.py").returncode == 0)

    m = start(world_tmp / "mnt-a", cache, ["--allow-other"])
    with open(f"/proc/{m.pid}/status") as f:
        uids = next(l for l in f if l.startswith("Uid:")).split()[1:]
    assert set(uids) == {"65534"}
    r = read_as(1, m.mnt / "a.py")             # user `daemon`
    assert r.returncode == 0 and r.stdout == "shared\n", r.stderr
    assert "allow_other" in mount_entry(m.mnt)[3]
    m.stop()

    # without allow_other only the mounting user gets in
    m = start(world_tmp / "mnt-b", cache, [])
    r = read_as(65534, m.mnt / "a.py")
    assert r.stdout == "shared\n", r.stderr
    r = read_as(1, m.mnt / "a.py")
    assert r.returncode != 0 and "Permission denied" in r.stderr


# ----------------------------------------------------------- secrets

def http_get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                                timeout=5) as r:
        return r.read().decode()


def leaks(m, secrets, port, extra_text=""):
    """Where any of @secrets shows up: stderr (at debug level), status
    (text and JSON, and status.json), /metrics, /proc/PID/cmdline."""
    places = {
        "log": m.stderr_text(),
        "metrics": http_get(port, "/metrics"),
        "cmdline": pathlib.Path(f"/proc/{m.pid}/cmdline").read_bytes()
        .decode(errors="replace"),
        "status.json": (m.cache / "status.json").read_text(),
        "extra": extra_text,
    }
    for fmt in ([], ["--json"]):
        r = subprocess.run([str(m.binary), "status", "--cache", str(m.cache)]
                           + fmt, capture_output=True, text=True)
        places["status " + " ".join(fmt)] = r.stdout + r.stderr
    return [(where, s) for where, text in places.items()
            for s in secrets if s in text]


def test_secrets_never_leak_dir_and_git(dagfs, tmp_path, git_http, git_repo):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("x\n")
    hook = "hook-" + os.urandom(8).hex()
    (tmp_path / "hook").write_text(hook + "\n")
    git_repo.write("g.py", "from git\n")
    git_repo.commit("one")
    port = free_port()
    m = dagfs.mount(
        [f"dir:{src},name=local,at=local",
         f"git:{git_http.url(git_repo)},name=web,at=web,username=dagfs,"
         f"password-file={git_http.password_file},period=300ms"],
        args=["--http", f"127.0.0.1:{port}", "--log-level", "debug",
              "--webhook-secret-file", str(tmp_path / "hook")],
        ready=lambda mnt: (mnt / "web" / "g.py").exists())
    # a failing sync (wrong password) must not leak either
    wrong = "wrongpw-" + os.urandom(6).hex()
    (tmp_path / "wrong").write_text(wrong + "\n")
    bad = dagfs.mount([f"git:{git_http.url(git_repo)},name=bad,username=dagfs,"
                       f"password-file={tmp_path / 'wrong'}"],
                      args=["--log-level", "debug"], start=False)
    bad.start(wait_mounted=False)
    m.wait(lambda: "authentication" in bad.stderr_text(), timeout=20,
           what="the failed authentication")
    secrets = [hook, git_http.password, wrong]
    assert leaks(m, secrets, port, bad.stderr_text()) == []


# ---------------------------------------------------------------- TLS

class TlsRelay:
    """TLS in front of a plain TCP server on loopback, with a certificate
    of a CA made for the test (self-signed): a real TLS server for
    clients, the real S3 or git server behind it."""

    def __init__(self, upstream_port, certdir):
        self.upstream = upstream_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certdir / "server.pem", certdir / "server.key")
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            t = self.ctx.wrap_socket(c, server_side=True)
            u = socket.create_connection(("127.0.0.1", self.upstream))
        except (OSError, ssl.SSLError):
            c.close()
            return

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except (OSError, ssl.SSLError):
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(u, t), daemon=True).start()
        pump(t, u)

    def close(self):
        self.sock.close()


def make_ca(d):
    def ossl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=dagfs test CA", "-keyout", d / "ca.key",
         "-out", d / "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", d / "server.key", "-out", d / "server.csr")
    (d / "ext").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", d / "server.csr", "-CA", d / "ca.pem",
         "-CAkey", d / "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", d / "ext", "-out", d / "server.pem")
    return d / "ca.pem"


def test_tls_self_signed_refused_unless_ca_given(dagfs, tmp_path, rgw,
                                                 git_http, git_repo):
    ca = make_ca(tmp_path)
    bucket = rgw.bucket(f"tls-{os.getpid()}")
    rgw.put(bucket, "dags/t.py", "over tls\n")
    relay = TlsRelay(rgw.port, tmp_path)
    cred = tmp_path / "credentials"
    cred.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    base = (f"s3:{bucket}/dags/,endpoint=https://127.0.0.1:{relay.port},"
            f"region=us-east-1,period=300ms,credentials-file={cred}")
    try:
        bad = dagfs.mount([base + ",name=noca"], env=env, start=False)
        bad.start(wait_mounted=False)
        bad.wait(lambda: "s3 source noca" in bad.stderr_text()
                 and "certificate" in bad.stderr_text().lower(),
                 timeout=20, what="a certificate error")
        assert not (bad.mnt / "t.py").exists()
        bad.stop()
        m = dagfs.mount([base + f",name=withca,ca-file={ca}"], env=env,
                        ready=lambda mnt: (mnt / "t.py").exists())
        assert (m.mnt / "t.py").read_text() == "over tls\n"
        assert SECRET_KEY not in m.stderr_text()
        assert SECRET_KEY not in \
            pathlib.Path(f"/proc/{m.pid}/cmdline").read_text()
        m.stop()

        # git over HTTPS: no ca option; a self-signed server is refused
        git_repo.write("g.py", "g\n")
        git_repo.commit("one")
        grelay = TlsRelay(git_http.port, tmp_path)
        url = git_http.url(git_repo).replace(
            f"http://127.0.0.1:{git_http.port}",
            f"https://127.0.0.1:{grelay.port}")
        g = dagfs.mount([f"git:{url},name=gtls,username=dagfs,"
                         f"password-file={git_http.password_file}"],
                        start=False)
        g.start(wait_mounted=False)
        g.wait(lambda: "git source gtls" in g.stderr_text()
               and "certificate" in g.stderr_text().lower(),
               timeout=20, what="a certificate error from git")
        assert not (g.mnt / "g.py").exists()
        assert git_http.password not in g.stderr_text()
        grelay.close()
    finally:
        relay.close()


def test_secrets_never_leak_s3(dagfs, tmp_path, rgw):
    bucket = rgw.bucket(f"sec-{os.getpid()}")
    rgw.put(bucket, "dags/s.py", "s3\n")
    cred = tmp_path / "credentials"
    cred.write_text(f"[default]\naws_access_key_id = {ACCESS_KEY}\n"
                    f"aws_secret_access_key = {SECRET_KEY}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    port = free_port()
    m = dagfs.mount([f"s3:{bucket}/dags/,endpoint={rgw.endpoint},"
                     f"region=us-east-1,period=300ms,name=s3src,"
                     f"credentials-file={cred}"], env=env,
                    args=["--http", f"127.0.0.1:{port}",
                          "--log-level", "debug"],
                    ready=lambda mnt: (mnt / "s.py").exists())
    environ = pathlib.Path(f"/proc/{m.pid}/environ").read_bytes()
    assert SECRET_KEY.encode() not in environ
    assert leaks(m, [SECRET_KEY], port) == []
    json.loads((m.cache / "status.json").read_text())
