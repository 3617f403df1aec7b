# SPDX-License-Identifier: Apache-2.0
"""Directory listings with zero-message opendir: the kernel keeps every
listing, so a warm listing costs no request; a swap resets exactly the
listings that changed (never one that outlives it), .dagfs listings are
never kept, and a listing begun before a swap finishes on its own tree."""

import os
import pathlib

from conftest import wait_for
from test_daemon import free_port, metrics_counts

DEBOUNCE = "100ms"


def mount_with_metrics(dagfs, src, **keys):
    port = free_port()
    spec = f"dir:{src},name=local,debounce={DEBOUNCE}" + "".join(
        f",{k}={v}" for k, v in keys.items())
    m = dagfs.mount([spec], args=["--http", f"127.0.0.1:{port}"],
                    ready=lambda mnt: (mnt / "REV").exists())
    return m, port


def names(p):
    return sorted(os.listdir(p))


def test_warm_listing_sends_no_request(dagfs, tmp_path):
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    for i in range(50):
        (src / "d" / f"f{i:02d}.py").write_text(f"{i}\n")
    (src / "REV").write_text("0")
    m, port = mount_with_metrics(dagfs, src)
    want = sorted([f"f{i:02d}.py" for i in range(50)] + ["e"])
    assert names(m.mnt / "d") == want
    first = metrics_counts(port)
    # the first opendir answered ENOSYS: the kernel opens directories
    # itself from then on and never releases them to us
    assert first[("requests", "opendir")] == 1
    assert first[("requests", "releasedir")] == 0
    for _ in range(5):
        assert names(m.mnt / "d") == want
        with os.scandir(m.mnt / "d") as it:
            assert sorted(e.name for e in it) == want
        assert names(m.mnt) == ["REV", "d"]
        assert names(m.mnt / "d" / "e") == []
    warm = metrics_counts(port)
    for op in ("opendir", "releasedir", "readdir", "lookup", "getattr"):
        if op in ("readdir", "lookup", "getattr"):
            # the root and d/e were listed for the first time in the loop
            assert warm[("requests", op)] - first[("requests", op)] <= 4, op
        else:
            assert warm[("requests", op)] == first[("requests", op)], op
    again = metrics_counts(port)
    for _ in range(5):
        assert names(m.mnt / "d") == want
        assert names(m.mnt) == ["REV", "d"]
    after = metrics_counts(port)
    for op in ("opendir", "releasedir", "readdir", "lookup", "getattr"):
        assert after[("requests", op)] == again[("requests", op)], op


def test_cached_listing_never_outlives_a_swap(dagfs, tmp_path):
    """Once a swap's new content can be seen, every listing that changed
    is the new one at once: the kernel's kept listing of d (gaining a name
    it never looked up, so no name invalidation resets it), of the root, of
    a directory whose file only changed content (a new inode number), and
    of .dagfs/revs/local, never lags behind."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "same").mkdir()
    (src / "same" / "s.py").write_text("s\n")
    (src / "d" / "a.py").write_text("a\n")
    (src / "c").mkdir()
    (src / "c" / "m.py").write_text("m0\n")
    (src / "REV").write_text("0")
    m, port = mount_with_metrics(dagfs, src)
    revs = m.mnt / ".dagfs" / "revs" / "local"
    for r in range(1, 6):
        # cache every listing, and check it is kept
        dirs = ("", "d", "same", "c")
        before = {p: names(m.mnt / p) for p in dirs}
        old_revs = names(revs)
        inos = {e.name: e.inode() for e in os.scandir(m.mnt / "c")}
        c0 = metrics_counts(port)
        assert {p: names(m.mnt / p) for p in dirs} == before
        c1 = metrics_counts(port)
        assert c1[("requests", "readdir")] == c0[("requests", "readdir")]
        # the next revision: d gains a file, c/m.py changes content, the
        # root gains a directory, same/ does not change
        (src / "d" / f"new{r}.py").write_text("n\n")
        (src / "c" / "m.py").write_text(f"m{r}\n")
        (src / f"top{r}").mkdir()
        (src / "REV").write_text(str(r))
        wait_for(lambda: (m.mnt / "REV").read_text() == str(r), 10,
                 what=f"revision {r}")
        # seen REV of the new revision: every changed listing is new
        assert names(m.mnt / "d") == sorted(
            ["a.py"] + [f"new{k}.py" for k in range(1, r + 1)])
        assert f"top{r}" in names(m.mnt)
        c_inos = {e.name: e.inode() for e in os.scandir(m.mnt / "c")}
        assert c_inos["m.py"] != inos["m.py"]
        assert c_inos["m.py"] == os.stat(m.mnt / "c" / "m.py").st_ino
        assert (m.mnt / "c" / "m.py").read_text() == f"m{r}\n"
        assert names(m.mnt / "same") == ["s.py"]
        now = names(revs)
        assert set(now) - set(old_revs), (old_revs, now)


def test_listing_begun_before_a_swap_finishes_on_its_tree(dagfs, tmp_path):
    """A getdents sequence that spans a swap reads its own tree to the end
    (the kernel's cache is reset under it and the daemon serves the rest
    from the view the listing began in), with no handle in the daemon."""
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    pad = "p" * 60
    n = 2000  # several getdents calls of 32 KiB
    for i in range(n):
        (src / "d" / f"r0_{i:04d}_{pad}").write_text("x")
    (src / "REV").write_text("0")
    m = dagfs.mount([f"dir:{src},name=local,debounce={DEBOUNCE}"],
                    ready=lambda mnt: (mnt / "REV").exists())
    for r, cached in ((1, False), (2, True)):
        if cached:
            assert len(os.listdir(m.mnt / "d")) == n  # kept by the kernel
        fd = os.open(m.mnt / "d", os.O_RDONLY | os.O_DIRECTORY)
        try:
            it = os.scandir(fd)
            got = [next(it).name for _ in range(20)]
            # the next revision renames every entry
            for i in range(n):
                os.rename(src / "d" / f"r{r - 1}_{i:04d}_{pad}",
                          src / "d" / f"r{r}_{i:04d}_{pad}")
            (src / "REV").write_text(str(r))
            wait_for(lambda: (m.mnt / "REV").read_text() == str(r), 15,
                     what=f"revision {r}")
            assert (m.mnt / "d" / f"r{r}_0000_{pad}").exists()
            got += [e.name for e in it]
            it.close()
        finally:
            os.close(fd)
        prefixes = {g.split("_")[0] for g in got}
        assert prefixes == {f"r{r - 1}"}, sorted(prefixes)
        assert len(got) == n and len(set(got)) == n
        assert {g.split("_")[1] for g in got} == {f"{i:04d}" for i in range(n)}
        # and a listing begun now is the new tree
        now = os.listdir(m.mnt / "d")
        assert {g.split("_")[0] for g in now} == {f"r{r}"} and len(now) == n
    assert pathlib.Path(m.mnt / "d").is_dir()
