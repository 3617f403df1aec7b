# SPDX-License-Identifier: Apache-2.0
"""A dagfs FUSE mount as a bundle sees it: ``.dagfs/status.json`` names
each source's current revision and the current tree id;
``.dagfs/revs/<source>/<revision>/`` and ``.dagfs/trees/<id>/`` are the
immutable trees of any retained version (a git commit that is not
retained is fetched by the daemon on lookup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagfs_airflow.layout import STATUS, AirflowException, Layout, io, parse_status


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
