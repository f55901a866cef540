#!/bin/sh
# The floors of the source tree and their arrows (docs/ARCHITECTURE.md): every #include of another
# folder's header must be an allowed arrow, no two modules include each other's headers, and MPI
# and HDF5 are called only in collective/ (a call elsewhere needs a comment with
# "collective-exempt:" and the reason on its line). Prints the folder graph (which folder includes
# which, with counts) and exits 1 on a violation.
set -u
cd "${QD_SOURCE_DIR:-$(dirname "$0")/../..}" || exit 1
# folder: the folders it may include (besides itself)
allowed() {
  case $1 in
    common) echo "" ;;
    kernels) echo "common" ;;
    quant) echo "kernels common" ;;
    shard) echo "common" ;;
    model) echo "shard kernels common" ;;
    collective) echo "quant common" ;;
    runtime) echo "collective model quant kernels common" ;;
    train) echo "collective model quant shard kernels common" ;;
    export) echo "collective model quant shard kernels common" ;;
    worker) echo "collective model quant shard kernels common" ;;
    coordinator) echo "worker runtime train export collective model quant shard kernels common" ;;
    *) echo "?" ;;
  esac
}
files() { git ls-files "$1" 2>/dev/null | grep -E '\.(c|h)$' || find "$1" -name '*.[ch]'; }
bad=0
for d in common kernels quant shard model collective runtime train export worker coordinator; do
  [ -d "$d" ] || continue
  ok=$(allowed "$d")
  edges=$(files "$d" | xargs grep -hoE '^#include "[a-z_]+/' 2>/dev/null | sed -E 's/#include "//; s#/##' |
    sort | uniq -c | awk -v d="$d" '$2 != d {printf "%s(%d) ", $2, $1}')
  printf '%-12s -> %s\n' "$d" "$edges"
  for e in $edges; do
    to=${e%%(*}
    case " $ok " in
      *" $to "*) ;;
      *) echo "arrows: $d/ includes $to/ ($(files "$d" | xargs grep -lE "^#include \"$to/" | tr '\n' ' '))"; bad=1 ;;
    esac
  done
done
calls=$(git ls-files '*.c' '*.h' | grep -vE '^(collective|tests|bench)/' |
  xargs grep -nE '\b(MPI|H5[A-Z]?)_?[A-Z][A-Za-z_0-9]*\(' 2>/dev/null | grep -E '\bMPI_[A-Z][a-z_]+\(|\bH5[A-Z][a-z_0-9]*\(' |
  grep -vE '^[^:]+:[0-9]+: *(\*|/\*|//)' | grep -v 'collective-exempt:')
if [ -n "$calls" ]; then
  echo "arrows: MPI or HDF5 called outside collective/:"
  echo "$calls"
  bad=1
fi
# no two modules (a.c/a.h, b.c/b.h) that include each other's header
for f in $(git ls-files '*.c' | grep -vE '^(tests|bench)/'); do
  b=${f%.c}
  for h in $(grep -oE '^#include "[a-z_]+/[a-z_0-9]+\.h"' "$f" | sed 's/#include "//; s/"//'); do
    hb=${h%.h}
    [ "$hb" != "$b" ] && [ -f "$hb.c" ] && grep -q "^#include \"$b.h\"" "$hb.c" &&
      { echo "arrows: $f and $hb.c include each other's header (a circle)"; bad=1; }
  done
done
[ $bad = 0 ] && echo "arrows: every include points down, no two modules include each other; MPI and HDF5 only in collective/"
exit $bad
