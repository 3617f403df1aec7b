# SPDX-License-Identifier: Apache-2.0
"""What a dagfs mount, or a materialise directory, offers a DAG bundle.

Read-only: nothing here writes into the tree. Two layouts:

- a FUSE mount: ``.dagfs/status.json`` names each source's current
  revision (and, with a dagfs that composes trees, the current tree id);
  ``.dagfs/revs/<source>/<revision>/`` and ``.dagfs/trees/<id>/`` are the
  immutable trees of any retained version;
- a materialise directory (``dagfs mount --materialize DIR``):
  ``DIR/current`` is a symlink to ``.revs/<id>``, each ``DIR/.revs/<id>/``
  one immutable tree of all sources; replaced trees go ``grace`` later.

Every call into the mount runs with a time limit (a hung FUSE daemon
would otherwise block the caller for good) and every failure is an
``AirflowException`` with the cause in one line.
"""

from __future__ import annotations

import errno
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

try:  # Airflow 3.1+: the SDK's exception is the one Airflow catches
    from airflow.sdk.exceptions import AirflowException
except ImportError:  # pragma: no cover - older Airflow
    from airflow.exceptions import AirflowException

T = TypeVar("T")

STATUS = ".dagfs/status.json"


def bounded(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run @fn in a thread and return its result, or raise
    AirflowException naming @what if it has not returned in @timeout
    seconds (the thread is left behind: a FUSE request cannot be
    cancelled from here). Exceptions of @fn are raised as they are."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["v"] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box["e"] = e

    t = threading.Thread(target=run, name="dagfs-bundle-io", daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AirflowException(f"{what}: no answer from dagfs within {timeout:g} s")
    if "e" in box:
        raise box["e"]
    return box["v"]


def _oserror(what: str, e: OSError) -> AirflowException:
    reason = e.strerror or str(e)
    if e.errno == errno.ENOTCONN:
        reason += " (the dagfs daemon is not running: a dead mount)"
    return AirflowException(f"{what}: {reason}")


def io(fn: Callable[[], T], timeout: float, what: str, patient: bool) -> T:
    """bounded(@fn), an OSError raised as AirflowException naming @what.
    @patient: a dead mount (ENOTCONN: the daemon was killed and is being
    restarted over it) is tried again until the time limit, so a task
    that starts in that window rides it out."""
    def run() -> T:
        deadline = time.monotonic() + timeout - 1
        while True:
            try:
                return fn()
            except OSError as e:
                if not (patient and e.errno == errno.ENOTCONN
                        and time.monotonic() < deadline):
                    raise _oserror(what, e) from None
            time.sleep(0.25)
    return bounded(run, timeout, what)


def parse_status(f: Path, raw: bytes) -> dict[str, Any]:
    """status.json, or a materialised tree's record of the same shape,
    read from @f: parsed and checked."""
    try:
        st = json.loads(raw)
    except ValueError as e:
        raise AirflowException(f"{f}: not valid JSON ({e})") from None
    if not isinstance(st, dict) or not isinstance(st.get("sources"), dict):
        raise AirflowException(f"{f}: no \"sources\" object")
    return st


class Layout:
    """One mount as a bundle sees it: the newest version and where any
    version's files are. @source None means the whole tree."""

    kind = ""

    def __init__(self, mount: Path, source: str | None, timeout: float, patient: bool):
        self.mount = mount
        self.source = source
        self.timeout = timeout
        self.patient = patient

    @staticmethod
    def open(mount: str | os.PathLike, source: str | None, timeout: float,
             patient: bool = False) -> Layout:
        """The layout of @mount, checked: AirflowException if it is not
        a dagfs mount or materialise directory. @patient: see io()."""
        m = Path(mount)
        if not m.is_absolute():
            raise AirflowException(f"dagfs mount {m}: not an absolute path")

        def probe() -> str:
            if (m / STATUS).is_file():
                return "fuse"
            cur = m / "current"
            if cur.is_symlink() and os.readlink(cur).startswith(".revs/"):
                return "materialize"
            os.stat(m)
            return ""

        kind = io(probe, timeout, f"dagfs mount {m}", patient)
        if kind == "fuse":
            return FuseLayout(m, source, timeout, patient)
        if not kind:
            raise AirflowException(
                f"{m} is not a dagfs mount (no {STATUS}) nor a materialise "
                "directory (no current -> .revs/<id>)")
        return MatLayout(m, source, timeout, patient)

    def current(self) -> tuple[str, Path]:
        """(version, path) of the newest published version."""
        raise NotImplementedError

    def path_of(self, version: str) -> Path:
        """Where the files of @version are (no I/O)."""
        raise NotImplementedError

    def missing(self, version: str) -> str:
        """Why @version cannot be served: one line."""
        raise NotImplementedError

    def check(self, version: str) -> Path:
        """path_of(@version), or AirflowException if it is not there. For
        a git source a dagfs that fetches by commit does it during this
        lookup, within the time limit."""
        p = self.path_of(version)
        if not io(p.is_dir, self.timeout, f"dagfs version {version} at {p}", self.patient):
            raise AirflowException(self.missing(version))
        return p


class FuseLayout(Layout):
    kind = "fuse"

    def status(self) -> dict[str, Any]:
        """.dagfs/status.json, parsed and checked."""
        f = self.mount / STATUS
        raw = io(f.read_bytes, self.timeout, f"cannot read {f}", self.patient)
        return parse_status(f, raw)

    def source_status(self, st: dict[str, Any]) -> dict[str, Any]:
        src = st["sources"].get(self.source)
        if not isinstance(src, dict):
            names = ", ".join(sorted(st["sources"])) or "none"
            raise AirflowException(
                f"dagfs mount {self.mount} has no source {self.source!r} (sources: {names})")
        return src

    def current(self) -> tuple[str, Path]:
        st = self.status()
        if self.source is None:
            tree = st.get("tree")
            if isinstance(tree, dict):
                tree = tree.get("id")
            if not tree:
                raise AirflowException(
                    f"dagfs mount {self.mount}: {STATUS} names no whole-tree version "
                    "(this dagfs has no .dagfs/trees, or a source has no revision yet); "
                    "give source=")
            rev = str(tree)
        else:
            rev = self.source_status(st).get("revision")
            if not rev:
                raise AirflowException(
                    f"dagfs source {self.source} at {self.mount} has no published revision yet")
        return rev, self.path_of(rev)

    def path_of(self, version: str) -> Path:
        if self.source is None:
            return self.mount / ".dagfs" / "trees" / version
        return self.mount / ".dagfs" / "revs" / self.source / version

    def missing(self, version: str) -> str:
        try:
            st = self.status()
        except AirflowException:
            st = {"sources": {}}
        if self.source is None:
            keeps = sorted({f"{n} keep={v.get('keep', 5)}" for n, v in st["sources"].items()
                            if isinstance(v, dict)})
            return (f"dagfs tree {version} is not at {self.path_of(version)}: a tree is served "
                    "while every source revision in it is retained or can be fetched "
                    f"({', '.join(keeps) or 'keep= default 5'}); raise keep= on the sources")
        src = st["sources"].get(self.source)
        keep = src.get("keep", 5) if isinstance(src, dict) else 5
        return (f"dagfs source {self.source}: revision {version} is not retained at "
                f"{self.path_of(version)} and cannot be fetched (keep={keep} retains the "
                "newest snapshots): raise keep= on the source")


class MatLayout(Layout):
    """``DIR/current -> .revs/<mid>``; a dagfs that records it writes
    ``DIR/.revs/<mid>.json`` (status.json's shape: the tree id and each
    source's revision and ``at``) before switching ``current``. Versions are
    then tree ids or source revisions, as on a FUSE mount; without the
    record (an older dagfs) the whole-tree version is <mid> itself."""

    kind = "materialize"

    def _meta(self, mid: str) -> dict[str, Any] | None:
        f = self.mount / ".revs" / f"{mid}.json"

        def read() -> bytes | None:
            try:
                return f.read_bytes()
            except FileNotFoundError:
                return None
        raw = io(read, self.timeout, f"cannot read {f}", self.patient)
        if raw is None:
            return None
        return parse_status(f, raw)

    def _served(self, mid: str, meta: dict[str, Any] | None) -> tuple[str, Path]:
        """(version, path) that the materialised tree @mid gives this bundle."""
        root = self.mount / ".revs" / mid
        if self.source is None:
            return str(meta.get("tree") or mid) if meta else mid, root
        if meta is None:
            raise AirflowException(
                f"{self.mount}/.revs/{mid}.json is missing: this dagfs records no source "
                f"revisions in a materialise directory, so source={self.source!r} cannot be "
                "served (leave source out)")
        src = meta["sources"].get(self.source)
        if not isinstance(src, dict):
            names = ", ".join(sorted(meta["sources"])) or "none"
            raise AirflowException(f"materialise directory {self.mount} has no source "
                                   f"{self.source!r} (sources: {names})")
        if not src.get("revision"):
            raise AirflowException(f"dagfs source {self.source} in {self.mount} has no "
                                   "revision yet")
        at = str(src.get("at") or "")
        return str(src["revision"]), root / at if at else root

    def current(self) -> tuple[str, Path]:
        cur = self.mount / "current"
        target = io(lambda: os.readlink(cur), self.timeout, f"cannot read {cur}", self.patient)
        if not target.startswith(".revs/") or "/" in target[6:] or not target[6:]:
            raise AirflowException(f"{cur} -> {target}: not a .revs/<id> link")
        mid = target[6:]
        return self._served(mid, self._meta(mid))

    def check(self, version: str) -> Path:
        """The materialised tree that holds @version: the current one, or
        any older one not yet removed."""
        v, p = self.current()
        if v == version:
            return p

        def scan() -> list[str]:
            return sorted(f.name[:-5] for f in (self.mount / ".revs").iterdir()
                          if f.name.endswith(".json") and not f.name.startswith("."))
        for mid in io(scan, self.timeout, f"cannot list {self.mount}/.revs", self.patient):
            try:
                v, p = self._served(mid, self._meta(mid))
            except AirflowException:
                continue  # removed meanwhile, or another layout
            if v == version and io(p.is_dir, self.timeout, str(p), self.patient):
                return p
        p = self.mount / ".revs" / version  # an older dagfs: the version is <mid>
        if self.source is None and io(p.is_dir, self.timeout, str(p), self.patient):
            return p
        raise AirflowException(self.missing(version))

    def path_of(self, version: str) -> Path:
        return self.check(version)

    def missing(self, version: str) -> str:
        what = f"source {self.source} revision" if self.source else "tree"
        return (f"dagfs {what} {version} is gone from materialise directory {self.mount} "
                "(a replaced tree is removed grace= after it was replaced, default 60s): "
                "raise grace=")
