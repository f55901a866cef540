#!/bin/sh
# Compares two directories written by tests/job/job_matrix.sh: every CASE.h5 of A must equal B's
# outside /run (h5diff --exclude-path /run), and files of the same case at 1, 2 and 4 ranks must
# equal each other. Prints one line per file; exits 1 on any difference or missing file.
#   sh tests/job/job_compare.sh DIR_A DIR_B
set -u
A=${1:?DIR_A}
B=${2:?DIR_B}
fail=0 n=0
for f in "$A"/*.h5; do
  b="$B/$(basename "$f")"
  n=$((n + 1))
  if [ ! -f "$b" ]; then
    echo "MISSING: $b"
    fail=1
  elif h5diff -q --exclude-path /run "$f" "$b" > /dev/null 2>&1; then
    echo "same: $(basename "$f")"
  else
    echo "DIFFERENT: $(basename "$f")"
    fail=1
  fi
done
for f in "$B"/*-n1.h5; do
  for k in 2 4; do
    g=$(echo "$f" | sed "s/-n1\.h5\$/-n$k.h5/")
    [ -f "$g" ] || continue
    h5diff -q --exclude-path /run "$f" "$g" > /dev/null 2>&1 || { echo "RANKS DIFFER: $(basename "$f") vs $(basename "$g")"; fail=1; }
  done
done
echo "job_compare: $n files compared, $([ $fail = 0 ] && echo 'all identical' || echo 'differences found')"
exit $fail
