#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# debian/build-deb.sh OUTDIR: build dagfs_<version>_<arch>.deb with
# dpkg-buildpackage from a copy of this tree (the files git knows, as they
# are in the work tree), so neither the tree nor its parent gets build
# output. Prints the path of the .deb.
set -eu
out=$(realpath -m "$1")
top=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out/src"
mkdir -p "$out/src"
cd "$top"
git ls-files -z --cached --others --exclude-standard |
	xargs -0 -I{} sh -c '[ -e "{}" ] && echo "{}"' |
	tar -cf - -T - | tar -xf - -C "$out/src"
cd "$out/src"
dpkg-buildpackage -b -us -uc -j2 >"$out/build.log" 2>&1 ||
	{ tail -40 "$out/build.log" >&2; exit 1; }
ls "$out"/dagfs_*.deb
