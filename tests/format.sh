#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/format.sh - check the C files named in tests/clang-format.list
# against the root .clang-format (clang-format --dry-run -Werror): exit 1
# and clang-format's own messages if one would change.
#
#   bash tests/format.sh          the check (a step of tests/run.sh)
#   bash tests/format.sh --all    how many lines a reformat of every C
#                                 file git tracks would change; exits 0
set -uo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "$CF is not installed" >&2; exit 1; }

if [ "${1:-}" = --all ]; then
	total=0 dirty=0 n=0
	while read -r f; do
		c=$("$CF" "$f" | diff -U0 "$f" - | grep -c '^[-+][^-+]')
		n=$((n + 1))
		[ "$c" -eq 0 ] || { dirty=$((dirty + 1)); total=$((total + c)); }
	done < <(git ls-files '*.c' '*.h')
	echo "a reformat would change $total lines (removed + added) in" \
		"$dirty of $n C files"
	exit 0
fi

mapfile -t files < <(grep -v -e '^#' -e '^$' tests/clang-format.list)
for f in "${files[@]}"; do
	[ -f "$f" ] || { echo "tests/clang-format.list: $f: no such file" >&2; exit 1; }
done
"$CF" --dry-run -Werror "${files[@]}" && echo "${#files[@]} files formatted"
