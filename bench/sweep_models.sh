#!/bin/sh
# The sweeps behind docs/sweep.md and the README's figures: qdist sweep on both real checkpoints,
# 2 ranks, one after the other. Usage: sh bench/sweep_models.sh [QDIST] [OUTDIR] [vit|minilm|both]
#   vit-mnist-tiny: RTN, GPTQ, AdaRound (300 steps), K-means x 2/3/4/8 bits x tensor/channel/g32,
#     GPTQ/AdaRound calibrated on 64 MNIST test images, evaluated on the first 2,000 test digits;
#   all-MiniLM-L6-v2 (~/.cache/qdist/models, see deploy/): the same grid, GPTQ/AdaRound
#     calibrated on 32 SST-2 dev sentences, evaluated on all 872 SST-2 dev sentences (embedding
#     cosine to FP32 and a linear probe's accuracy).
# Every cell quantizes the model and runs eval (FP32 and quantized). Rerunning the same command
# skips the cells already evaluated and redraws the tables and plots, so an interrupted run is
# resumed by running it again.
set -eu
Q=${1:-build/qdist}
OUT=${2:-/tmp/qdist-sweep}
WHICH=${3:-both}
S=../shared/models
MM=${QD_MINILM:-$HOME/.cache/qdist/models/all-MiniLM-L6-v2}
EXTRA=${QD_SWEEP_EXTRA:-}
. deploy/mpienv.sh
if [ "$WHICH" != minilm ]; then
  # shellcheck disable=SC2086
  mpirun -n 2 "$Q" sweep --model $S/vit-mnist-tiny --data $S/data/mnist/t10k-images-idx3-ubyte.gz \
    --calib $S/data/mnist/t10k-images-idx3-ubyte.gz --nsamples 64 --iters 300 --n 2000 --batch 100 --plot-cosine \
    $EXTRA --out "$OUT/vit" || true
fi
if [ "$WHICH" != vit ]; then
  # shellcheck disable=SC2086
  mpirun -n 2 "$Q" sweep --model "$MM" --data $S/data/sst2/dev.tsv --calib $S/data/sst2/dev.tsv --nsamples 32 \
    --methods rtn,kmeans,gptq,adaround --iters 300 --batch 32 --plot-cosine $EXTRA --out "$OUT/minilm" || true
fi
