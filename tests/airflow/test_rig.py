# SPDX-License-Identifier: Apache-2.0
"""The Airflow rig's own promise: stop() leaves no process of what it
started, whatever process group or session a descendant moved to (as
Airflow's task supervisor setpgid()s each task)."""

import os
import sys
import time

from airflow_rig import Process, wait

# a leader that ignores SIGTERM, a child in a process group of its own, a
# grandchild in a session of its own; each writes its pid
SCRIPT = r"""
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
out = sys.argv[1]
grp = subprocess.Popen([sys.executable, "-c",
    "import os, subprocess, sys, time; os.setpgid(0, 0); "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], "
    "start_new_session=True, stdin=subprocess.DEVNULL); time.sleep(300)"])
with open(out + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grp.pid}\n")
os.rename(out + ".tmp", out)
time.sleep(300)
"""


def test_stop_kills_children_in_other_groups_and_sessions(tmp_path):
    pids = tmp_path / "pids"
    p = Process("tree", [sys.executable, "-c", SCRIPT, str(pids)], dict(os.environ),
                tmp_path / "tree.log").start()
    wait(pids.exists, 30, "the process tree to start")
    leader, child = map(int, pids.read_text().split())

    def descendants():
        return {int(d) for d in os.listdir("/proc") if d.isdigit()
                and _ppid(int(d)) == child}
    grandchild, = wait(descendants, 30, "the grandchild")
    assert os.getpgid(child) == child and os.getsid(grandchild) == grandchild
    t0 = time.monotonic()
    assert p.stop(timeout=2) == []
    assert time.monotonic() - t0 < 20
    for pid in (leader, child, grandchild):
        assert not _alive(pid), pid


def _ppid(pid):
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    return int(raw[raw.rindex(")") + 2:].split()[1])


def _alive(pid):
    try:
        raw = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return raw[raw.rindex(")") + 2] != "Z"
