#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# tests/format.sh - check every C file git tracks against the root
# .clang-format (clang-format --dry-run -Werror): exit 1 with clang-format's
# own messages, naming file and line, if a file would change. A step of
# tests/run.sh; `clang-format -i FILE` formats a file.
set -uo pipefail
cd "$(dirname "$0")/.."
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "$CF is not installed" >&2; exit 1; }

mapfile -t files < <(git ls-files '*.c' '*.h')
[ "${#files[@]}" -gt 0 ] || { echo "format.sh: no C files (not a git checkout?)" >&2; exit 1; }
"$CF" --dry-run -Werror "${files[@]}" && echo "${#files[@]} files formatted"
