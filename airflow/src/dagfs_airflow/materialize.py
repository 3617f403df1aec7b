# SPDX-License-Identifier: Apache-2.0
"""A dagfs materialise directory as a bundle sees it: ``DIR/current ->
.revs/<mid>``, each ``DIR/.revs/<mid>/`` one immutable tree of all
sources, described by ``DIR/.revs/<mid>.json``; replaced trees are
removed ``grace`` later."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagfs_airflow.layout import AirflowException, Layout, io, parse_status


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
