#!/usr/bin/env bash
# deploy/run-ctest.sh, the check that deploy/test.sh tested something, on small CMake projects
# made here: it passes a full run (with a skipped test, named, and without one), and fails, naming
# the reason, on a build configured without tests, on one registering fewer tests than its sources
# declare, on a run where every test was skipped, on a failing test and on an empty suite.
set -uo pipefail
SRC=${QD_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
RUN=$SRC/deploy/run-ctest.sh
T=$(mktemp -d /tmp/qd-runctest-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0

# project SKIP_ALL FAILING: three declared tests (one skips with 77) in tests/a; option
# WITH_TESTS as QD_BUILD_TESTS; option DROP_ONE leaves one test out, NO_SKIP makes t_skip pass
mkdir -p "$T/p/tests/a"
cat > "$T/p/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.18)
project(p LANGUAGES NONE)
option(WITH_TESTS "" ON)
option(DROP_ONE "" OFF)
option(NO_SKIP "" OFF)
set(SKIP_ALL OFF CACHE BOOL "")
set(FAILING OFF CACHE BOOL "")
function(qd_add_cmd_test name)
  set(code 0)
  if(SKIP_ALL OR (name STREQUAL "t_skip" AND NOT NO_SKIP))
    set(code 77)
  elseif(FAILING AND name STREQUAL "t_one")
    set(code 1)
  endif()
  add_test(NAME ${name} COMMAND sh -c "exit ${code}")
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77)
endfunction()
if(WITH_TESTS)
  enable_testing()
  add_subdirectory(tests/a)
endif()
CM
cat > "$T/p/tests/a/CMakeLists.txt" <<'CM'
qd_add_cmd_test(t_one)
qd_add_cmd_test(t_skip)
if(NOT DROP_ONE)
  qd_add_cmd_test(t_two)
endif()
CM

# case NAME EXPECT(pass|fail) GREP cmake-options...
check() {
  local name=$1 expect=$2 pattern=$3
  shift 3
  rm -rf "$T/b"
  cmake -S "$T/p" -B "$T/b" "$@" > /dev/null || { echo "FAIL: $name: cmake"; fail=1; return; }
  "$RUN" --declared "$T/p" "$T/b" > "$T/out" 2>&1
  local rc=$?
  if { [ "$expect" = pass ] && [ $rc != 0 ]; } || { [ "$expect" = fail ] && [ $rc = 0 ]; }; then
    echo "FAIL: $name: exit $rc, expected to $expect"; cat "$T/out"; fail=1
  elif ! grep -q -- "$pattern" "$T/out"; then
    echo "FAIL: $name: no '$pattern' in:"; cat "$T/out"; fail=1
  else
    echo "ok: $name: $(grep 'run-ctest' "$T/out" | tail -n 1)"
  fi
}
check "full run" pass "3 tests registered, 3 run: 2 passed, 0 failed, 1 skipped (t_skip)"
check "nothing skipped" pass "3 tests registered, 3 run: 3 passed, 0 failed$" -DNO_SKIP=ON
check "tests off" fail "no test suite here" -DWITH_TESTS=OFF
check "a declared test missing" fail "registers 2 tests, but the sources declare at least 3" -DDROP_ONE=ON
check "all skipped" fail "every test was skipped" -DSKIP_ALL=ON
check "a failing test" fail "ctest exited 8" -DFAILING=ON
# no tests registered at all (enable_testing without tests): ctest itself would exit 0
rm -rf "$T/b" && mkdir -p "$T/e" && printf 'cmake_minimum_required(VERSION 3.18)\nproject(e LANGUAGES NONE)\nenable_testing()\n' > "$T/e/CMakeLists.txt"
cmake -S "$T/e" -B "$T/b" > /dev/null
if "$RUN" "$T/b" > "$T/out" 2>&1 || ! grep -q "ctest finds no test" "$T/out"; then
  echo "FAIL: empty suite:"; cat "$T/out"; fail=1
else
  echo "ok: empty suite: $(tail -n 1 "$T/out")"
fi
exit $fail
