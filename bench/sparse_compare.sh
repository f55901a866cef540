#!/usr/bin/env bash
# bench/sparse_compare.sh — dense, pruned only, quantized only and pruned + quantized, on the two
# real checkpoints (vit-mnist-tiny: MNIST test top-1; all-MiniLM-L6-v2: SST-2 dev embedding cosine
# to FP32), with file size and batch-1 latency from `qdist eval`; structured rows (heads: 1 of 4 per
# layer on the ViT, 2 of 12 on MiniLM; FFN: a quarter of the neurons) evaluate the smaller
# checkpoint, so their FP32 is the pruned-only model. One markdown table per checkpoint
# on stdout; the JSON of every eval in OUTDIR. Resumable: rows whose JSON is in OUTDIR are not
# run again (delete OUTDIR for a fresh table).
#
#   bench/sparse_compare.sh [OUTDIR]      (default /tmp/qd-sparse-compare)
# Environment: QDIST (default build/qdist), QD_MODELS_DIR (default ../shared/models), QD_BERT_DIR
# (found like tests/reference/bert_dir.sh), MODELS (default "vit bert"), VIT_N (MNIST images,
# default all 10,000), BERT_N (SST-2 sentences, default all 872), MPIRUN (e.g. "mpirun -n 2"; files are identical for any rank count).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
QDIST=${QDIST:-$here/build/qdist}
MD=${QD_MODELS_DIR:-$here/../shared/models}
OUT=${1:-/tmp/qd-sparse-compare}
MPIRUN=${MPIRUN:-}
mkdir -p "$OUT"
# id | quantize options ("" = the FP32 model itself)
CONFIGS=(
  "int8 rtn|--bits 8"
  "int4 g32 rtn|--bits 4 --asym --group-size 32"
  "int4 g32 gptq|--method gptq --bits 4 --asym --group-size 32 CALIB"
  "magnitude 50%|--method gptq --prune-only --prune magnitude --sparsity 0.5 CALIB"
  "wanda 50%|--method gptq --prune-only --prune wanda --sparsity 0.5 CALIB"
  "sparsegpt 50%|--method gptq --prune-only --sparsity 0.5 CALIB"
  "magnitude 2:4|--method gptq --prune-only --prune magnitude --sparsity 2:4 CALIB"
  "wanda 2:4|--method gptq --prune-only --prune wanda --sparsity 2:4 CALIB"
  "sparsegpt 2:4|--method gptq --prune-only --sparsity 2:4 CALIB"
  "magnitude 4:8|--method gptq --prune-only --prune magnitude --sparsity 4:8 CALIB"
  "sparsegpt 4:8|--method gptq --prune-only --sparsity 4:8 CALIB"
  "heads -HEADS + int8|--bits 8 --prune-heads HEADS CALIB"
  "FFN -25% + int8|--bits 8 --prune-ffn 0.25 CALIB"
  "magnitude+rtn 2:4 int8|--bits 8 --sparsity 2:4"
  "sparsegpt+gptq 2:4 int8|--method gptq --bits 8 --sparsity 2:4 CALIB"
  "magnitude+rtn 50% int4 g32|--bits 4 --asym --group-size 32 --sparsity 0.5"
  "sparsegpt+gptq 50% int4 g32|--method gptq --bits 4 --asym --group-size 32 --sparsity 0.5 CALIB"
  "magnitude+rtn 2:4 int4 g32|--bits 4 --asym --group-size 32 --sparsity 2:4"
  "sparsegpt+gptq 2:4 int4 g32|--method gptq --bits 4 --asym --group-size 32 --sparsity 2:4 CALIB"
)
for model in ${MODELS:-vit bert}; do
  if [ "$model" = vit ]; then
    dir=$MD/vit-mnist-tiny data=$MD/data/mnist/t10k-images-idx3-ubyte.gz calib=$data heads=1
    evopts="--batch 100 ${VIT_N:+--n $VIT_N}" metric=accuracy
  else
    dir=${QD_BERT_DIR:-$("$here/tests/reference/bert_dir.sh" 2>/dev/null || true)}
    [ -d "$dir" ] || { echo "no BERT checkpoint: skipping"; continue; }
    data=$MD/data/sst2/dev.tsv calib=$data evopts="${BERT_N:+--n $BERT_N}" metric=cosine heads=2
  fi
  echo "### $model ($dir)"
  echo
  echo "| model | $metric | agreement | file bytes | p50 latency ms (FP32 ms) |"
  echo "|---|---|---|---|---|"
  i=0
  for c in "${CONFIGS[@]}"; do
    name=${c%%|*} opts=${c#*|}
    opts=${opts/CALIB/--calib $calib}
    opts=${opts//HEADS/$heads} name=${name//HEADS/$heads}
    f="$OUT/$model-$i.h5" j="$OUT/$model-$i.json"
    # structured rows: the job writes the smaller checkpoint beside the file; eval runs on it, so
    # its FP32 column is the pruned-only model (accuracy; a cosine would be to the pruned model)
    mdir=$dir
    case $opts in *--prune-heads* | *--prune-ffn*) mdir=$f.structured ;; esac
    # resumable: a row whose JSON is complete is printed again, not recomputed
    if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))["quantized"]' "$j" 2> /dev/null; then
      # shellcheck disable=SC2086
      $MPIRUN "$QDIST" quantize --model "$dir" --out "$f" --overwrite --quiet $opts > "$OUT/$model-$i.log" 2>&1 \
        || { echo "| $name | quantize failed (see $OUT/$model-$i.log) | | | |"; i=$((i + 1)); continue; }
      # shellcheck disable=SC2086
      "$QDIST" eval --model "$mdir" --quantized "$f" --data "$data" $evopts --json > "$j.part" 2> /dev/null
      mv "$j.part" "$j"
    fi
    python3 - "$j" "$name" "$metric" "$i" "$mdir" "$dir" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); name, metric, i = sys.argv[2], sys.argv[3], int(sys.argv[4])
q, f = d["quantized"], d["fp32"]
if i == 0:
    v = f.get("accuracy", 1.0) if metric == "accuracy" else 1.0
    print(f"| dense FP32 | {100 * v:.2f} % | | {f['file_bytes']} | {f['latency_ms']['p50']:.3f} |" if metric == "accuracy"
          else f"| dense FP32 | 1.0000 | | {f['file_bytes']} | {f['latency_ms']['p50']:.3f} |")
if sys.argv[5] != sys.argv[6]:  # structured: the pruned FP32 model first
    base = name.replace(" + int8", "")
    if metric == "accuracy":
        print(f"| {base} (FP32, pruned only) | {100 * f['accuracy']:.2f} % | | {f['file_bytes']} | {f['latency_ms']['p50']:.3f} |")
    name += " (cosine to the pruned FP32)" if metric != "accuracy" else ""
val = f"{100 * q['accuracy']:.2f} %" if metric == "accuracy" else f"{d['cosine']['mean']:.4f}"
agr = f"{100 * d['agreement']:.2f} %" if "agreement" in d else ""  # embeddings: no predictions
print(f"| {name} | {val} | {agr} | {q['file_bytes']} | {q['latency_ms']['p50']:.3f} ({f['latency_ms']['p50']:.3f}) |")
PY
    rm -rf "$f" "$f.structured"
    i=$((i + 1))
  done
  echo
done
