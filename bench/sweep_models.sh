#!/bin/sh
# The sweeps behind docs/sweep.md and the README's figures: qdist sweep on both real checkpoints,
# 2 ranks. Usage: sh bench/sweep_models.sh [QDIST] [OUTDIR]
#   vit-mnist-tiny: RTN, GPTQ, AdaRound (300 steps), K-means x 2/3/4/8 bits x tensor/channel/g32,
#     GPTQ/AdaRound calibrated on 64 MNIST test images, evaluated on the first 300 digits;
#   all-MiniLM-L6-v2 (~/.cache/qdist/models, see deploy/): RTN, GPTQ, K-means x 2/3/4/8 bits x
#     channel/g32, GPTQ calibrated on 32 SST-2 dev sentences, evaluated on the first 128 (the
#     embedding cosine to FP32 and a linear probe).
# A machine shared by other jobs made the grid small: every cell quantizes the model and runs eval
# (FP32 and quantized), about 25 s (ViT) and 100 s (MiniLM) each on 2 loaded cores. Rerunning the
# same command skips the cells already evaluated and redraws the tables and plots.
set -eu
Q=${1:-build/qdist}
OUT=${2:-/tmp/qdist-sweep}
S=../shared/models
MM=${QD_MINILM:-$HOME/.cache/qdist/models/all-MiniLM-L6-v2}
. deploy/mpienv.sh
mpirun -n 2 "$Q" sweep --model $S/vit-mnist-tiny --data $S/data/mnist/t10k-images-idx3-ubyte.gz \
  --calib $S/data/mnist/t10k-images-idx3-ubyte.gz --nsamples 64 --iters 300 --n 300 --batch 100 --plot-cosine --out "$OUT/vit" || true
mpirun -n 2 "$Q" sweep --model "$MM" --data $S/data/sst2/dev.tsv --calib $S/data/sst2/dev.tsv --nsamples 32 \
  --methods rtn,kmeans,gptq --granularity channel,g32 --n 128 --batch 32 --plot-cosine --out "$OUT/minilm" || true
