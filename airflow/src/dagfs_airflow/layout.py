# SPDX-License-Identifier: Apache-2.0
"""What a dagfs mount, or a materialise directory, offers a DAG bundle:
the Layout interface and the checked, time-limited I/O both layouts use
(fuse.py and materialize.py implement them).

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

        from dagfs_airflow.fuse import FuseLayout
        from dagfs_airflow.materialize import MatLayout

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
