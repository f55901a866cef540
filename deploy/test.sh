#!/usr/bin/env bash
# The test command: installs what is missing, fetches the BERT checkpoint (deploy/fetch-models.sh),
# builds with tests, runs the whole ctest suite (unit, MPI and end-to-end tests on
# ../shared/models and the BERT checkpoint), then the parser tests under
# ASan+UBSan and the header-parser fuzzer for a bounded time.
#   QD_TEST_QUICK=1 deploy/test.sh   skip the sanitizer build and the fuzzer
# Whatever configured build/ before (the quickstart, a hand build with -DQD_BUILD_TESTS=OFF, a
# cache from another checkout), the options the suite needs are forced here, and
# deploy/run-ctest.sh fails the run when ctest finds no test, fewer tests than the sources
# declare, or skips every one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
t0=$(date +%s)

deploy/install-deps.sh
# shellcheck source=deploy/mpienv.sh
. deploy/mpienv.sh

# The real BERT checkpoint (cached outside the repository; ~0.3 s when present). Without network
# the BERT tests skip (exit 77) instead of failing the run.
echo "== models"
if ! deploy/fetch-models.sh; then
  echo "WARNING: deploy/fetch-models.sh failed (no network?): the BERT checkpoint tests will be skipped" >&2
fi

echo "== build (RelWithDebInfo, tests and benchmarks on)"
QD_BUILD_DIR=build deploy/build.sh -DQD_BUILD_TESTS=ON -DQD_BUILD_BENCH=ON -DQD_FUZZ=OFF -DQD_SANITIZE=
echo "== ctest"
deploy/run-ctest.sh --declared "$ROOT" build --output-on-failure --timeout 600 -j2

if [ "${QD_TEST_QUICK:-0}" != 1 ]; then
  echo "== parser tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  QD_BUILD_DIR=build-asan QD_BUILD_TYPE=Debug deploy/build.sh "-DQD_SANITIZE=address;undefined" -DQD_BUILD_TESTS=ON \
    -DQD_BUILD_BENCH=OFF -DQD_FUZZ=OFF
  ASAN_OPTIONS=detect_leaks=1 deploy/run-ctest.sh build-asan --output-on-failure -L sanitize -j2

  echo "== header-parser fuzzer (${QD_FUZZ_SECONDS:-60} s)"
  CC=clang QD_BUILD_DIR=build-fuzz QD_BUILD_TYPE=Debug QD_BUILD_TARGET=fuzz_safetensors deploy/build.sh -DQD_FUZZ=ON \
    -DQD_BUILD_TESTS=OFF -DQD_BUILD_BENCH=OFF
  mkdir -p build-fuzz/corpus
  build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time="${QD_FUZZ_SECONDS:-60}" -max_len=4096 \
      -print_final_stats=1 build-fuzz/corpus "$ROOT/tests/fuzz/seeds" 2>&1 | tail -n 15
fi
echo "== all tests done in $(( $(date +%s) - t0 )) s"
