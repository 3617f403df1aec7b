#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/fuzz/run.sh - build every libFuzzer target with clang (ASan +
# UBSan) and run each for a bounded time over a copy of its checked-in
# seed corpus; any crash, leak or sanitizer report fails the run.
#   DAGFS_FUZZ_SECONDS  seconds per target (default 10)
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
failed=0
for bin in "$dir"/tests/fuzz/fuzz_*; do
	[ -f "$bin" ] && [ -x "$bin" ] || continue
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
		failed=1
	fi
done
exit $failed
