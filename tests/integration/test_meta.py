# SPDX-License-Identifier: Apache-2.0
"""The read-only .dagfs directory of a mount: status.json, pinned
revisions under revs/<source>/<revision>/, changes/<source> of the last
swap, hidden from the root listing unless --show-meta; and the
user.dagfs.* extended attributes of every entry."""

import ctypes
import errno
import json
import os

import pytest

from conftest import wait_for


def status(mnt):
    return json.loads((mnt / ".dagfs" / "status.json").read_text())


def rev_of(mnt):
    return status(mnt)["sources"]["local"]["revision"]


def swap(m, before, change):
    """Apply @change to the source and wait until the mount serves a
    revision other than @before; returns the new one."""
    change()
    wait_for(lambda: rev_of(m.mnt) != before, timeout=20,
             what="a new revision in status.json")
    return rev_of(m.mnt)


def tree(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
        for x in dirs:
            out[os.path.relpath(os.path.join(d, x), root) + "/"] = None
    return out


@pytest.fixture
def local(dagfs, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.py").write_text("a1\n")
    (src / "sub" / "b.py").write_text("b1\n")
    (src / "gone.py").write_text("gone\n")

    def start(args=()):
        return src, dagfs.mount([f"dir:{src},name=local,debounce=100ms"],
                                args=list(args),
                                ready=lambda mnt: (mnt / "a.py").exists())
    return start


def test_status_changes_and_pinned_revisions(local):
    src, m = local()
    mnt = m.mnt
    st = status(mnt)["sources"]["local"]
    assert st["at"] == ""
    assert st["revision"].startswith("dir-")
    assert st["published"].endswith("Z") and st["published_ns"] > 0
    first = st["revision"]
    assert sorted((mnt / ".dagfs" / "changes" / "local").read_text()
                  .splitlines()) == ["A a.py", "A gone.py", "A sub",
                                     "A sub/b.py"]

    def edit():
        (src / "a.py").write_text("a2 changed\n")
        (src / "gone.py").unlink()
        (src / "c.py").write_text("c\n")
    second = swap(m, first, edit)
    lines = (mnt / ".dagfs" / "changes" / "local").read_text().splitlines()
    assert sorted(lines) == ["A c.py", "D gone.py", "M a.py"]

    third = swap(m, second, lambda: (src / "sub" / "b.py").write_text("b3\n"))
    assert (mnt / ".dagfs" / "changes" / "local").read_text() == \
        "M sub/b.py\n"
    assert rev_of(mnt) == third

    # every retained revision is listed, and the first one is served as it was
    revs = mnt / ".dagfs" / "revs" / "local"
    assert {first, second, third} <= set(os.listdir(revs))
    old = revs / first
    assert tree(old) == {"a.py": b"a1\n", "gone.py": b"gone\n",
                         "sub/": None, "sub/b.py": b"b1\n"}
    assert (revs / second / "a.py").read_text() == "a2 changed\n"
    assert (revs / second / "sub" / "b.py").read_text() == "b1\n"
    assert tree(revs / third) == tree(mnt)
    assert not (revs / "dir-no-such-revision").exists()
    assert not (mnt / ".dagfs" / "revs" / "nope").exists()
    assert (mnt / "a.py").read_text() == "a2 changed\n"


def test_hidden_unless_show_meta(local):
    _, m = local()
    assert ".dagfs" not in os.listdir(m.mnt)
    assert sorted(os.listdir(m.mnt)) == ["a.py", "gone.py", "sub"]
    assert os.path.isdir(m.mnt / ".dagfs")
    assert sorted(os.listdir(m.mnt / ".dagfs")) == ["changes", "revs",
                                                     "status.json", "trees"]
    assert os.listdir(m.mnt / ".dagfs" / "changes") == ["local"]
    m.stop()
    _, m = local(["--show-meta"])
    assert sorted(os.listdir(m.mnt)) == [".dagfs", "a.py", "gone.py", "sub"]
    assert os.path.isdir(m.mnt / ".dagfs" / "revs" / "local")


def test_root_source_dagfs_is_hidden(local):
    src, m = local()
    before = rev_of(m.mnt)
    (src / ".dagfs").mkdir()
    (src / ".dagfs" / "mine").write_text("x\n")
    swap(m, before, lambda: (src / "a.py").write_text("a2\n"))
    assert ".dagfs" not in os.listdir(m.mnt)
    assert sorted(os.listdir(m.mnt / ".dagfs")) == ["changes", "revs",
                                                     "status.json", "trees"]
    assert "hidden by dagfs' metadata directory" in m.stderr_text()


def test_xattrs(local):
    src, m = local()
    mnt = m.mnt
    rev = rev_of(mnt)
    a = str(mnt / "a.py")
    assert os.getxattr(a, "user.dagfs.source") == b"local"
    assert os.getxattr(a, "user.dagfs.revision") == rev.encode()
    h = os.getxattr(a, "user.dagfs.hash")
    assert len(h) == 32 and int(h, 16) >= 0
    assert sorted(os.listxattr(a)) == ["user.dagfs.hash",
                                       "user.dagfs.revision",
                                       "user.dagfs.source"]
    # the same content has the same hash, another content another one
    (src / "copy.py").write_text("a1\n")
    wait_for(lambda: (mnt / "copy.py").exists(), timeout=20)
    assert os.getxattr(str(mnt / "copy.py"), "user.dagfs.hash") == h
    assert os.getxattr(str(mnt / "sub" / "b.py"), "user.dagfs.hash") != h
    # directories: source and revision, no hash
    sub = str(mnt / "sub")
    assert sorted(os.listxattr(sub)) == ["user.dagfs.revision",
                                         "user.dagfs.source"]
    with pytest.raises(OSError) as e:
        os.getxattr(sub, "user.dagfs.hash")
    assert e.value.errno == errno.ENODATA
    with pytest.raises(OSError) as e:
        os.getxattr(a, "user.dagfs.nope")
    assert e.value.errno == errno.ENODATA
    # pinned revisions answer for their own revision
    old = mnt / ".dagfs" / "revs" / "local" / rev / "a.py"
    assert os.getxattr(str(old), "user.dagfs.revision") == rev.encode()
    assert os.getxattr(str(old), "user.dagfs.hash") == h
    assert os.listxattr(str(mnt / ".dagfs" / "status.json")) == []


def test_xattr_buffer_too_small(local):
    """getxattr(2) with a short buffer is ERANGE (through getfattr's
    size query the whole value arrives)."""
    _, m = local()
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(8)
    path = str(m.mnt / "a.py").encode()
    n = libc.getxattr(path, b"user.dagfs.source", buf, 2)
    assert n == -1 and ctypes.get_errno() == errno.ERANGE
    assert libc.getxattr(path, b"user.dagfs.source", None, 0) == 5
    assert libc.getxattr(path, b"user.dagfs.source", buf, 5) == 5
    assert buf.raw[:5] == b"local"
    out = os.popen(f"getfattr -d -m user.dagfs {m.mnt / 'a.py'}").read()
    assert 'user.dagfs.source="local"' in out


def test_writes_refused(local):
    _, m = local()
    meta = m.mnt / ".dagfs"
    for f in (lambda: (meta / "new").write_text("x"),
              lambda: (meta / "status.json").write_text("x"),
              lambda: os.mkdir(meta / "revs" / "x"),
              lambda: os.unlink(meta / "status.json"),
              lambda: os.setxattr(str(m.mnt / "a.py"), "user.dagfs.source",
                                  b"x")):
        with pytest.raises(OSError) as e:
            f()
        assert e.value.errno == errno.EROFS
