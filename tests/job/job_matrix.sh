#!/bin/sh
# Writes one model file per case of a fixed matrix of jobs (RTN, GPTQ and AdaRound schemes on the
# real checkpoints, 1, 2 and 4 ranks, both calibration modes; `sparse`: pruned jobs) into OUTDIR,
# named CASE.h5:
#   sh tests/job/job_matrix.sh QDIST OUTDIR [vit|bert|sparse|all]
# Two binaries' directories are then compared file by file with tests/job/job_compare.sh (every
# dataset and attribute equal outside /run). Used to show that a change to the code leaves the
# files unchanged; needs QD_MODELS_DIR (../shared/models) and, for bert, the all-MiniLM-L6-v2
# checkpoint (tests/reference/bert_dir.sh).
set -eu
Q=${1:?QDIST}
O=${2:?OUTDIR}
which=${3:-all}
here=$(cd "$(dirname "$0")" && pwd)
: "${QD_MODELS_DIR:=$here/../../../shared/models}"
. "$here/../../deploy/mpienv.sh"
mkdir -p "$O"
V="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
S="$QD_MODELS_DIR/data/sst2/dev.tsv"

run() { # name ranks args...
  name=$1 n=$2
  shift 2
  mpiexec -n "$n" --oversubscribe "$Q" quantize --out "$O/$name.h5" --quiet --overwrite "$@" > "$O/$name.log" 2>&1 ||
    { echo "job_matrix: $name failed:"; cat "$O/$name.log"; exit 1; }
}

if [ "$which" = sparse ] || [ "$which" = all ]; then
  C="--calib $D --nsamples 32 --microbatch 6"
  for n in 1 2 4; do
    # shellcheck disable=SC2086
    run "sparse-sg24-n$n" $n --model "$V" --method gptq --bits 8 --sparsity 2:4 $C
    # shellcheck disable=SC2086
    run "sparse-wanda48-n$n" $n --model "$V" --method gptq --bits 4 --asym --group-size 32 --sparsity 4:8 --prune wanda $C
    # shellcheck disable=SC2086
    run "sparse-only50-n$n" $n --model "$V" --method gptq --sparsity 0.5 --prune-only $C
    run "sparse-rtn50-n$n" $n --model "$V" --sparsity 0.5
  done
fi
if [ "$which" = vit ] || [ "$which" = all ]; then
  cat > "$O/mix.json" <<J
{"bits": 8, "include": ["classifier.weight"], "overrides": [
  {"pattern": "*.output.dense.weight", "skip": true},
  {"pattern": "*.attention.attention.*", "bits": 4, "group_size": 32, "sym": false, "clip": "mse"},
  {"pattern": "*.intermediate.*", "bits": 3, "granularity": "tensor", "sym": false}]}
J
  for n in 1 2 4; do
    run "vit-rtn8-n$n" $n --model "$V"
    run "vit-rtn4g32mse-n$n" $n --model "$V" --bits 4 --asym --group-size 32 --clip mse --shard layer
    run "vit-rtn3g16-n$n" $n --model "$V" --bits 3 --asym --group-size 16 --shard rows
    run "vit-rtn2tensor-n$n" $n --model "$V" --bits 2 --asym --granularity tensor --shard tensor
    run "vit-rtnmix-n$n" $n --model "$V" --config "$O/mix.json"
    for mode in sequential fp; do
      run "vit-gptq4g32ao-$mode-n$n" $n --model "$V" --method gptq --bits 4 --asym --group-size 32 --act-order \
        --calib "$D" --nsamples 40 --microbatch 6 --calib-mode $mode
      run "vit-gptq3ch-$mode-n$n" $n --model "$V" --method gptq --bits 3 --calib "$D" --nsamples 24 --clip mse \
        --calib-mode $mode
      run "vit-ada3g32-$mode-n$n" $n --model "$V" --method adaround --bits 3 --asym --group-size 32 --calib "$D" \
        --nsamples 24 --iters 60 --beta 10,2 --calib-mode $mode
      run "vit-ada3b64-$mode-n$n" $n --model "$V" --method adaround --bits 3 --asym --group-size 32 --calib "$D" \
        --nsamples 32 --microbatch 6 --iters 50 --batch 64 --calib-mode $mode
    done
  done
fi
if [ "$which" = bert ] || [ "$which" = all ]; then
  B=$(sh "$here/../reference/bert_dir.sh") || { echo "job_matrix: no BERT checkpoint, bert cases skipped"; exit 0; }
  for n in 1 2 4; do
    run "bert-rtn8-n$n" $n --model "$B"
    run "bert-rtn4g64-n$n" $n --model "$B" --bits 4 --asym --group-size 64 --include-embeddings
    for mode in sequential fp; do
      run "bert-gptq4g128-$mode-n$n" $n --model "$B" --method gptq --bits 4 --group-size 128 --calib "$S" \
        --nsamples 16 --seqlen 32 --calib-mode $mode
      run "bert-ada4-$mode-n$n" $n --model "$B" --method adaround --bits 4 --calib "$S" --nsamples 8 --seqlen 32 \
        --iters 20 --calib-mode $mode
    done
  done
fi
echo "job_matrix: $(ls "$O"/*.h5 | wc -l) files in $O"
