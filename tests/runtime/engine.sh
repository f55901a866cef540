#!/bin/sh
# The inference engine on vit-mnist-tiny (and all-MiniLM-L6-v2 when fetched): the FP32 engine
# against the model's forward pass, and every output identical bit for bit across the kernel
# tables of this CPU (QD_KERNELS=ref is the scalar reference of every kernel), thread counts and
# batch sizes (without outlier columns, whose choice depends on the rows of a batch; with them,
# across tables and threads at a fixed batch). Files: 8-bit per channel, 4-bit groups of 32.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
TE=$1
T=$(mktemp -d /tmp/qd-engine-XXXXXX)
trap 'rm -rf "$T"' EXIT
V="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
"$QDIST" quantize --model "$V" --out "$T/v8.h5" --quiet
"$QDIST" quantize --model "$V" --out "$T/v4.h5" --quiet --bits 4 --asym --group-size 32
isas="avx2 avxvnni avx512 avx512vnni amx"

same() { # same bits or fail, naming the case
  cmp -s "$1" "$2" || { echo "DIFFER: $3"; exit 1; }
}

check() { # model file data n outlier
  m=$1 f=$2 d=$3 n=$4 o=$5
  tag=$(basename "$f")
  QD_KERNELS=ref "$TE" "$m" "$f" "$d" "$n" 1 1 "$o" "$T/ref" > /dev/null
  for isa in $isas; do
    QD_KERNELS=$isa "$TE" "$m" "$f" "$d" "$n" 1 1 "$o" "$T/$isa" 2> /dev/null > /dev/null
    same "$T/ref" "$T/$isa" "$tag outlier $o: $isa vs the reference"
  done
  "$TE" "$m" "$f" "$d" "$n" 1 2 "$o" "$T/t2" > /dev/null
  same "$T/ref" "$T/t2" "$tag outlier $o: 2 threads vs 1"
  if [ "$o" = 0 ]; then
    "$TE" "$m" "$f" "$d" "$n" 7 2 "$o" "$T/b7" > /dev/null
    same "$T/ref" "$T/b7" "$tag: batch 7 vs batch 1"
    # pieces of 3 items (QD_ENGINE_CHUNK_ROWS = 3 x 50 tokens of vit-mnist-tiny): 3 pieces that 2
    # threads cannot share evenly, cut again into 4
    QD_ENGINE_CHUNK_ROWS=150 "$TE" "$m" "$f" "$d" "$n" 7 2 "$o" "$T/b7p" > /dev/null
    same "$T/ref" "$T/b7p" "$tag: batch 7 in pieces shared by 2 threads vs batch 1"
  fi
  echo "ok: $tag outlier $o: identical for ref, $isas, 2 threads${o:+}"
}

"$TE" "$V" - "$D" 64 8 2 0 "$T/f32" --vs-model
check "$V" - "$D" 32 0
check "$V" "$T/v8.h5" "$D" 32 0
check "$V" "$T/v8.h5" "$D" 32 6
check "$V" "$T/v4.h5" "$D" 32 0

B=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh" 2> /dev/null || true)
if [ -n "$B" ] && [ -d "$B" ]; then
  S="$QD_MODELS_DIR/data/sst2/dev.tsv"
  "$QDIST" quantize --model "$B" --out "$T/b8.h5" --quiet
  "$TE" "$B" - "$S" 24 6 2 0 "$T/bf32" --vs-model
  check "$B" "$T/b8.h5" "$S" 8 0
  check "$B" "$T/b8.h5" "$S" 8 6
else
  echo "all-MiniLM-L6-v2 not fetched (deploy/fetch-models.sh): BERT cases skipped"
fi
