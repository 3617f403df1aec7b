#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/fuzz/run.sh - build every libFuzzer target with clang (ASan +
# UBSan) and run each for a bounded time over a copy of its checked-in
# seed corpus; any crash, leak or sanitizer report fails the run.
#   DAGFS_FUZZ_SECONDS  seconds per target (default 10)
#   DAGFS_FUZZ_JOBS     targets run at once (default: the number of CPUs)
set -uo pipefail
cd "$(dirname "$0")/../.."
secs=${DAGFS_FUZZ_SECONDS:-10}
dir=build-fuzz
if [ -d "$dir/meson-private" ]; then
	meson setup --reconfigure "$dir" >/dev/null || exit 1
else
	CC=clang meson setup "$dir" -Dfuzz=true -Dsanitize=true >/dev/null || exit 1
fi
ninja -C "$dir" >/dev/null || { ninja -C "$dir"; exit 1; }
work=$(mktemp -d /tmp/dagfs-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
# run one target; its summary (and on failure its log's tail) on stdout
fuzz_one() { # BIN
	local bin=$1 name runs seeds
	name=$(basename "$bin")
	seeds=tests/fuzz/corpus/${name#fuzz_}
	mkdir -p "$work/$name"
	[ -d "$seeds" ] && cp -r "$seeds"/. "$work/$name/"
	if (cd "$work" && "$OLDPWD/$bin" -max_total_time="$secs" \
		-print_final_stats=1 "$work/$name" >"$work/$name.log" 2>&1); then
		runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' \
			"$work/$name.log" | grep -o '[0-9]*$')
		echo "$name: ${runs:-?} runs, no crash"
	else
		echo "$name: FAILED"
		tail -30 "$work/$name.log"
		return 1
	fi
}

# each target is single-threaded: run them in batches of as many as there
# are CPUs; every pid is waited for by name, so no status is lost
jobs=${DAGFS_FUZZ_JOBS:-$(nproc)}
failed=0
pids=()
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
	fuzz_one "$bin" >"$work/$(basename "$bin").out" &
	pids+=($!)
	if [ ${#pids[@]} -ge "$jobs" ]; then
		for p in "${pids[@]}"; do wait "$p" || failed=1; done
		pids=()
	fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
cat "$work"/*.out
exit $failed
