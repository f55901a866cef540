#!/usr/bin/env bash
# Configures and builds qdist into ${QD_BUILD_DIR:-build} (Release with debug info). Arguments are
# passed to cmake's configure step (e.g. -DQD_BUILD_TESTS=ON); options not given keep what the
# build directory's cache holds (tests and benchmarks on in a new one).
#   QD_BUILD_TARGET=qdist deploy/build.sh   build that target only (the quickstart: no tests to
#                                           compile, and the cache's options stay as they are)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${QD_BUILD_DIR:-build}
# A cache written for another source directory (a copied or moved checkout) makes cmake stop
# with an error: that build directory is configured afresh.
cache=$BUILD/CMakeCache.txt
if [ -f "$cache" ]; then
  home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
  if [ -n "$home" ] && [ "$(cd "$home" 2>/dev/null && pwd -P)" != "$(pwd -P)" ]; then
    echo "build: $BUILD was configured for $home: configuring it afresh for $(pwd -P)"
    rm -rf "$BUILD/CMakeCache.txt" "$BUILD/CMakeFiles"
  fi
fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${QD_BUILD_TYPE:-RelWithDebInfo}" "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" ${QD_BUILD_TARGET:+--target "$QD_BUILD_TARGET"}
