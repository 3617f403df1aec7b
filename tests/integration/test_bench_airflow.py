# SPDX-License-Identifier: Apache-2.0
"""The parts of tests/bench/bench_airflow.py its figures rest on that run
without Airflow: the counting proxy (the `pinned` bytes) in front of a real
git daemon, and the generated DAG files (the `parse` measure)."""

import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "bench"))
sys.path.insert(0, str(REPO / "tests" / "rigs"))

import bench_airflow  # noqa: E402
from git_servers import Servers  # noqa: E402


@pytest.fixture
def servers(tmp_path):
    s = Servers(tmp_path / "git")
    yield s
    s.close()


def test_counter_counts_what_a_clone_fetched(servers, tmp_path):
    daemon = servers.daemon()
    repo = servers.repo("counted")
    blob = os.urandom(200_000)  # incompressible: the pack is at least this
    repo.write("blob.bin", blob)
    repo.commit("blob")
    c = bench_airflow.Counter(daemon.port)
    try:
        url = f"git://127.0.0.1:{c.port}/counted.git"
        subprocess.run(["git", "clone", "-q", url, str(tmp_path / "clone")], check=True,
                       capture_output=True, timeout=60)
        assert (tmp_path / "clone" / "blob.bin").read_bytes() == blob
        down, up, conns = c.read()
        assert 200_000 <= down < 230_000, down
        assert 0 < up < 10_000, up
        assert conns == 1
        c.reset()
        assert c.read() == (0, 0, 0)
        subprocess.run(["git", "-C", str(tmp_path / "clone"), "fetch", "-q"], check=True,
                       capture_output=True, timeout=60)
        down, _, conns = c.read()
        assert conns == 1 and 0 < down < 10_000, (down, conns)  # refs only
    finally:
        c.stop()


def test_generated_dag_files(tmp_path):
    bench_airflow.gen_files(tmp_path / "d", 20, seed=1)
    files = sorted((tmp_path / "d").iterdir())
    assert [f.name for f in files] == [f"f{i:05d}.py" for i in range(20)]
    for f in files:
        text = f.read_text()
        compile(text, str(f), "exec")
        # Airflow's safe-mode heuristic must pick every file up
        assert "dag" in text.lower() and "airflow" in text.lower()
        assert 'dag_id=f"{_HERE.parent.name}_{_HERE.stem}"' in text
    again = tmp_path / "again"
    bench_airflow.gen_files(again, 20, seed=1)
    assert all((again / f.name).read_bytes() == f.read_bytes() for f in files)
