# SPDX-License-Identifier: Apache-2.0
"""Real container images for the pod tests, without a registry: Debian's
podman with runc (as root, cgroupfs), a base image imported from the
cached debootstrap tree and tagged docker.io/library/debian:bookworm-slim
(what sidecar/Dockerfile starts FROM), the dagfs image built from
sidecar/Dockerfile, and an Airflow runtime image (python3, uid 50000)
that runs the real Airflow venv mounted from the host. Each image is
tagged with a hash of its inputs and kept in podman's storage (outside
the clone): a run with the same inputs builds nothing.
"""

import fnmatch
import hashlib
import pathlib
import resource
import subprocess

from debian_tree import bookworm_tree

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]


def _limit(kind, most):
    hard = resource.getrlimit(kind)[1]
    n = most if hard == resource.RLIM_INFINITY else min(hard, most)
    return f"{n}:{n}"


# podman's defaults ask for more than this sandbox's hard limits allow
# (and runc cannot raise nproc to the hard limit here): ask for what fits
ULIMITS = ["--ulimit", "nofile=" + _limit(resource.RLIMIT_NOFILE, 65536),
           "--ulimit", "nproc=" + _limit(resource.RLIMIT_NPROC, 16384)]
BASE_TAG = "docker.io/library/debian:bookworm-slim"
REPO = pathlib.Path(__file__).resolve().parents[2]


def podman(*args, check=True, timeout=1800, **kw):
    r = subprocess.run([*PODMAN, *args], capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode:
        raise AssertionError(f"podman {' '.join(args[:3])}...: exit "
                             f"{r.returncode}\n{r.stdout[-4000:]}"
                             f"{r.stderr[-4000:]}")
    return r


def exists(tag):
    return podman("image", "exists", tag, check=False).returncode == 0


def base_image():
    """debian:bookworm-slim from `debootstrap --variant=minbase`."""
    tree = bookworm_tree()
    tag = f"localhost/dagfs-test-base:{tree.name.rsplit('-', 1)[1]}"
    if not exists(tag):
        tar = subprocess.Popen(["tar", "-C", str(tree), "--exclude",
                                "./.complete", "-c", "."],
                               stdout=subprocess.PIPE)
        r = subprocess.run([*PODMAN, "import", "-", tag], stdin=tar.stdout,
                           capture_output=True, text=True, timeout=600)
        tar.wait()
        assert r.returncode == 0 and tar.returncode == 0, r.stderr
    podman("tag", tag, BASE_TAG)
    return tag


def ignored(path, patterns):
    """Whether .dockerignore's @patterns leave @path out of the context
    (a pattern matches the path or one of its parent directories)."""
    parts = path.split("/")
    heads = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatch(h, p) or (p.startswith("**/") and
                                         fnmatch.fnmatch(h, p[3:]))
               for p in patterns for h in heads)


def source_files():
    """The files of the build context: what git knows, less .dockerignore."""
    out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z",
                          "--cached", "--others", "--exclude-standard"],
                         capture_output=True, check=True).stdout
    patterns = [l.strip() for l in (REPO / ".dockerignore").read_text()
                .splitlines() if l.strip() and not l.startswith("#")]
    return sorted(p for p in out.decode().split("\0")
                  if p and (REPO / p).is_file() and not ignored(p, patterns))


def dagfs_image():
    """sidecar/Dockerfile built from the tree (its .dockerignore keeps
    build directories out), keyed by every source file and the base."""
    base = base_image()
    h = hashlib.sha256(base.encode())
    for p in source_files():
        h.update(p.encode() + b"\0" + (REPO / p).read_bytes())
    tag = f"localhost/dagfs:test-{h.hexdigest()[:16]}"
    if not exists(tag):
        podman("build", "--network=host", *ULIMITS, "-f",
               str(REPO / "sidecar" / "Dockerfile"), "-t", tag, str(REPO))
        # one test image at a time: drop those of older trees, and build
        # layers unused for an hour (this build's stay as its cache)
        old = podman("images", "--format", "{{.Repository}}:{{.Tag}}",
                     "localhost/dagfs").stdout.split()
        for t in old:
            if t.startswith("localhost/dagfs:test-") and t != tag:
                podman("rmi", t, check=False)
        podman("image", "prune", "-f", "--filter", "until=1h", check=False)
    return tag


AIRFLOW_CONTAINERFILE = """\
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \\
 && apt-get install -y --no-install-recommends python3 \\
 && rm -rf /var/lib/apt/lists/* \\
 && useradd --uid 50000 --gid 0 --home-dir /home/airflow --create-home airflow
USER 50000:0
"""


def airflow_image(work):
    """Debian's python3 (the venv's interpreter) and Airflow's uid; the
    venv itself is mounted at its own path when the container runs."""
    base = base_image()
    key = hashlib.sha256((base + AIRFLOW_CONTAINERFILE).encode()).hexdigest()
    tag = f"localhost/dagfs-test-airflow:{key[:16]}"
    if not exists(tag):
        d = pathlib.Path(work) / "airflow-image"
        d.mkdir(parents=True, exist_ok=True)
        (d / "Containerfile").write_text(AIRFLOW_CONTAINERFILE)
        podman("build", "--network=host", *ULIMITS, "-t", tag, str(d))
    return tag
