#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/example.sh - the main job on the bundled example, from a fresh
# Debian 12 as root: install the build dependencies if missing, build,
# mount tests/fixtures/example-dags/ through a dir: source, list the
# mount, read it as Airflow's dag-processor would (walk, .airflowignore,
# might-contain-dag, compile), show a live change, and unmount.

set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=/usr/bin/python3
EXAMPLE=$REPO/tests/fixtures/example-dags

PACKAGES=(meson ninja-build pkg-config gcc libfuse3-dev fuse3 libgit2-dev
	libcurl4-openssl-dev libssl-dev libxxhash-dev libinih-dev
	libmicrohttpd-dev libexpat1-dev libsystemd-dev python3)
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
		grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -ne 0 ]; then
	echo "== installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
modprobe fuse 2>/dev/null || true

echo "== building"
[ -d build/meson-private ] || meson setup build >/dev/null
ninja -C build >/dev/null
DAGFS=$REPO/build/sidecar/dagfs

WORK=$(mktemp -d /tmp/dagfs-example.XXXXXX)
MNT=$WORK/dags
SRC=$WORK/src
mkdir -p "$MNT"
cp -a "$EXAMPLE" "$SRC" # a copy, so the live change below edits no repo file
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if grep -qF " $MNT " /proc/self/mountinfo; then
		fusermount3 -u -z "$MNT" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

mounted() { grep -qF " $MNT " /proc/self/mountinfo; }

echo "== dagfs mount --cache $WORK/cache --source dir:$SRC $MNT"
"$DAGFS" mount --cache "$WORK/cache" --source "dir:$SRC,name=example" \
	"$MNT" 2>"$WORK/dagfs.log" &
pid=$!
for _ in $(seq 300); do
	if mounted && [ -n "$(ls -A "$MNT" 2>/dev/null)" ]; then break; fi
	kill -0 "$pid" 2>/dev/null || { cat "$WORK/dagfs.log"; exit 1; }
	sleep 0.1
done
mounted || { echo "not mounted after 30 s"; cat "$WORK/dagfs.log"; exit 1; }

echo "== the mount (read-only, $(awk -v m="$MNT" '$5 == m {print $NF}' /proc/self/mountinfo))"
(cd "$MNT" && find . -mindepth 1 | sort | sed 's/^\.\//  /')

echo "== Airflow's view: files that may contain DAGs, each compiled"
"$PY" "$REPO/tests/bench/airflow_scan.py" --list "$MNT" | sed 's/^/  /'

echo "== identical to the source, byte for byte"
diff -r "$SRC" "$MNT" && echo "  yes"

echo "== writes are refused"
if (echo x >"$MNT/new_dag.py") 2>"$WORK/err"; then
	echo "  write succeeded?"; exit 1
fi
sed 's/^.*line [0-9]*: /  /' "$WORK/err"

echo "== a new DAG appears all at once"
cat >"$SRC/etl/hourly_events.py" <<'EOF'
from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator

with DAG("hourly_events", start_date=datetime(2024, 1, 1), schedule="@hourly"):
    EmptyOperator(task_id="noop")
EOF
for _ in $(seq 100); do
	[ -f "$MNT/etl/hourly_events.py" ] && break
	sleep 0.1
done
ls -l "$MNT/etl/hourly_events.py"

echo "== unmount (SIGTERM)"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
mounted && { echo "still mounted"; exit 1; }
echo "  dagfs exited with status $rc; log:"
sed 's/^/  | /' "$WORK/dagfs.log"
echo "== done"
