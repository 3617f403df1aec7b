# SPDX-License-Identifier: Apache-2.0
"""Shared pieces of the real-Airflow tests (run with the Airflow venv's
python: tests/run.sh). The dagfs mounts come from the integration
tests' Dagfs class; Airflow and PostgreSQL from tests/rigs/airflow.py."""

import importlib.util
import json
import os
import pathlib
import shutil
import sys
import tempfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "rigs"))

_spec = importlib.util.spec_from_file_location(
    "dagfs_itest", REPO / "tests" / "integration" / "conftest.py")
itest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(itest)

Dagfs = itest.Dagfs
wait_for = itest.wait_for


def need(cond, reason):
    if not cond:
        itest.skip_or_fail(reason)


@pytest.fixture(scope="module")
def world_dir():
    """A temporary directory every user can traverse (PostgreSQL runs as
    `postgres`); removed at the end of the module."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="dagfs-af-"))
    d.chmod(0o755)
    yield d
    for sub in d.iterdir():
        itest.force_unmount(sub)
    shutil.rmtree(d, ignore_errors=True)


class Mounts:
    """dagfs mounts of one module, stopped together."""

    def __init__(self, base):
        self.base = pathlib.Path(base)
        self.all = []

    def mount(self, name, sources, args=(), ready=None, materialize=False):
        mnt = self.base / name
        mnt.mkdir(exist_ok=True)
        cache = self.base / f"{name}.cache"
        if materialize:
            m = Dagfs(mnt, cache, sources, ["--materialize", str(mnt), *args],
                      stderr_path=self.base / f"{name}.stderr")
            m.argv = lambda: ([str(m.binary), "mount", "--cache", str(cache)]
                              + [a for s in sources for a in ("--source", s)]
                              + ["--materialize", str(mnt), *args])
            m.start(wait_mounted=False)
            m.wait(lambda: (mnt / "current").exists() and (ready is None or ready(mnt)),
                   timeout=30, what=f"{mnt}/current")
        else:
            m = Dagfs(mnt, cache, sources, list(args),
                      stderr_path=self.base / f"{name}.stderr")
            m.start(ready=ready, timeout=60)
        self.all.append(m)
        return m

    def restart(self, m, ready=None):
        """A new daemon with the same arguments over @m's mountpoint."""
        n = Dagfs(m.mnt, m.cache, m.sources, m.args, stderr_path=str(m.stderr_path) + ".2")
        n.start(ready=ready, timeout=60)
        self.all.append(n)
        return n

    def stop(self):
        for m in reversed(self.all):
            m.stop()


def status(mnt):
    return json.loads((pathlib.Path(mnt) / ".dagfs" / "status.json").read_text())


def revision(mnt, source):
    return status(mnt)["sources"][source]["revision"]


@pytest.fixture(scope="session")
def dagfs_bin():
    b = itest.dagfs_binary()
    need(os.access(b, os.X_OK), f"{b} not built (set DAGFS_BUILD or run meson/ninja)")
    need(os.path.exists("/dev/fuse"), "/dev/fuse is missing")
    return b
