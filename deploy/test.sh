#!/usr/bin/env bash
# The test command: installs what is missing, fetches the BERT checkpoint (deploy/fetch-models.sh),
# builds with tests, runs the whole ctest suite (unit, MPI and end-to-end tests on
# ../shared/models and the BERT checkpoint), then the parser tests under
# ASan+UBSan and the fuzzers (tests/fuzz/) for a bounded time.
#   QD_TEST_QUICK=1 deploy/test.sh   skip the sanitizer build and the fuzzers
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

  # One libFuzzer target per parser facing the network or the user, each for a bounded time
  # (QD_FUZZ_SECONDS scales them all; 60 gives ~3.5 min in all): the safetensors header, the
  # service's requests, a job's JSON options, the model-file reader (edits of a real model file).
  fz=${QD_FUZZ_SECONDS:-60}
  echo "== fuzzers (safetensors ${fz} s, service $((fz * 3 / 4)) s, job JSON $((fz / 2)) s, model file ${fz} s)"
  CC=clang cmake -S . -B build-fuzz -DQD_FUZZ=ON -DQD_BUILD_TESTS=OFF -DQD_BUILD_BENCH=OFF \
      -DCMAKE_BUILD_TYPE=Debug >/dev/null
  cmake --build build-fuzz -j "$(nproc)" --target fuzz_safetensors fuzz_service fuzz_job_json fuzz_h5model
  fuzz() { # NAME SECONDS MAX_LEN SEED_DIR...
    local name=$1 secs=$2 len=$3
    shift 3
    mkdir -p "$ROOT/build-fuzz/corpus-$name"
    echo "-- $name"
    "$ROOT/build-fuzz/tests/fuzz/$name" -max_total_time="$secs" -max_len="$len" -print_final_stats=1 \
        -artifact_prefix="$ROOT/build-fuzz/$name-" "$ROOT/build-fuzz/corpus-$name" "$@" 2>&1 | tail -n 8
    echo "corpus: $(find "$ROOT/build-fuzz/corpus-$name" -type f | wc -l) inputs"
  }
  fuzz fuzz_safetensors "$fz" 4096 "$ROOT/tests/fuzz/seeds"
  fuzz fuzz_service $((fz * 3 / 4)) 4096 "$ROOT/tests/fuzz/seeds_service"
  fuzz fuzz_job_json $((fz / 2)) 4096 "$ROOT/tests/fuzz/seeds_job"
  # the model-file target damages a copy of a real quantized file (with zero-points and groups)
  if build/qdist quantize --model ../shared/models/vit-mnist-tiny --out build-fuzz/seed.h5 --quiet --bits 4 --asym \
      --group-size 32 --overwrite > /dev/null; then
    QD_FUZZ_H5_SEED=$ROOT/build-fuzz/seed.h5 fuzz fuzz_h5model "$fz" 512
  else
    echo "WARNING: no vit-mnist-tiny: the model-file fuzzer is skipped" >&2
  fi
fi
echo "== all tests done in $(( $(date +%s) - t0 )) s"
