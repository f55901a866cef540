#!/bin/sh
# test_engine_archs under every kernel table (QD_KERNELS=ref is the scalar reference of each
# kernel; tables this CPU lacks fall back to the best it has).
set -eu
for k in ref avx2 avxvnni avx512 avx512vnni amx; do
  QD_KERNELS=$k "$1" || { echo "engine_archs: failed under QD_KERNELS=$k"; exit 1; }
done
