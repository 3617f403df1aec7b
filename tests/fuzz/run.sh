#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/fuzz/run.sh - build every libFuzzer target with clang (ASan and
# UBSan on) into build-fuzz and run each for a bounded time over its seed
# corpus (tests/fuzz/corpus/<name without fuzz_>). New inputs go to a
# scratch directory, never into the checked-in seeds. Fails if a target
# crashes, leaks, hangs past the per-input time limit or does not build.
#
# Usage: tests/fuzz/run.sh [TARGET...]     (default: every fuzz_* target)
# Environment:
#   FUZZ_SECONDS   seconds per target (default 10)
#   FUZZ_BUILD     build directory (default build-fuzz)
#   FUZZ_OUT       where crashes and logs are kept (default a temp dir)
# Prints one line per target: executions, coverage, new units, status.

set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${FUZZ_SECONDS:-10}
bdir=${FUZZ_BUILD:-build-fuzz}
out=${FUZZ_OUT:-$(mktemp -d /tmp/dagfs-fuzz.XXXXXX)}
mkdir -p "$out"

if [ ! -d "$bdir/meson-private" ]; then
	CC=clang meson setup "$bdir" -Dfuzz=true -Dsanitize=true >"$out/setup.log" ||
		{ cat "$out/setup.log"; echo "fuzz: meson setup failed" >&2; exit 1; }
fi
ninja -C "$bdir" >"$out/build.log" 2>&1 ||
	{ tail -40 "$out/build.log"; echo "fuzz: build failed" >&2; exit 1; }

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
	for f in tests/fuzz/fuzz_*.c; do
		targets+=("$(basename "$f" .c)")
	done
fi

export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
failed=()
for t in "${targets[@]}"; do
	bin=$bdir/tests/fuzz/$t
	seeds=tests/fuzz/corpus/${t#fuzz_}
	if [ ! -x "$bin" ]; then
		echo "$t: not built" >&2
		failed+=("$t")
		continue
	fi
	[ -d "$seeds" ] || { echo "$t: no seed corpus $seeds" >&2; failed+=("$t"); continue; }
	work=$out/$t.corpus
	mkdir -p "$work" "$out/$t.artifacts"
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$out/$t.artifacts/" \
		"$work" "$seeds" >"$out/$t.log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log")
	cov=$(grep -o 'cov: [0-9]*' "$out/$t.log" | tail -1)
	if [ $rc -eq 0 ]; then
		printf '%-16s ok      %10s execs in %ss, %s, %s new units\n' \
			"$t" "${execs:-?}" "$secs" "${cov:-cov: ?}" \
			"$(find "$work" -type f | wc -l)"
	else
		printf '%-16s FAILED  (exit %d) log: %s\n' "$t" $rc "$out/$t.log"
		grep -m5 -E 'ERROR|runtime error|Test unit written' "$out/$t.log"
		failed+=("$t")
	fi
done
if [ ${#failed[@]} -ne 0 ]; then
	echo "fuzz: failed: ${failed[*]} (logs and crashing inputs in $out)" >&2
	exit 1
fi
[ -z "${FUZZ_OUT:-}" ] && rm -rf "$out"
exit 0
