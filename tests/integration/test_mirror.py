# SPDX-License-Identifier: Apache-2.0
"""The served store (serve=true) and the `dagfs` mirror source, with real
daemons on loopback: a publisher over a git source (smart HTTP behind a
counting proxy) or a dir source, mirrors each with its own cache and
FUSE mount, and the fault proxy between a mirror and its publisher.

What must hold: every mirror is byte-exact; a push reaches every mirror
through the long-poll, and the git server sees the publisher's fetches
only; a forged or unsigned statement, a blob or snapshot damaged in
transit, are refused (and fetched again), never served; the publisher
down, mirrors keep serving and then catch up; a mirror of a mirror
checks the origin's signature; nothing outside the store is served.
"""

import json
import os
import pathlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))

from conftest import served  # noqa: E402
from conftest import source_status as status  # noqa: E402
from faultproxy import FaultProxy  # noqa: E402
from git_servers import free_port, git_http, git_repo, git_servers  # noqa: E402,F401
from rgw import ACCESS_KEY, SECRET_KEY  # noqa: E402


def get(url, headers=None):
    """(status, headers, body) of a GET, errors included."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name in ("good", "other"):
        sk, pk = d / f"{name}.pem", d / f"{name}.pub"
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519",
                        "-out", str(sk)], check=True, capture_output=True)
        subprocess.run(["openssl", "pkey", "-in", str(sk), "-pubout",
                        "-out", str(pk)], check=True, capture_output=True)
        out[name] = (sk, pk)
    return out


def publisher(dagfs, sources, key=None, extra=(), ready=None, env=None):
    port = free_port()
    args = ["--http", f"127.0.0.1:{port}", "--serve",
            "--status-interval", "100ms"] + list(extra)
    if key:
        args += ["--serve-key-file", str(key)]
    m = dagfs.mount(sources, args=args, ready=ready, env=env)
    m.port = port
    m.store = f"http://127.0.0.1:{port}/store"
    return m


def mirror(dagfs, store, name="team-a", pub=None, extra_keys="",
           args=(), ready=None, cache=None):
    spec = f"dagfs:{store},source={name},period=300ms" + extra_keys
    if pub:
        spec += f",public-key={pub}"
    return dagfs.mount([spec], args=["--status-interval", "100ms"] +
                       list(args), ready=ready, cache=cache)


def dir_source(tmp_path, files):
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    for rel, data in files.items():
        p = src / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return src


FILES = {"dags/a.py": b"a = 1\n", "dags/b.py": b"b = 2\n" * 100,
         "data/blob.bin": bytes(range(256)) * 512}


def test_mirrors_follow_git_pushes_one_fetch_each(dagfs, git_http, git_repo,
                                                   keys):
    """A publisher over git smart HTTP (through a counting proxy), four
    signed mirrors: byte-exact at once and after each of three pushes,
    each push seen by all within seconds, the git server asked for one
    pack per push (the publisher's), never by a mirror."""
    for rel, data in FILES.items():
        git_repo.write(rel, data)
    git_repo.commit("one")
    proxy = FaultProxy(git_http.port).start()
    try:
        url = f"http://127.0.0.1:{proxy.port}/git/{git_repo.name}.git"
        pub = publisher(dagfs, [f"git:{url},name=team-a,period=200ms,"
                                f"username=dagfs,password-file="
                                f"{git_http.password_file}"],
                        key=keys["good"][0],
                        ready=lambda mnt: (mnt / "dags/a.py").exists())
        want = served(pub.mnt)
        ms = [mirror(dagfs, pub.store, pub=keys["good"][1],
                     ready=lambda mnt: served(mnt) == want)
              for _ in range(4)]
        packs0 = sum("/git-upload-pack" in r for r in proxy.requests)
        for m in ms:  # status.json has counted the first round
            m.wait(lambda m=m: status(m, "team-a").get(
                "objects_fetched") == len(FILES), 10, what="first count")
        objs0 = [status(m, "team-a")["objects_fetched"] for m in ms]
        for i in range(3):
            git_repo.write("dags/a.py", f"a = {i + 2}\n".encode())
            git_repo.write(f"dags/new{i}.py", b"x" * (i + 1))
            head = git_repo.commit(f"push {i}")
            pub.wait(lambda: status(pub, "team-a").get("revision") == head,
                     20, what=f"publisher at {head}")
            want = served(pub.mnt)
            for m in ms:
                m.wait(lambda m=m: served(m.mnt) == want, 10,
                       what=f"mirror {m.mnt} at push {i}")
                # status.json is rewritten by its own thread just after the
                # swap (status_writer_kick), so it may trail the mount by
                # a moment: wait for it, then it must name the same commit
                m.wait(lambda m=m: status(m, "team-a").get("revision") ==
                       head, 5, what=f"status.json of {m.mnt} at push {i}")
                assert served(m.mnt) == want
        packs = sum("/git-upload-pack" in r for r in proxy.requests) - packs0
        assert packs == 3, proxy.requests
        # each push changed two blobs (a.py and a new file): each mirror
        # fetched exactly those from the publisher, nothing else
        for m, o0 in zip(ms, objs0):
            assert status(m, "team-a")["objects_fetched"] - o0 == 6
        r = dagfs.run(["fsck", "--cache", str(ms[0].cache)])
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        proxy.stop()


def test_statement_signed_by_another_key_is_refused(dagfs, tmp_path, keys):
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"], key=keys["good"][0],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    pub2 = publisher(dagfs, [f"dir:{src},name=team-a"],
                     ready=lambda mnt: (mnt / "dags/a.py").exists())
    # signed by another key; unsigned where a signature is wanted
    for store, why in ((pub.store, "not signed by public-key="),
                       (pub2.store, "unsigned; refused")):
        m = mirror(dagfs, store, pub=keys["other"][1] if store == pub.store
                   else keys["good"][1])
        m.wait(lambda m=m, why=why: why in
               status(m, "team-a").get("error", ""), 10,
               what=f"'{why}' in status.json")
        assert served(m.mnt) == {}


@pytest.mark.parametrize("what", ["/objects/", "/snapshots/",
                                  "/sources/team-a/current"])
def test_damage_in_transit_is_refused_then_fetched_again(dagfs, tmp_path,
                                                         keys, what):
    """One bit flipped in every other blob, snapshot or statement on the
    way: the mirror refuses each, fetches it again, and serves exactly the
    publisher's bytes; nothing damaged reaches the store or the mount."""
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"], key=keys["good"][0],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    proxy = FaultProxy(pub.port, plan=["corrupt", "pass"], match=what)
    proxy.start()
    try:
        store = f"http://127.0.0.1:{proxy.port}/store"
        want = served(pub.mnt)
        m = mirror(dagfs, store, pub=keys["good"][1])
        m.wait(lambda: served(m.mnt) == want, 20, what="the mirror whole")
        (src / "dags/c.py").write_bytes(b"c = 3\n" * 50)
        (src / "data/blob.bin").write_bytes(bytes(range(255, -1, -1)) * 600)
        pub.wait(lambda: (pub.mnt / "dags/c.py").exists(), 10)
        want = served(pub.mnt)
        m.wait(lambda: served(m.mnt) == want, 20, what="the second revision")
        assert proxy.counts["corrupt"] >= 1
        log = m.stderr_text()
        if what == "/objects/":
            assert "failed verification" in log, log
        elif what == "/snapshots/":
            assert "does not match its statement" in log, log
        else:
            assert "refused" in log, log
        r = dagfs.run(["fsck", "--cache", str(m.cache)])
        assert r.returncode == 0 and "0 problems" in r.stdout, r.stdout
    finally:
        proxy.stop()


def test_publisher_down_then_back(dagfs, tmp_path, keys):
    """Publisher killed: mirrors keep serving the last revision and report
    the failure; publisher back (same cache): mirrors catch up."""
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"], key=keys["good"][0],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    want = served(pub.mnt)
    ms = [mirror(dagfs, pub.store, pub=keys["good"][1],
                 ready=lambda mnt: served(mnt) == want) for _ in range(2)]
    pub.proc.kill()
    pub.proc.wait()
    pub.stopped = True
    for m in ms:
        m.wait(lambda m=m: status(m, "team-a").get("failures", 0) >= 1, 10,
               what="the failure in status.json")
        assert served(m.mnt) == want
    (src / "dags/late.py").write_bytes(b"late\n")
    back = dagfs.mount([f"dir:{src},name=team-a"], cache=pub.cache,
                       mnt=dagfs.path("pub-again"),
                       args=["--http", f"127.0.0.1:{pub.port}", "--serve",
                             "--serve-key-file", str(keys["good"][0])],
                       ready=lambda mnt: (mnt / "dags/late.py").exists())
    want = served(back.mnt)
    for m in ms:
        m.wait(lambda m=m: served(m.mnt) == want, 20, what="caught up")
        m.wait(lambda m=m: status(m, "team-a").get("failures") == 0, 5)


def test_mirror_of_mirror_and_restart(dagfs, tmp_path, keys):
    """A serving mirror forwards the origin's signed statement (same
    snapshot ids), so a second-level mirror checks the origin's key; a
    mirror stopped and started again catches up from its own cache."""
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"], key=keys["good"][0],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    want = served(pub.mnt)
    p1 = free_port()
    m1 = mirror(dagfs, pub.store, pub=keys["good"][1],
                args=["--http", f"127.0.0.1:{p1}", "--serve"],
                ready=lambda mnt: served(mnt) == want)
    m2 = mirror(dagfs, f"http://127.0.0.1:{p1}/store/", pub=keys["good"][1],
                ready=lambda mnt: served(mnt) == want)
    _, _, d0 = get(pub.store + "/sources/team-a/current")
    _, _, d1 = get(f"http://127.0.0.1:{p1}/store/sources/team-a/current")
    assert d0 == d1 and b"\nsig ed25519 " in d0
    m2.stop()
    (src / "dags/b.py").write_bytes(b"b = 3\n")
    pub.wait(lambda: (pub.mnt / "dags/b.py").read_bytes() == b"b = 3\n", 10)
    want = served(pub.mnt)
    again = mirror(dagfs, f"http://127.0.0.1:{p1}/store/",
                   pub=keys["good"][1], cache=m2.cache)
    again.wait(lambda: served(again.mnt) == want, 15, what="restart catch-up")


def test_served_store_answers_only_its_names(dagfs, tmp_path):
    """Immutable objects carry strong validators; every other shape of
    path is 404; with a token, nothing under /store/ answers without it."""
    src = dir_source(tmp_path, FILES)
    tok = tmp_path / "token"
    tok.write_text("t0k-" + "x" * 20 + "\n")
    pub = publisher(dagfs, [f"dir:{src},name=team-a"],
                    extra=["--serve-token-file", str(tok)],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    auth = {"Authorization": "Bearer t0k-" + "x" * 20}
    st, hdr, body = get(pub.store + "/sources/team-a/current")
    assert st == 401 and hdr.get("WWW-Authenticate") == "Bearer"
    st, hdr, body = get(pub.store + "/sources/team-a/current", auth)
    assert st == 200, body
    doc = dict(l.split(" ", 1) for l in body.decode().splitlines()[1:])
    st, hdr, _ = get(pub.store + "/sources/team-a/current",
                     dict(auth, **{"If-None-Match": hdr["ETag"]}))
    assert st == 304 and hdr["Cache-Control"] == "no-cache"
    # the long-poll waits on the current snapshot id or revision only
    for after, waits in ((doc["snapshot"], True), (doc["rev"], True),
                         ("0" * 32, False)):
        t0 = time.monotonic()
        st, hdr, _ = get(f"{pub.store}/sources/team-a/current?after={after}"
                         f"&wait=1", auth)
        took = time.monotonic() - t0
        assert st == 200 and (took >= 0.9) == waits, (after, took)
        assert ("X-Dagfs-Long-Poll" in hdr) == waits
    st, hdr, snap = get(pub.store + "/snapshots/" + doc["snapshot"], auth)
    assert st == 200 and hdr["ETag"] == f'"{doc["snapshot"]}"'
    assert "immutable" in hdr["Cache-Control"]
    blobs = sorted(p.name for p in (pub.cache / "objects").rglob("*")
                   if p.is_file())
    ab = [p for p in (pub.cache / "objects").rglob("*") if p.is_file()][0]
    hexid = ab.parent.name + ab.name
    st, hdr, body = get(f"{pub.store}/objects/{ab.parent.name}/{ab.name}",
                        auth)
    assert st == 200 and body == ab.read_bytes() and blobs
    st, _, _ = get(f"{pub.store}/objects/{ab.parent.name}/{ab.name}",
                   dict(auth, **{"If-None-Match": f'"{hexid}"'}))
    assert st == 304
    blob = ab.read_bytes()
    for rng, want_body in (("bytes=1-3", blob[1:4]), ("bytes=-2", blob[-2:]),
                           ("bytes=2-", blob[2:])):
        st, hdr, body = get(f"{pub.store}/objects/{ab.parent.name}/"
                            f"{ab.name}", dict(auth, Range=rng))
        assert st == 206 and body == want_body, (rng, st)
        assert hdr["Content-Range"].endswith(f"/{len(blob)}")
    st, hdr, _ = get(f"{pub.store}/objects/{ab.parent.name}/{ab.name}",
                     dict(auth, Range=f"bytes={len(blob)}-"))
    assert st == 416 and hdr["Content-Range"] == f"bytes */{len(blob)}"
    st, _, lst = get(pub.store + "/sources.json", auth)
    assert json.loads(lst)["sources"][0]["snapshot"] == doc["snapshot"]
    for bad in ["/store/../lock", "/store/lock", "/store/sources/team-a/spec",
                "/store/sources/team-a/h-0000000000000001",
                "/store/snapshots/../lock", "/store/objects/zz/" + "0" * 30,
                "/store/sources/..%2F..%2Flock/current", "/store/status.json",
                "/store/objects/" + hexid[:2] + "/" + hexid[2:] + "/x",
                "/store/sources/team-a/revs/..%2F..%2Flock",
                "/store//sources.json", "/store/tmp/x"]:
        r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w",
                            "%{http_code}", "--path-as-is", "-H",
                            f"Authorization: {auth['Authorization']}",
                            f"http://127.0.0.1:{pub.port}{bad}"],
                           capture_output=True, text=True)
        assert r.stdout == "404", (bad, r.stdout)
    # the mirror with the token works, without it reports 401
    ok = mirror(dagfs, pub.store, extra_keys=f",token-file={tok}",
                ready=lambda mnt: (mnt / "dags/a.py").exists())
    assert served(ok.mnt) == served(pub.mnt)
    no = mirror(dagfs, pub.store)
    no.wait(lambda: "HTTP 401" in status(no, "team-a").get("error", ""), 10)
    assert "t0k-" not in no.stderr_text() + ok.stderr_text()


def test_static_copy_by_export(dagfs, tmp_path, keys):
    """`dagfs export DIR` of a running publisher's cache behind a plain
    static HTTP server (no long-poll, query ignored): a mirror polls it,
    checks the signature, and follows a second export."""
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    out = tmp_path / "static"
    key = ["--serve-key-file", str(keys["good"][0])]
    r = dagfs.run(["export", "--cache", str(pub.cache)] + key + [str(out)])
    assert r.returncode == 0, r.stderr
    assert (out / "sources/team-a/current").read_bytes().startswith(
        b"dagfs-snapshot 1\n")
    port = free_port()
    http = subprocess.Popen([sys.executable, "-m", "http.server", "-b",
                             "127.0.0.1", str(port)], cwd=out,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        want = served(pub.mnt)
        m = mirror(dagfs, f"http://127.0.0.1:{port}", pub=keys["good"][1])
        m.wait(lambda: served(m.mnt) == want, 15, what="the static copy")
        (src / "dags/z.py").write_bytes(b"z\n")
        pub.wait(lambda: (pub.mnt / "dags/z.py").exists(), 10)
        r = dagfs.run(["export", "--cache", str(pub.cache)] + key +
                      [str(out)])
        assert r.returncode == 0, r.stderr
        want = served(pub.mnt)
        m.wait(lambda: served(m.mnt) == want, 15, what="the second export")
    finally:
        http.terminate()
        http.wait()


def git_publisher(dagfs, git_http, git_repo, keys):
    """A signed publisher over @git_repo by smart HTTP, polling every 200 ms."""
    url = git_http.url(git_repo)
    return publisher(dagfs, [f"git:{url},name=team-a,period=200ms,"
                             f"username=dagfs,password-file="
                             f"{git_http.password_file}"],
                     key=keys["good"][0],
                     ready=lambda mnt: (mnt / "dags/a.py").exists())


def test_revision_on_demand_through_mirror(dagfs, git_http, git_repo, keys):
    """A mirror asked for .dagfs/revs/team-a/<commit> that neither it nor
    its publisher ever had (both started after three pushes): the mirror
    asks the publisher, the publisher fetches the commit from git, and the
    lookup answers with exactly that commit's files; a bogus commit is
    ENOENT on the mirror."""
    git_repo.write("dags/a.py", b"v1\n")
    first = git_repo.commit("v1")
    for i in (2, 3):
        git_repo.write("dags/a.py", f"v{i}\n".encode())
        git_repo.commit(f"v{i}")
    pub = git_publisher(dagfs, git_http, git_repo, keys)
    m = mirror(dagfs, pub.store, pub=keys["good"][1],
               ready=lambda mnt: (mnt / "dags/a.py").exists())
    assert (m.mnt / "dags/a.py").read_bytes() == b"v3\n"
    old = m.mnt / ".dagfs" / "revs" / "team-a" / first
    assert (old / "dags/a.py").read_bytes() == b"v1\n"
    assert "fetched revision" in pub.stderr_text()
    assert "fetched revision" in m.stderr_text()
    assert (m.mnt / "dags/a.py").read_bytes() == b"v3\n"
    bogus = m.mnt / ".dagfs" / "revs" / "team-a" / ("0" * 40)
    assert not bogus.exists()


def test_s3_publisher_one_get_per_changed_object(dagfs, rgw, keys):
    """A publisher over an S3 prefix (the RADOS Gateway behind a counting
    proxy) and three mirrors: after two objects change, the gateway saw
    exactly two object GETs (the publisher's), and every mirror serves the
    new bytes; no mirror holds or needs the S3 credentials."""
    bucket = rgw.bucket(f"fanout-{os.getpid()}")
    for k, v in FILES.items():
        rgw.put(bucket, "p/" + k, v)
    proxy = FaultProxy(rgw.port).start()
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_EC2_METADATA_DISABLED="true")
    try:
        pub = publisher(dagfs, [f"s3:{bucket}/p/,endpoint=http://127.0.0.1:"
                                f"{proxy.port},region=us-east-1,"
                                f"period=300ms,name=team-a"],
                        key=keys["good"][0], env=env,
                        ready=lambda mnt: (mnt / "dags/a.py").exists())
        want = served(pub.mnt)
        ms = [mirror(dagfs, pub.store, pub=keys["good"][1],
                     ready=lambda mnt: served(mnt) == want)
              for _ in range(3)]

        def gets():
            return sum(r.startswith(f"GET /{bucket}/") for r in
                       proxy.requests)
        g0 = gets()
        rgw.put(bucket, "p/dags/a.py", b"a = 42\n")
        rgw.put(bucket, "p/dags/s3new.py", b"new = 1\n")
        pub.wait(lambda: (pub.mnt / "dags/s3new.py").exists(), 20)
        want = served(pub.mnt)
        for m in ms:
            m.wait(lambda m=m: served(m.mnt) == want, 15,
                   what=f"mirror {m.mnt} after the S3 change")
        assert gets() - g0 == 2, proxy.requests[-10:]
        assert SECRET_KEY not in "".join(m.stderr_text() for m in ms)
    finally:
        proxy.stop()


def test_whole_tree_version_through_mirror(dagfs, git_http, git_repo, keys):
    """A fresh mirror asked for .dagfs/trees/<T> of a composition only the
    publisher ever had: it fetches the manifest (trees/T, checked against
    its name) and the revision it names, and serves that tree; an export
    carries the manifest too."""
    git_repo.write("dags/a.py", b"t1\n")
    git_repo.commit("t1")
    pub = git_publisher(dagfs, git_http, git_repo, keys)
    tree1 = json.loads((pub.mnt / ".dagfs/status.json").read_text())["tree"]
    git_repo.write("dags/a.py", b"t2\n")
    head = git_repo.commit("t2")
    pub.wait(lambda: status(pub, "team-a").get("revision") == head, 20)
    st, hdr, body = get(f"{pub.store}/trees/{tree1}")
    assert st == 200 and body.startswith(b"dagfs-tree 1\n")
    assert "immutable" in hdr["Cache-Control"]
    m = mirror(dagfs, pub.store, pub=keys["good"][1],
               ready=lambda mnt: (mnt / "dags/a.py").exists())
    assert (m.mnt / "dags/a.py").read_bytes() == b"t2\n"
    old = m.mnt / ".dagfs" / "trees" / tree1
    assert (old / "dags/a.py").read_bytes() == b"t1\n"
    assert (m.cache / "trees" / tree1).exists()
    assert get(f"{pub.store}/trees/{'0' * 32}")[0] == 404
    out = pub.cache.parent / "export-trees"
    r = dagfs.run(["export", "--cache", str(pub.cache), str(out)])
    assert r.returncode == 0 and (out / "trees" / tree1).exists(), r.stderr


def test_export_to_a_bucket(dagfs, rgw, tmp_path, keys):
    """The exported layout uploaded to an S3 bucket (the RADOS Gateway,
    anonymous reads by bucket policy; objects, snapshots, then sources):
    a signed mirror reads it with plain GETs and follows a second
    upload."""
    src = dir_source(tmp_path, FILES)
    pub = publisher(dagfs, [f"dir:{src},name=team-a"],
                    ready=lambda mnt: (mnt / "dags/a.py").exists())
    bucket = rgw.bucket(f"static-{os.getpid()}")
    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject"],
        "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}).encode()
    st, body = rgw.s3("PUT", f"/{bucket}", data=policy, query="policy=")
    assert st in (200, 204), body
    out = tmp_path / "static"

    def upload():
        r = dagfs.run(["export", "--cache", str(pub.cache),
                       "--serve-key-file", str(keys["good"][0]), str(out)])
        assert r.returncode == 0, r.stderr
        for top in ("objects", "snapshots", "sources"):
            for p in sorted((out / top).rglob("*")):
                if p.is_file() and not p.name.startswith("."):
                    rgw.put(bucket, f"store/{p.relative_to(out)}",
                            p.read_bytes())

    upload()
    want = served(pub.mnt)
    m = mirror(dagfs, f"{rgw.endpoint}/{bucket}/store", pub=keys["good"][1])
    m.wait(lambda: served(m.mnt) == want, 20, what="the bucket copy")
    (src / "dags/y.py").write_bytes(b"y\n")
    pub.wait(lambda: (pub.mnt / "dags/y.py").exists(), 10)
    upload()
    want = served(pub.mnt)
    m.wait(lambda: served(m.mnt) == want, 20, what="the second upload")
