# SPDX-License-Identifier: Apache-2.0
"""The image's package lists, checked against the binary (test_podman.py
builds the image for real and runs it). The runtime stage's package list
must provide every
shared library the built binary links (ldd), and nothing the binary does
not need beyond fuse3, CA certificates and curl (the health check)."""

import re
import subprocess

from conftest import REPO, build_dir, skip_or_fail

EXTRA = {"fuse3", "ca-certificates"}


def runtime_packages():
    text = (REPO / "sidecar" / "Dockerfile").read_text()
    m = re.search(r'ARG RUNTIME_PACKAGES="([^"]+)"', text)
    assert m, "no RUNTIME_PACKAGES in sidecar/Dockerfile"
    return set(m.group(1).split())


def package_of(lib):
    real = subprocess.run(["readlink", "-f", lib], capture_output=True,
                          text=True).stdout.strip()
    for path in (real, lib):  # usr-merge: either path may be the owned one
        r = subprocess.run(["dpkg", "-S", path], capture_output=True,
                           text=True)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    raise AssertionError(f"no package owns {lib}")


def ldd_libs(binary):
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    return {m.group(1): m.group(2) for m in
            re.finditer(r"^\s*(\S+) => (\S+)", out, re.M)}


def needed(binary):
    out = subprocess.run(["objdump", "-p", str(binary)], capture_output=True,
                         text=True, check=True).stdout
    return set(re.findall(r"NEEDED\s+(\S+)", out))


def closure(packages):
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends",
         "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces",
         "--no-enhances", *sorted(packages)], capture_output=True, text=True,
        check=True).stdout
    return {l.strip().split(":")[0] for l in out.splitlines()
            if l and not l.startswith(" ")}


def test_runtime_packages_match_ldd():
    binary = build_dir() / "sidecar" / "dagfs"
    if not binary.exists():
        skip_or_fail(f"{binary} not built")
    libs = ldd_libs(binary)
    listed = runtime_packages()
    direct = {package_of(libs[n]) for n in needed(binary) if n in libs}
    direct.discard("libc6")
    # what the binary links directly is listed, and nothing else is
    assert direct == listed - EXTRA, (direct, listed)
    # and every library ldd resolves comes with them through apt
    have = closure(listed)
    missing = {package_of(p) for p in libs.values()} - have - {"libc6"}
    assert not missing, f"ldd needs packages apt would not install: {missing}"


def test_dockerfile_is_multi_stage_with_entrypoint_and_healthcheck():
    text = (REPO / "sidecar" / "Dockerfile").read_text()
    assert text.count("FROM debian:bookworm-slim") == 2
    assert 'ENTRYPOINT ["dagfs", "mount"]' in text
    assert "HEALTHCHECK" in text and "/healthz" in text
