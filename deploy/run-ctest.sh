#!/usr/bin/env bash
# Runs a build directory's ctest suite and fails when it tested less than it should: a build
# configured without tests (-DQD_BUILD_TESTS=OFF, as an old quickstart left build/), a suite that
# registers fewer tests than the sources declare, or a run in which every test was skipped. ctest
# itself exits 0 after "No tests were found!!!", so its exit status alone proves nothing.
#
#   deploy/run-ctest.sh [--declared SRC_DIR] BUILD_DIR [ctest options...]
#
# --declared SRC_DIR  also count the tests the sources declare (every qd_add_test, qd_add_mpi_test
#                     and qd_add_cmd_test call in SRC_DIR/tests/*/CMakeLists.txt and
#                     SRC_DIR/bench/CMakeLists.txt registers at least one) and fail when the build
#                     registers fewer. Use it for the whole suite, not with -L/-R filters.
# ctest options (e.g. -j2 --timeout 600 -L sanitize) are passed on; the run must cover every
# test that `ctest -N` lists with the same options.
# Prints "run-ctest: BUILD_DIR: N tests registered, N run (K passed, S skipped: names)" and exits
# 0, or names what is missing and exits 1 (ctest's own failures: its exit status).
set -euo pipefail

SRC=""
if [ "${1:-}" = --declared ]; then
  SRC=${2:?--declared needs the source directory}
  shift 2
fi
BUILD=${1:?usage: deploy/run-ctest.sh [--declared SRC_DIR] BUILD_DIR [ctest options...]}
shift
say() { echo "run-ctest: $BUILD: $*" >&2; }
fail() {
  say "FAILED: $*"
  exit 1
}

[ -f "$BUILD/CTestTestfile.cmake" ] ||
  fail "no test suite here (configured with -DQD_BUILD_TESTS=OFF, or not configured at all)"

# how many tests the build registers ("Total Tests: N"; ctest -N runs nothing)
registered=$(cd "$BUILD" && ctest -N "$@" | sed -n 's/^Total Tests: *\([0-9][0-9]*\)$/\1/p')
[ -n "$registered" ] || fail "'ctest -N' printed no test count"
[ "$registered" -gt 0 ] || fail "ctest finds no test (configured with -DQD_BUILD_TESTS=OFF?)"

if [ -n "$SRC" ]; then
  declared=0
  for f in "$SRC"/tests/*/CMakeLists.txt "$SRC"/bench/CMakeLists.txt; do
    case $f in */tests/fuzz/*) continue ;; esac # libFuzzer targets: built and run apart
    [ -f "$f" ] || continue
    k=$(grep -cE '^[[:space:]]*qd_add_(test|mpi_test|cmd_test)\(' "$f" || true)
    declared=$((declared + k))
  done
  [ "$registered" -ge "$declared" ] ||
    fail "registers $registered tests, but the sources declare at least $declared: reconfigure with" \
      "-DQD_BUILD_TESTS=ON -DQD_BUILD_BENCH=ON (or remove $BUILD)"
fi

# the run; the JUnit report says how many ran and how many were skipped
report=$(mktemp /tmp/qd-ctest-XXXXXX.xml)
trap 'rm -f "$report"' EXIT
rc=0
(cd "$BUILD" && ctest --no-tests=error --output-junit "$report" "$@") || rc=$?
[ -s "$report" ] || fail "ctest wrote no report (exit status $rc)"
# the counts are attributes of <testsuite>, before the first <testcase> (whose output may hold
# anything)
head_xml=$(sed -n '1,/<testcase/p' "$report")
attr() { printf '%s\n' "$head_xml" | tr -s '[:space:]' '\n' | sed -n "s/^$1=\"\([0-9]*\)\".*/\1/p" | head -n 1; }
total=$(attr tests) skipped=$(attr skipped) failures=$(attr failures)
if [ -z "$total" ] || [ -z "$skipped" ]; then fail "cannot read the test counts from ctest's report"; fi
ran=$((total - skipped))
skipped_names=$({ grep -B1 '<skipped' "$report" || true; } | sed -n 's/.*<testcase name="\([^"]*\)".*/\1/p' | tr '\n' ' ')
if [ "$skipped" -gt 0 ]; then
  say "$registered tests registered, $total run: $((total - skipped - ${failures:-0})) passed, ${failures:-0} failed, $skipped skipped (${skipped_names% })"
else
  say "$registered tests registered, $total run: $((total - ${failures:-0})) passed, ${failures:-0} failed"
fi
[ "$rc" = 0 ] || fail "ctest exited $rc"
[ "$total" -ge "$registered" ] || fail "ctest ran $total of the $registered registered tests"
[ "$ran" -gt 0 ] || fail "every test was skipped: nothing was tested"
exit 0
