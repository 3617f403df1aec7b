# SPDX-License-Identifier: Apache-2.0
"""DagfsDagBundle: an Airflow 3 DAG bundle whose versions are dagfs
revisions, served from the mount's immutable trees with no copy.

    [dag_processor]
    dag_bundle_config_list = [{"name": "team-a",
        "classpath": "dagfs_airflow.DagfsDagBundle",
        "kwargs": {"mount": "/opt/airflow/dags", "source": "team-a"}}]

How Airflow uses a bundle (airflow/dag_processing/manager.py and
airflow/sdk/execution_time/task_runner.py):

- the dag-processor builds it with ``version=None``, calls initialize()
  once, then refresh() every ``refresh_interval`` seconds, and after each
  refresh get_current_version(), which it records on every DAG it parses
  from ``path`` and so on every DagRun;
- a worker builds it with ``version=`` the DagRun's version, calls
  initialize(), and loads the DAG file from ``path``;
- Airflow's version cleanup takes ``_tracking/<name>/<version>`` lock files
  and ``shutil.rmtree``s ``versions_dir/<version>``.

Here the version is the dagfs revision of ``source`` (the git commit id,
or the revision id of an S3 or dir source), or the tree id of the whole
view when ``source`` is left out. On a worker ``path`` is the immutable
``<mount>/.dagfs/revs/<source>/<version>`` (or ``.dagfs/trees/<id>``, or
``<dir>/.revs/<id>`` of a materialise directory). On the dag-processor
``path`` is a symlink in Airflow's bundle storage, ``<base_dir>/current``
(to ``links/<version>``, which links to the tree), replaced by one
rename() to point at the newest such tree: the files
found at a refresh and every file parsed after it come from the version
get_current_version() names, including files Airflow queued before the
refresh (its queue keeps the path it listed them under). The bundle
never writes into the mount; ``versions_dir/<version>/`` holds only an
empty marker so Airflow's cleanup has something to remove.

A version change re-parses what it changed, at once. Airflow 3.3.2 does
not: on a new version its manager (``_refresh_dag_bundles``) records the
version, lists the files, deactivates deleted ones and queues only files
it has never seen (``_add_new_files_to_queue``); a known file is parsed
again before ``min_file_process_interval`` (default 30 s) only if its
mtime is newer than the end of its last parse (``prepare_file_queue``,
``_sort_by_mtime``). A dagfs mtime is when the content changed (a git
file's commit time, in whole seconds; S3's LastModified; a dir file's
own), so a routine parse ending between that moment and the refresh that
publishes it hides the change for up to 30 s. Stamping mtimes cannot fix
that: a parse of the old content may end after any time dagfs could
stamp. So at a version change refresh() compares the two trees (the
content hash dagfs gives every file, ``user.dagfs.hash``) and files a
DagPriorityParsingRequest for each file Airflow lists (its own
``list_py_file_paths``) whose content changed: what the UI's "reparse"
button does, taken at the next loop, after the new version is recorded,
so the parse is filed under the version whose file it read. A parse of
the old content still running then makes Airflow drop that request
(``_start_new_processes`` skips a file being parsed) and files the old
content under the new version (it takes the version when the parse
ends), so the same files are requested once more FOLLOW_UP seconds
later (airflow/UPSTREAM.md).
"""

from __future__ import annotations

import errno
import logging
import os
import time
from pathlib import Path
from urllib.parse import urlparse

from airflow.dag_processing.bundles.base import BaseDagBundle

from dagfs_airflow.layout import AirflowException, Layout, io

try:  # Airflow 3.3+
    from airflow.dag_processing.bundles.base import BundleVersion
except ImportError:  # pragma: no cover - Airflow 3.0-3.2 take a plain string
    BundleVersion = None

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 1
"""Default ``refresh_interval`` (s): Airflow's is 300, for bundles whose
refresh fetches from a remote; this one's reads status.json. Airflow
also checks bundles only every [dag_processor]
bundle_refresh_check_interval (default 5 s)."""

FOLLOW_UP = 5.0
"""Seconds after a version change at which the changed files are asked
for once more (a parse of their old content may have been running)."""

FORGES = {  # host: template after the repository URL
    "github.com": "/tree/{version}",
    "gitlab.com": "/-/tree/{version}",
    "bitbucket.org": "/src/{version}",
}


def forge_url_template(url: str, subpath: str | None = None) -> str | None:
    """The web URL template of git remote @url on a known forge (GitHub,
    GitLab, Bitbucket, or a host under one of those), with ``{version}``
    for the commit; None for any other host. Credentials are dropped."""
    if url.startswith("git@") and ":" in url:
        host, _, repo = url[4:].partition(":")
        url = f"https://{host}/{repo}"
    elif url.startswith("ssh://"):
        p = urlparse(url)
        url = f"https://{p.hostname}{p.path}"
    p = urlparse(url)
    if p.scheme not in ("https", "http", "git", "ssh") or not p.hostname:
        return None
    path = p.path.rstrip("/")
    if path.endswith(".git"):
        path = path[:-4]
    for forge, tail in FORGES.items():
        if p.hostname == forge or p.hostname.endswith("." + forge):
            t = f"https://{p.hostname}{path}{tail}"
            sub = (subpath or "").strip("/")
            return f"{t}/{sub}" if sub else t
    return None


def _content_key(p: Path):
    """What tells two versions of file @p apart: dagfs's content hash,
    else (a materialise directory, whose files are hard links to its
    store) the size and inode."""
    try:
        return os.getxattr(p, "user.dagfs.hash")
    except OSError as e:
        if e.errno == errno.ENOENT:
            raise
    st = os.stat(p)
    return st.st_size, st.st_ino


class DagfsDagBundle(BaseDagBundle):
    """A DAG bundle over a dagfs mount or materialise directory.

    :param mount: the dagfs mount (e.g. ``/opt/airflow/dags``) or a
        materialise directory (the one holding ``current``)
    :param source: a source name of that mount; left out, the bundle is
        the whole tree, versioned by tree id
    :param refresh_interval: seconds between refreshes on the dag-processor
        (default 1, not Airflow's 300: a refresh only reads status.json)
    :param timeout: seconds any one look at the mount may take before the
        bundle gives up with an AirflowException (default 60; a git
        revision fetched on demand by the daemon counts against it)
    """

    supports_versioning = True

    def __init__(self, *, mount: str, source: str | None = None, timeout: float = 60.0,
                 **kwargs) -> None:
        # a refresh reads one small file, and dagfs itself does the polling
        kwargs.setdefault("refresh_interval", REFRESH_INTERVAL)
        super().__init__(**kwargs)
        self.mount = Path(mount)
        self.source = source or None
        self.timeout = float(timeout)
        self._layout: Layout | None = None
        self._served: Path | None = None  # worker: the checked tree of ``version``
        self.link = self.base_dir / "current"
        """dag-processor: ``path``, a symlink to ``links/<version>``, which
        links to that version's tree in the mount."""
        self.links = self.base_dir / "links"
        self._moved = False  # dag-processor: refreshed once in this process
        self._again: tuple[float, set[str]] | None = None  # (when, files) to ask for again

    def __repr__(self) -> str:
        return (f"<DagfsDagBundle name={self.name!r} mount={str(self.mount)!r} "
                f"source={self.source!r} version={self.version!r}>")

    @property
    def layout(self) -> Layout:
        """The mount, checked on first use (AirflowException if bad)."""
        if self._layout is None:
            # a worker waits out a dagfs restart; the dag-processor does not
            # (its refresh fails, and Airflow keeps what it has)
            self._layout = Layout.open(self.mount, self.source, self.timeout,
                                       patient=bool(self.version))
        return self._layout

    def initialize(self) -> None:
        """Worker: check that the recorded version is served (a git commit
        no longer retained is fetched by the daemon during the lookup) and
        fail at once if not. dag-processor: refresh()."""
        if self.version:
            self._served = self.layout.check(self.version)
            self._mark(self.version)
        else:
            self.refresh()
        super().initialize()

    @property
    def path(self) -> Path:
        """Worker: the immutable tree of ``version`` (known once
        initialize() checked it; before that, where a FUSE mount serves
        it). dag-processor: the ``current`` symlink in bundle storage.
        Never raises, so Airflow may ask before initialize()."""
        if not self.version:
            return self.link
        if self._served is not None:
            return self._served
        if self.source is not None:
            return self.mount / ".dagfs" / "revs" / self.source / self.version
        return self.mount / ".dagfs" / "trees" / self.version

    def get_current_version(self):
        """The version ``path`` serves: the worker's pinned one, or the one
        the dag-processor's ``current`` link names (None before the first
        refresh)."""
        if self.version:
            v = self.version
        else:
            try:
                v = Path(os.readlink(self.link)).name
            except OSError:
                return None
        return BundleVersion(version=v) if BundleVersion else v

    def refresh(self) -> None:
        """Move ``path`` to the newest published version with one
        rename(), and have Airflow re-parse the files that changed. A
        mount that cannot be read raises, so Airflow keeps what it has and
        neither lists nor deactivates anything."""
        if self.version:
            raise AirflowException("Refreshing a specific version is not supported")
        with self.lock():
            version, target = self.layout.current()
            rel = f"links/{version}"
            try:
                old = Path(os.readlink(self.link)).name
                old_target = os.readlink(self.links / old)
            except OSError:
                old = old_target = None
            if old == version and old_target == str(target):
                self._ask_again()
                return
            self.layout.check(version)
            # on the first refresh of a process Airflow parses every file anyway
            changed = (self._changed(Path(old_target), target)
                       if self._moved and old_target else set())
            self._mark(version)
            self.links.mkdir(parents=True, exist_ok=True)
            self._replace_link(self.links / version, str(target))
            self._replace_link(self.link, rel)
            self._moved = True
            for stale in self.links.iterdir():  # Airflow resolves only ``current``
                if stale.name != version and stale.is_symlink():
                    stale.unlink()
            log.info("dagfs bundle %s: now at version %s (%s); %d changed file(s) to "
                     "re-parse", self.name, version, target, len(changed))
            if changed:
                again = self._again[1] if self._again else set()
                self._again = (time.monotonic() + FOLLOW_UP, changed | again)
                self._request_parse(changed)

    def _changed(self, old: Path, new: Path) -> set[str]:
        """The files of tree @new that Airflow lists (its own rule:
        .airflowignore, ``.py`` or zip, the safe-mode heuristic) and whose
        content differs from the same path in tree @old; a file that @old
        lacks is new to Airflow, which queues it itself. Within the mount's
        time limit (AirflowException past it)."""
        from airflow.configuration import conf
        from airflow.utils.file import list_py_file_paths

        safe = conf.getboolean("core", "DAG_DISCOVERY_SAFE_MODE", fallback=True)

        def diff() -> set[str]:
            out = set()
            try:
                had = old.is_dir()
            except OSError:
                had = False
            for p in list_py_file_paths(new, safe_mode=safe):
                r = os.path.relpath(p, new)
                before = None  # the old tree is gone: every file counts as changed
                if had:
                    try:
                        before = _content_key(old / r)
                    except FileNotFoundError:
                        continue
                    except OSError:
                        pass
                if before is None or before != _content_key(Path(p)):
                    out.add(r)
            return out
        return io(diff, self.timeout, f"dagfs bundle {self.name}: comparing {old} with {new}",
                  self.layout.patient)

    def _ask_again(self) -> None:
        if self._again and time.monotonic() >= self._again[0]:
            files = self._again[1]
            self._again = None
            self._request_parse(files)

    def _request_parse(self, files: set[str]) -> None:
        """File a DagPriorityParsingRequest for each of @files (relative
        paths) not already requested. Failing that (no database here), the
        files wait for Airflow's own schedule: logged, not raised."""
        try:
            from sqlalchemy import select

            from airflow.models.dagbag import DagPriorityParsingRequest as Req
            from airflow.utils.session import create_session

            with create_session() as session:
                have = set(session.scalars(select(Req.relative_fileloc)
                                           .where(Req.bundle_name == self.name)))
                for f in sorted(files - have):
                    session.add(Req(bundle_name=self.name, relative_fileloc=f))
        except Exception as e:  # noqa: BLE001 - the version change stands
            log.warning("dagfs bundle %s: cannot ask Airflow to re-parse %d changed file(s) "
                        "(they wait for min_file_process_interval): %s", self.name, len(files),
                        str(e).splitlines()[0] if str(e) else type(e).__name__)

    @staticmethod
    def _replace_link(link: Path, target: str) -> None:
        tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, link)

    def _mark(self, version: str) -> None:
        """An empty ``versions_dir/<version>/`` for Airflow's cleanup to
        rmtree (it fails on a missing one); never the mount itself."""
        try:
            (self.versions_dir / version).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            log.warning("dagfs bundle %s: cannot create %s: %s", self.name,
                        self.versions_dir / version, e)

    def view_url_template(self) -> str | None:
        """An explicit ``view_url_template`` kwarg, else for a git source
        on GitHub, GitLab or Bitbucket the forge's tree URL of
        ``{version}`` (read from the mount's status.json, which carries
        the remote URL without credentials). Works before initialize()."""
        if self._view_url_template:
            return self._view_url_template
        if self.source is None:
            return None
        try:
            layout = self.layout
            if layout.kind != "fuse":
                return None
            src = layout.source_status(layout.status())
        except AirflowException as e:
            log.debug("dagfs bundle %s: no view URL: %s", self.name, e)
            return None
        if src.get("type") != "git" or not isinstance(src.get("url"), str):
            return None
        return forge_url_template(src["url"], src.get("subpath"))
