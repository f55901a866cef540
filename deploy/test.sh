#!/usr/bin/env bash
# The test command: installs what is missing, fetches the BERT checkpoint (deploy/fetch-models.sh),
# builds with tests, runs the whole ctest suite (unit, MPI and end-to-end tests on
# ../shared/models and the BERT checkpoint), then the parser tests under
# ASan+UBSan and the header-parser fuzzer for a bounded time.
#   QD_TEST_QUICK=1 deploy/test.sh   skip the sanitizer build and the fuzzer
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

echo "== build (RelWithDebInfo)"
QD_BUILD_DIR=build deploy/build.sh
echo "== ctest"
(cd build && ctest --output-on-failure --timeout 600 -j2)

if [ "${QD_TEST_QUICK:-0}" != 1 ]; then
  echo "== parser tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  QD_BUILD_DIR=build-asan QD_BUILD_TYPE=Debug deploy/build.sh "-DQD_SANITIZE=address;undefined" -DQD_BUILD_BENCH=OFF
  (cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L sanitize -j2)

  echo "== header-parser fuzzer (${QD_FUZZ_SECONDS:-60} s)"
  CC=clang cmake -S . -B build-fuzz -DQD_FUZZ=ON -DQD_BUILD_TESTS=OFF -DQD_BUILD_BENCH=OFF \
      -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz -j "$(nproc)" --target fuzz_safetensors
  mkdir -p build-fuzz/corpus
  build-fuzz/tests/fuzz/fuzz_safetensors -max_total_time="${QD_FUZZ_SECONDS:-60}" -max_len=4096 \
      -print_final_stats=1 build-fuzz/corpus "$ROOT/tests/fuzz/seeds" 2>&1 | tail -n 15
fi
echo "== all tests done in $(( $(date +%s) - t0 )) s"
