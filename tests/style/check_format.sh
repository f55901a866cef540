#!/bin/sh
# Every C source and header of the repository is formatted by its .clang-format (clang-format 14,
# Debian's clang-format package). Prints the files that differ and exits 1; fix with
#   git ls-files '*.c' '*.h' | xargs clang-format -i
set -u
cd "${QD_SOURCE_DIR:-$(dirname "$0")/../..}" || exit 1
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "check_format: $CF not found (Debian package clang-format)"; exit 1; }
bad=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || find . -name '*.[ch]' -not -path './build*'); do
  if ! "$CF" --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "check_format: $f is not formatted (clang-format -i $f)"
    bad=1
  fi
done
[ $bad = 0 ] && echo "check_format: every C file is formatted"
exit $bad
