# SPDX-License-Identifier: Apache-2.0
"""A fresh Debian 12 root filesystem for the package and container tests,
made with `debootstrap --variant=minbase bookworm` from the mirror this
machine's apt uses, and cached outside the clone keyed by its inputs
(suite, variant, mirror): CI does not redo it at every run.

    base = bookworm_tree()          # read-only: never change it
    with overlay_root(base, tmp) as root:   # a writable copy, thrown away
        chroot(root, "dpkg", "-i", ...)
"""

import contextlib
import fcntl
import hashlib
import os
import pathlib
import re
import shutil
import subprocess

CACHE = pathlib.Path(os.environ.get("DAGFS_TEST_CACHE", "/var/cache/dagfs-test"))
SUITE, VARIANT = "bookworm", "minbase"


def apt_mirror():
    """The Debian mirror of this machine's apt sources (deb822 or
    one-line), for the suite itself (not -security, not -updates)."""
    d = pathlib.Path("/etc/apt")
    for f in sorted((d / "sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.*)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1)
    lists = [d / "sources.list", *sorted((d / "sources.list.d").glob("*.list"))]
    for f in lists:
        if f.exists():
            m = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s",
                          f.read_text(), re.M)
            if m:
                return m.group(1)
    raise RuntimeError(f"no apt source for {SUITE} in /etc/apt")


@contextlib.contextmanager
def _locked(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def bookworm_tree():
    """The cached tree (made once per key, under a lock); its path."""
    mirror = apt_mirror()
    key = hashlib.sha256(f"debootstrap --variant={VARIANT} {SUITE} "
                         f"{mirror}\n".encode()).hexdigest()[:16]
    tree = CACHE / f"debootstrap-{SUITE}-{key}"
    if (tree / ".complete").exists():
        return tree
    with _locked(CACHE / f".debootstrap-{key}.lock"):
        if (tree / ".complete").exists():
            return tree
        tmp = tree.with_name(tree.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(["debootstrap", f"--variant={VARIANT}", SUITE,
                            str(tmp), mirror], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("debootstrap failed:\n" + r.stdout[-3000:] +
                               r.stderr[-3000:])
        shutil.rmtree(tree, ignore_errors=True)
        tmp.rename(tree)
        (tree / ".complete").write_text(mirror + "\n")
    return tree


@contextlib.contextmanager
def overlay_root(base, work):
    """A writable root over @base (overlayfs; the cache stays as it is),
    with /proc, /dev (for /dev/fuse) and the host's resolv.conf; all of
    it unmounted at the end."""
    work = pathlib.Path(work)
    upper, wd, root = work / "upper", work / "work", work / "root"
    for p in (upper, wd, root):
        p.mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={base},upperdir={upper},workdir={wd}",
                    str(root)], check=True)
    try:
        subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")],
                       check=True)
        subprocess.run(["mount", "--rbind", "/dev", str(root / "dev")],
                       check=True)
        subprocess.run(["mount", "--make-rslave", str(root / "dev")],
                       check=True)
        shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
        yield root
    finally:
        subprocess.run(["umount", "-R", "-l", str(root)])


def chroot(root, *argv, check=True, timeout=600, input=None):
    r = subprocess.run(["chroot", str(root), *argv], capture_output=True,
                       text=True, timeout=timeout, input=input,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            "DEBIAN_FRONTEND": "noninteractive",
                            "LC_ALL": "C"})
    if check and r.returncode:
        raise AssertionError(f"chroot {' '.join(argv)}: exit "
                             f"{r.returncode}\n{r.stdout[-3000:]}"
                             f"{r.stderr[-3000:]}")
    return r
