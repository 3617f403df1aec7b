#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/run.sh - the whole test suite, from a fresh Debian 12 as root:
# installs what it needs (apt, only if something is missing), checks the
# formatting of every C file (tests/format.sh), builds,
# runs the C unit tests, the integration tests over real FUSE mounts and
# real servers, the fuzz targets for a bounded time (if present), then
# the AddressSanitizer/UBSan build with the unit tests and a subset of
# the integration tests.
#
# Environment:
#   CI            true (default here): nothing may skip
#   DAGFS_ASAN    0 skips the sanitizer build
#   DAGFS_ASAN_TESTS  pytest arguments for the sanitizer run
#                 (default: the core and sidecar integration tests)
#   DAGFS_TSAN    0 skips the ThreadSanitizer build
#   DAGFS_TSAN_TESTS  pytest arguments for the threaded tests under it
#                 (default: materialise mode, reloads and the collector:
#                 every thread but FUSE's, whose inode handoff through the
#                 kernel TSan cannot see)
#   PYTEST_ARGS   extra arguments for the main pytest run
#   DAGFS_TEST_JOBS  pytest-xdist workers for the integration runs
#                 (default 3: most tests wait on servers, timeouts and
#                 the kernel, not the CPU; a file's tests share a worker)
#   DAGFS_AIRFLOW 0 skips the real-Airflow tests (tests/airflow)
# Exit status: 0 if every step passed.

set -uo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"
PY=/usr/bin/python3
failed=()
t_start=$SECONDS

step() { printf '\n=== %s\n' "$*"; }
run() {
	local name=$1 t0=$SECONDS
	shift
	step "$name"
	if "$@"; then
		printf '=== %s: ok (%ds)\n' "$name" $((SECONDS - t0))
	else
		printf '=== %s: FAILED (%ds)\n' "$name" $((SECONDS - t0))
		failed+=("$name")
		return 1
	fi
}

PACKAGES=(meson ninja-build pkg-config gcc clang libfuse3-dev fuse3
	libgit2-dev libcurl4-openssl-dev libssl-dev libxxhash-dev libinih-dev
	libmicrohttpd-dev libexpat1-dev libsystemd-dev python3-pytest python3-pytest-xdist lighttpd
	openssh-server git attr libclang-rt-14-dev ceph-mon ceph-osd radosgw
	ceph-common util-linux python3-jsonschema python3-yaml prometheus jq
	python3-venv postgresql debhelper dpkg-dev debootstrap groff-base systemd
	podman runc openssl curl clang-format)

install_packages() {
	local missing=() p
	for p in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && { echo "all packages present"; return 0; }
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing packages (run as root to install): ${missing[*]}" >&2
		return 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"
}

# Apache Airflow for tests/airflow: a venv outside the clone, named by the
# lock file's hash, made once (a rerun installs nothing but dagfs_airflow)
AIRFLOW_LOCK=tests/airflow/requirements-lock.txt
AIRFLOW_VENV=/var/cache/dagfs-test/venv-airflow-$(sha256sum "$AIRFLOW_LOCK" | cut -c1-16)
airflow_venv() {
	if [ ! -f "$AIRFLOW_VENV/.complete" ]; then
		rm -rf "$AIRFLOW_VENV"
		mkdir -p "$(dirname "$AIRFLOW_VENV")"
		/usr/bin/python3 -m venv "$AIRFLOW_VENV" &&
			"$AIRFLOW_VENV/bin/pip" install -q --disable-pip-version-check \
				--no-deps -r "$AIRFLOW_LOCK" &&
			touch "$AIRFLOW_VENV/.complete" || return 1
	fi
	"$AIRFLOW_VENV/bin/pip" install -q --disable-pip-version-check --no-deps \
		--no-build-isolation --no-index --force-reinstall ./airflow
}

setup() { # DIR [meson options...]
	local dir=$1
	shift
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null ||
			meson setup --wipe "$dir" "$@"
	else
		meson setup "$dir" "$@"
	fi
}

build() { # DIR [meson options...]
	setup "$@" && ninja -C "$1"
}

# libgit2 1.8 from bookworm-backports: it fetches shallow (a first sync
# and a pinned commit bring one commit, not the history); the code builds
# against Debian 12's 1.5 too, fetching whole. Adds the backports source
# if it is missing; replaces the machine's libgit2-dev.
BACKPORTS=/etc/apt/sources.list.d/dagfs-bookworm-backports.sources
libgit2_backports() {
	local have mirror
	have=$(dpkg-query -W -f='${Version}' libgit2-dev 2>/dev/null)
	dpkg --compare-versions "${have:-0}" ge 1.8 && {
		echo "libgit2-dev $have"
		return 0
	}
	if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list \
		/etc/apt/sources.list.d/; then
		# the mirror the machine already uses for bookworm
		mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources |
			awk '{print $2; exit}')
		[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" \
			{print $2; exit}' /etc/apt/sources.list 2>/dev/null)
		[ -n "$mirror" ] || {
			echo "no Debian mirror in the apt sources" >&2
			return 1
		}
		printf '%s\n' 'Types: deb' "URIs: $mirror" \
			'Suites: bookworm-backports' 'Components: main' \
			'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
			>"$BACKPORTS"
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q &&
		apt-get install -y -q --no-install-recommends \
			-t bookworm-backports libgit2-dev
}

if ! install_packages || ! libgit2_backports; then
	echo "package installation failed" >&2
	exit 1
fi
modprobe fuse 2>/dev/null || true

# pytest's own numbered temp directories are shared with any other
# pytest on the machine, which may clean them up under our mounts
TMPBASE=$(mktemp -d /tmp/dagfs-tests.XXXXXX)
XDIST=(-n "${DAGFS_TEST_JOBS:-3}" --dist loadfile)
trap 'rm -rf "$TMPBASE" 2>/dev/null' EXIT
run "clang-format" bash tests/format.sh
run "build" build build || { echo "build failed" >&2; exit 1; }
run "unit tests" meson test -C build --suite unit --print-errorlogs
# the venv first: integration tests use its Airflow too (test_deb.py's
# systemd-analyze verify of the VM target's Airflow units)
venv_ok=
if [ "${DAGFS_AIRFLOW:-1}" != 0 ] && run "airflow venv" airflow_venv; then
	venv_ok=1
	export DAGFS_AIRFLOW_VENV="$AIRFLOW_VENV"
fi
# shellcheck disable=SC2086
run "integration tests" env DAGFS_BUILD=build \
	"$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" --basetemp="$TMPBASE/main" \
	tests/integration ${PYTEST_ARGS:-}
if [ -n "$venv_ok" ]; then
	run "airflow tests" env DAGFS_BUILD=build DAGFS_AIRFLOW_VENV="$AIRFLOW_VENV" \
		"$AIRFLOW_VENV/bin/python" -m pytest -q -p no:cacheprovider \
		--basetemp="$TMPBASE/airflow" tests/airflow
fi
if [ -f tests/fuzz/run.sh ]; then
	run "fuzz (bounded)" bash tests/fuzz/run.sh
fi

if [ "${DAGFS_ASAN:-1}" != 0 ]; then
	export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=86"
	export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
	if run "sanitizer build" build build-asan -Dsanitize=true; then
		run "unit tests (sanitizers)" meson test -C build-asan --suite unit \
			--print-errorlogs
		# shellcheck disable=SC2086
		run "integration subset (sanitizers)" env DAGFS_BUILD=build-asan \
			"$PY" -m pytest -q -p no:cacheprovider "${XDIST[@]}" \
			--basetemp="$TMPBASE/asan" \
			${DAGFS_ASAN_TESTS:-tests/integration/test_core.py tests/integration/test_sidecar.py tests/integration/test_daemon.py tests/integration/test_s3.py tests/integration/test_git.py tests/integration/test_meta.py tests/integration/test_mirror.py}
	fi
fi

if [ "${DAGFS_TSAN:-1}" != 0 ]; then
	# sync/'s threads (one per source, the collector, the git watchdog),
	# the daemon's (HTTP, status writer, SIGHUP) and libfuse's
	export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
	if run "thread sanitizer build" build build-tsan -Dtsan=true; then
		run "unit tests (tsan)" meson test -C build-tsan --suite unit \
			--print-errorlogs
		# shellcheck disable=SC2086
		run "threaded tests (tsan)" env DAGFS_BUILD=build-tsan \
			"$PY" -m pytest -q -p no:cacheprovider \
			--basetemp="$TMPBASE/tsan" \
			${DAGFS_TSAN_TESTS:--k "materialize or collector" tests/integration/test_sidecar.py tests/integration/test_daemon.py}
	fi
fi

printf '\n=== total %ds\n' $((SECONDS - t_start))
if [ ${#failed[@]} -ne 0 ]; then
	printf '=== FAILED: %s\n' "${failed[*]}"
	exit 1
fi
echo "=== all passed"
