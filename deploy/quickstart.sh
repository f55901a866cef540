#!/usr/bin/env bash
# Quickstart: installs what is missing, builds qdist, and quantizes the default checkpoint with
# 4 MPI ranks, printing a summary.
#   deploy/quickstart.sh [CHECKPOINT_DIR] [OUT.h5]
# Default checkpoint: ../shared/models/vit-mnist-tiny beside the checkout (give another
# checkpoint directory as the first argument).
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
# shellcheck source=deploy/mpienv.sh
. deploy/mpienv.sh
QD_BUILD_DIR=build deploy/build.sh -DQD_BUILD_TESTS=OFF

MODEL=${1:-}
if [ -z "$MODEL" ]; then
  MODEL=../shared/models/vit-mnist-tiny
  [ -d "$MODEL" ] || { echo "quickstart: $MODEL not found; pass a checkpoint directory" >&2; exit 1; }
fi
OUT=${2:-out/quickstart.h5}
mkdir -p "$(dirname "$OUT")"

echo "== checkpoint: $MODEL"
echo "== mpirun -n 4 qdist plan --ranks 4"
build/qdist plan --ranks 4 --model "$MODEL" | sed -n '1,9p'
echo "== mpirun -n 4 qdist quantize --model $MODEL --out $OUT --overwrite"
mpirun -n 4 build/qdist quantize --model "$MODEL" --out "$OUT" --overwrite </dev/null | tr '\r' '\n' | grep -v '^\[' || true
echo "== qdist inspect $OUT"
build/qdist inspect "$OUT" | sed -n '1,8p'
