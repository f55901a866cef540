#!/bin/sh
# Two qdist binaries write the same files: a fixed set of quantize jobs (RTN at six schemes, GPTQ
# at four, AdaRound at three, each on 1, 2 and 4 ranks on vit-mnist-tiny; RTN, GPTQ and AdaRound
# on all-MiniLM-L6-v2 when the checkpoint is there) run with each binary, then h5diff
# --exclude-path /run on every pair (/run holds time stamps and the rank count). For a change
# that must not change what quantize writes: build the old commit separately, then
#     bench/same_files.sh OLD/qdist build/qdist
# Prints one line per differing file and a count; exit 1 when a file differs or is missing.
# Environment: QD_MODELS_DIR (default ../shared/models beside the checkout), QD_BERT_DIR,
# QD_KERNELS (passed on to both binaries; AdaRound's AMX product differs from its sgemm form by
# design, so compare binaries under the same setting).
set -eu
[ $# -eq 2 ] || { echo "usage: $0 OLD_QDIST NEW_QDIST" >&2; exit 2; }
OLD=$1 NEW=$2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MD=${QD_MODELS_DIR:-$ROOT/../shared/models}
M=$MD/vit-mnist-tiny
D=$MD/data/mnist/t10k-images-idx3-ubyte.gz
S=$MD/data/sst2/dev.tsv
B=$("$ROOT/tests/reference/bert_dir.sh" 2>/dev/null || true)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OPENBLAS_NUM_THREADS=1
T=$(mktemp -d /tmp/qd-same-XXXXXX)
trap 'rm -rf "$T"' EXIT

jobs() { # binary outdir
  q=$1 o=$2
  mkdir -p "$o"
  run() { name=$1 n=$2 model=$3; shift 3; mpiexec -n "$n" --oversubscribe "$q" quantize --model "$model" --out "$o/$name-n$n.h5" --quiet "$@"; }
  for n in 1 2 4; do
    run rtn8 $n "$M" --bits 8
    run rtn4g32mse $n "$M" --bits 4 --asym --group-size 32 --clip mse --shard layer
    run rtn3g16rows $n "$M" --bits 3 --asym --group-size 16 --shard rows
    run rtn2tensor $n "$M" --bits 2 --granularity tensor --asym
    run rtn5g48 $n "$M" --bits 5 --group-size 48 --clip mse --shard rows
    run rtn6chmse $n "$M" --bits 6 --asym --clip mse
    run gptq4seq $n "$M" --method gptq --bits 4 --asym --group-size 32 --act-order --calib "$D" --nsamples 40 --microbatch 6 --calib-mode sequential
    run gptq4fp $n "$M" --method gptq --bits 4 --asym --group-size 32 --act-order --calib "$D" --nsamples 40 --microbatch 6 --calib-mode fp
    run gptq3static $n "$M" --method gptq --bits 3 --group-size 16 --act-order --static-groups --calib "$D" --nsamples 24
    run gptq8ch $n "$M" --method gptq --bits 8 --calib "$D" --nsamples 24 --clip mse
    run ada3seq $n "$M" --method adaround --bits 3 --asym --group-size 32 --calib "$D" --nsamples 24 --iters 60 --beta 10,2 --calib-mode sequential
    run ada3fpbatch $n "$M" --method adaround --bits 3 --asym --group-size 32 --calib "$D" --nsamples 32 --microbatch 6 --iters 50 --batch 64 --calib-mode fp
    run ada4ch $n "$M" --method adaround --bits 4 --calib "$D" --nsamples 16 --iters 40
  done
  if [ -n "$B" ]; then
    run bert-rtn4g64 2 "$B" --bits 4 --asym --group-size 64
    run bert-rtn8 1 "$B" --bits 8 --clip mse
    run bert-gptq4 2 "$B" --method gptq --bits 4 --group-size 128 --calib "$S" --nsamples 8 --seqlen 32
    run bert-ada4 2 "$B" --method adaround --bits 4 --calib "$S" --nsamples 8 --seqlen 32 --iters 20
  fi
}

jobs "$OLD" "$T/old"
jobs "$NEW" "$T/new"
n=0 bad=0
for f in "$T"/old/*.h5; do
  g="$T/new/$(basename "$f")"
  n=$((n + 1))
  if [ ! -f "$g" ] || ! h5diff --exclude-path /run "$f" "$g" >/dev/null 2>&1; then
    echo "DIFFERENT: $(basename "$f")"
    bad=$((bad + 1))
  fi
done
echo "$n files compared, $bad different${B:+ (BERT included)}"
[ "$bad" -eq 0 ]
