# SPDX-License-Identifier: Apache-2.0
"""The Debian package, as a VM would get it: built with dpkg-buildpackage
(debhelper, meson), installed with dpkg -i into a fresh debootstrap
Debian 12 tree with its dependencies resolved by apt, then `dagfs
--version`, a `mount -t fuse.dagfs` through the packaged mount helper and
its files run from inside that tree; the manual page generated from the
option table checked by groff; `systemd-analyze verify` on the package's
unit and on every unit the VM target renders.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, build_dir, is_fuse_mounted, skip_or_fail, wait_for
from test_k8s import run_prov

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "rigs"))
from debian_tree import apt_mirror, bookworm_tree, chroot, overlay_root  # noqa: E402

VERSION = "0.1.0"


def need(*tools):
    for t in tools:
        if not shutil.which(t):
            skip_or_fail(f"{t} is missing")
    if os.geteuid():
        skip_or_fail("needs root (chroot, mounts)")


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    need("dpkg-buildpackage", "dh", "git")
    out = tmp_path_factory.mktemp("deb")
    r = subprocess.run([str(REPO / "debian" / "build-deb.sh"), str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    path = pathlib.Path(r.stdout.strip().splitlines()[-1])
    assert path.name == f"dagfs_{VERSION}_amd64.deb"
    return path


BACKPORTS = """Types: deb
URIs: {mirror}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def backports_needed(deb):
    """Whether the package depends on a library only bookworm-backports has
    (libgit2 1.8, when the build linked it)."""
    dep = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"],
                         capture_output=True, text=True, check=True).stdout
    return "libgit2-1.8" in dep


@pytest.fixture(scope="module")
def installed(deb, tmp_path_factory):
    """A fresh bookworm tree with the package installed: dpkg -i, then
    apt for the dependencies dpkg left unconfigured."""
    need("debootstrap", "chroot")
    base = bookworm_tree()
    work = tmp_path_factory.mktemp("root")
    with overlay_root(base, work) as root:
        shutil.copy(deb, root / "tmp" / deb.name)
        first = chroot(root, "dpkg", "-i", f"/tmp/{deb.name}", check=False)
        if backports_needed(deb):
            # as install.sh does on Debian 12
            (root / "etc/apt/sources.list.d/bookworm-backports.sources") \
                .write_text(BACKPORTS.format(mirror=apt_mirror()))
        chroot(root, "apt-get", "update", "-q")
        chroot(root, "apt-get", "install", "-f", "-y", "-q",
               "--no-install-recommends")
        # what a VM has and minbase has not: systemd, for its verify
        chroot(root, "apt-get", "install", "-y", "-q",
               "--no-install-recommends", "systemd")
        yield root, first


def test_package_contents(deb):
    files = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True,
                           text=True, check=True).stdout
    for f in ("./usr/bin/dagfs", "./usr/bin/dagfs-provision",
              "./sbin/mount.fuse.dagfs", "./lib/systemd/system/dagfs.service",
              "./usr/share/man/man1/dagfs.1.gz", "./etc/dagfs/dagfs.conf",
              "./etc/default/dagfs"):
        assert f in files, f
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends",
                           "Package", "Version"], capture_output=True,
                          text=True, check=True).stdout
    # the libgit2 the build linked: Debian 12's 1.5, or 1.8 from backports
    libgit2 = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}",
                              "libgit2-dev"], capture_output=True, text=True,
                             check=True).stdout
    runtime = re.search(r"libgit2-1\.\d+", libgit2).group(0)
    assert "libfuse3-3" in info and runtime in info and "fuse3" in info
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(deb)],
                               capture_output=True, check=True).stdout
    assert b"/etc/dagfs/dagfs.conf" in conffiles


def test_installs_into_fresh_bookworm_and_mounts(installed, tmp_path):
    root, first = installed
    # dpkg -i alone cannot configure it: the libraries come from apt
    assert first.returncode != 0 and "dependency problems" in \
        first.stderr + first.stdout
    st = chroot(root, "dpkg-query", "-W", "-f", "${Status} ${Version}",
                "dagfs").stdout
    assert st == f"install ok installed {VERSION}"
    assert chroot(root, "dagfs", "--version").stdout == f"dagfs {VERSION}\n"
    assert (root / "usr/share/man/man1/dagfs.1.gz").exists()
    # a config file as the device, the packaged helper, from inside
    (root / "srv/dags/team").mkdir(parents=True)
    (root / "srv/dags/team/etl.py").write_text("revision = 1\n")
    (root / "etc/dagfs/test.conf").write_text(
        "[dagfs]\ncache = /var/cache/dagfs\n\n[source dags]\ntype = dir\n"
        "location = /srv/dags\n")
    (root / "mnt/dags").mkdir(parents=True)
    mnt = root / "mnt/dags"
    log = tmp_path / "mount.log"
    try:
        # the daemon stays in the background with mount's stdio: a file,
        # not a pipe this test would wait on until it exits
        with open(log, "w") as f:
            r = subprocess.run(["chroot", str(root), "mount", "-t",
                                "fuse.dagfs", "/etc/dagfs/test.conf",
                                "/mnt/dags", "-o",
                                "allow_other,uid=50000,gid=0"],
                               stdout=f, stderr=f, timeout=60,
                               env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert r.returncode == 0, log.read_text()
        assert is_fuse_mounted(mnt)
        wait_for(lambda: (mnt / "team/etl.py").exists(), timeout=20,
                 what="the first revision in the mount")
        assert (mnt / "team/etl.py").read_text() == "revision = 1\n"
        st = os.stat(mnt / "team/etl.py")
        assert (st.st_uid, st.st_gid) == (50000, 0)
        assert "dags" in chroot(root, "dagfs", "status", "--cache",
                                "/var/cache/dagfs").stdout
    finally:
        if is_fuse_mounted(mnt):
            chroot(root, "umount", "/mnt/dags", check=False)
    wait_for(lambda: not is_fuse_mounted(mnt), timeout=15,
             what="the mount is gone")


def test_package_unit_verifies(installed):
    need("systemd-analyze")
    root, _ = installed
    r = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                        "--man=no", "/lib/systemd/system/dagfs.service"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def airflow_venv():
    v = os.environ.get("DAGFS_AIRFLOW_VENV")
    if not v:
        import hashlib
        lock = REPO / "tests" / "airflow" / "requirements-lock.txt"
        if lock.exists():
            v = "/var/cache/dagfs-test/venv-airflow-" + hashlib.sha256(
                lock.read_bytes()).hexdigest()[:16]
    if not v or not os.access(f"{v}/bin/airflow", os.X_OK):
        if os.environ.get("DAGFS_AIRFLOW") == "0":
            pytest.skip("DAGFS_AIRFLOW=0: no Airflow venv")
        skip_or_fail("no Airflow venv (DAGFS_AIRFLOW_VENV, tests/run.sh)")
    return pathlib.Path(v)


def test_rendered_vm_units_verify(installed, tmp_path):
    """Every unit the VM target renders, as install.sh lays them out: in
    the installed tree, with the package's /usr/bin/dagfs and the real
    Airflow venv at AIRFLOW_HOME/venv, where install.sh puts it."""
    need("systemd-analyze")
    root, _ = installed
    venv = airflow_venv()
    out = tmp_path / "vm"
    run_prov("render", out, "--target", "vm", "--source",
             "git:https://example.com/d.git", "--image", "x/dagfs:1")
    units = sorted(out.glob("*.service"))
    assert [u.name for u in units] == [
        "airflow-api-server.service", "airflow-dag-processor.service",
        "airflow-scheduler.service", "dagfs.service"]
    dest = root / "etc/systemd/system"
    for u in units:
        shutil.copy(u, dest / u.name)
    where = root / "opt/airflow/venv"
    where.mkdir(parents=True)
    subprocess.run(["mount", "--bind", "-o", "ro", str(venv), str(where)],
                   check=True)
    try:
        r = subprocess.run(["systemd-analyze", "verify", f"--root={root}",
                            "--man=no",
                            *(f"/etc/systemd/system/{u.name}" for u in units)],
                           capture_output=True, text=True)
    finally:
        subprocess.run(["umount", "-l", str(where)])
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_man_page_is_generated_from_the_option_table():
    need("groff")
    page = build_dir() / "sidecar" / "dagfs.1"
    if not page.exists():
        skip_or_fail(f"{page} not built")
    text = page.read_text()
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(page)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    helps = subprocess.run([str(build_dir() / "sidecar" / "dagfs"), "mount",
                            "--help"], capture_output=True, text=True).stdout
    import re
    flags = set(re.findall(r"^  --([a-z-]+)", helps, re.M)) - {"help",
                                                              "version"}
    assert len(flags) > 15
    for flag in flags:  # every option of the table, as .B \-\-NAME
        assert f".B \\-\\-{flag.replace('-', chr(92) + '-')}" in text, flag
    for cmd in ("mount", "status", "sync", "fsck", "check-config"):
        assert f".SS dagfs {cmd.replace('-', chr(92) + '-')}" in text or \
            f".SS dagfs {cmd}" in text, cmd


def test_vm_install_sh_installs_the_package_and_a_pinned_airflow(tmp_path):
    deb = tmp_path / f"dagfs_{VERSION}_amd64.deb"
    deb.write_bytes(b"!<arch>\n")  # only copied, not opened
    out = tmp_path / "vm"
    run_prov("render", out, "--target", "vm", "--source",
             "git:https://example.com/d.git", "--dagfs-deb", deb,
             "--airflow-version", "3.2.1")
    sh = (out / "install.sh").read_text()
    assert (out / deb.name).read_bytes() == deb.read_bytes()
    assert f"apt-get install -y -q './{deb.name}'" in sh
    assert '"apache-airflow[cncf.kubernetes,postgres]==3.2.1"' in sh
    assert "constraints-3.2.1/constraints-$py.txt" in sh
    assert sh.index("apt-get install") < sh.index("useradd")
    assert "ExecStart=/opt/airflow/venv/bin/airflow scheduler" in \
        (out / "airflow-scheduler.service").read_text()
    assert "ExecStart=/usr/bin/dagfs mount" in \
        (out / "dagfs.service").read_text()
    assert subprocess.run(["sh", "-n", str(out / "install.sh")]).returncode \
        == 0
    own = tmp_path / "own"
    run_prov("render", own, "--target", "vm", "--source",
             "git:https://example.com/d.git", "--airflow-bin",
             "/usr/local/bin/airflow")
    sh = (own / "install.sh").read_text()
    assert "venv" not in sh and "command -v /usr/bin/dagfs" in sh
    r = run_prov("render", tmp_path / "bad", "--target", "vm", "--source",
                 "git:https://example.com/d.git", "--dagfs-deb",
                 tmp_path / "in", check=False)
    assert r.returncode == 2 and r.stderr.startswith(
        "dagfs-provision: --dagfs-deb:"), r.stderr
