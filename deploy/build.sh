#!/usr/bin/env bash
# Configures and builds qdist into ${QD_BUILD_DIR:-build} (Release with debug info, tests on).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${QD_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${QD_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
