#!/usr/bin/env bash
# bench/intonly.sh — integer-only inference against the dynamic-activation path and FP32 on the
# two real checkpoints: accuracy, the cost of each integer approximation, the static range
# methods, and speed at batch 1 and 32.
#
#   bench/intonly.sh [OUTDIR]            (default OUTDIR: out/intonly in the source tree)
#
# Environment:
#   QDIST          the qdist binary (default: build/qdist in the source tree)
#   QD_MODELS_DIR  the shared models folder (default: ../shared/models beside the source tree)
#   QD_BERT_DIR    all-MiniLM-L6-v2, found as tests/reference/bert_dir.sh finds it; without it the
#                  BERT rows are skipped
#   MODELS         "vit bert" (default)
#   PARTS          "accuracy methods speed" (default: all three)
#   ROUNDS         speed repetitions, the median ratio is reported (default 3)
#   VIT_N_B1, VIT_N_B32, BERT_N_B1, BERT_N_B32
#                  samples timed at batch 1 and 32 (defaults 1000, 3200, 200, 864)
#   FORCE=1        redo evaluations whose JSON is already in OUTDIR (default: keep them, so an
#                  interrupted run continues where it stopped)
#
# What it runs:
#   files     8-bit RTN per channel (the defaults) with --activations static: ViT calibrated on 256
#             MNIST test images (a seeded draw of the 10,000 that are then all evaluated; no
#             labels), BERT on 128 SST-2 dev sentences (of the 872 evaluated); --act-calib minmax
#             and outlier channels above 4x the median (the defaults)
#   accuracy  'qdist eval --json' on every sample: the dynamic path (int8 per-token activations,
#             outlier columns in float), --fake-quant (weights alone), --integer-only, and
#             --integer-only with each integer approximation switched back to float in turn
#             (--float-ops gelu | softmax | layernorm, then all of them: what is left is the cost
#             of the static int8 activations and the integer GEMMs)
#   methods   integer-only with each --act-calib (minmax, percentile 99.99, mse, entropy) and
#             minmax without outlier channels (--act-outliers 0)
#   speed     'qdist eval' at --batch 1 and --batch 32, --integer-only and the dynamic path, each
#             run timing FP32 in the same process (OPENBLAS_NUM_THREADS=1, one core): speed-up =
#             FP32 time / quantized time, median of ROUNDS runs; integer-only vs dynamic is the
#             ratio of the two speed-ups (each against its own FP32 run)
# Writes OUTDIR/*.json (raw eval outputs) and OUTDIR/intonly.md (the tables, also printed).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
QDIST=${QDIST:-$SRC/build/qdist}
QD_MODELS_DIR=${QD_MODELS_DIR:-$SRC/../shared/models}
OUT=${1:-$SRC/out/intonly}
MODELS=${MODELS:-vit bert}
PARTS=${PARTS:-accuracy methods speed}
ROUNDS=${ROUNDS:-3}
export OPENBLAS_NUM_THREADS=1
mkdir -p "$OUT"
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
SST2="$QD_MODELS_DIR/data/sst2/dev.tsv"
BERT=""
case " $MODELS " in *" bert "*) BERT=$(sh "$SRC/tests/reference/bert_dir.sh" 2>/dev/null || true) ;; esac

has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

# quantize NAME MODEL DATA NSAMPLES [extra quantize options]
quantize() {
  local name=$1 model=$2 data=$3 ns=$4
  shift 4
  [ -f "$OUT/$name.h5" ] && return 0
  "$QDIST" quantize --model "$model" --out "$OUT/$name.h5" --quiet --activations static --calib "$data" \
    --nsamples "$ns" "$@"
}

# ev TAG MODEL FILE DATA BATCH [eval options]
ev() {
  local tag=$1 model=$2 file=$3 data=$4 batch=$5
  shift 5
  if [ -s "$OUT/$tag.json" ] && [ -z "${FORCE:-}" ]; then return 0; fi # done in an earlier run
  echo "  eval $tag" >&2
  "$QDIST" eval --model "$model" --quantized "$OUT/$file.h5" --data "$data" --batch "$batch" --json "$@" \
    > "$OUT/$tag.json"
}

for m in $MODELS; do
  if [ "$m" = vit ]; then model=$VIT data=$MNIST ns=256 bsz=100
  elif [ -n "$BERT" ]; then model=$BERT data=$SST2 ns=128 bsz=16
  else echo "BERT checkpoint not found (deploy/fetch-models.sh): BERT skipped" >&2; continue; fi
  echo "$m: files" >&2
  quantize "$m-minmax" "$model" "$data" $ns
  if has accuracy; then
    ev "$m-acc-dynamic" "$model" "$m-minmax" "$data" $bsz
    ev "$m-acc-fake" "$model" "$m-minmax" "$data" $bsz --fake-quant
    ev "$m-acc-int" "$model" "$m-minmax" "$data" $bsz --integer-only
    ops="softmax layernorm"
    [ "$m" = bert ] && ops="gelu softmax layernorm"
    for f in $ops; do ev "$m-acc-int-f$f" "$model" "$m-minmax" "$data" $bsz --integer-only --float-ops $f; done
    all=$(echo $ops | tr ' ' ',')
    ev "$m-acc-int-fall" "$model" "$m-minmax" "$data" $bsz --integer-only --float-ops "$all"
  fi
  if has methods; then
    quantize "$m-percentile" "$model" "$data" $ns --act-calib percentile
    quantize "$m-mse" "$model" "$data" $ns --act-calib mse
    quantize "$m-entropy" "$model" "$data" $ns --act-calib entropy
    quantize "$m-noout" "$model" "$data" $ns --act-outliers 0
    for v in percentile mse entropy noout; do ev "$m-meth-$v" "$model" "$m-$v" "$data" $bsz --integer-only; done
  fi
  if has speed; then
    for b in 1 32; do
      if [ "$m" = vit ]; then n=$((b == 1 ? ${VIT_N_B1:-1000} : ${VIT_N_B32:-3200}))
      else n=$((b == 1 ? ${BERT_N_B1:-200} : ${BERT_N_B32:-864})); fi
      for r in $(seq 1 "$ROUNDS"); do
        ev "$m-speed-b$b-int-r$r" "$model" "$m-minmax" "$data" $b --n $n --integer-only
        ev "$m-speed-b$b-dyn-r$r" "$model" "$m-minmax" "$data" $b --n $n
      done
    done
  fi
done

python3 - "$OUT" "$ROUNDS" "$MODELS" <<'PY' | tee "$OUT/intonly.md"
import json, os, statistics, sys
out, rounds, models = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()

def load(tag):
    p = os.path.join(out, tag + ".json")
    return json.load(open(p)) if os.path.exists(p) and os.path.getsize(p) > 0 else None  # empty: running

def metric(e, side):
    if e is None:
        return None
    if e["task"] == "classification":
        return 100 * e[side]["accuracy"]
    return None

def fmt(v, nd=2):
    return "-" if v is None else f"{v:.{nd}f}"

names = {"vit": "vit-mnist-tiny, MNIST test (10,000)", "bert": "all-MiniLM-L6-v2, SST-2 dev (872)"}
print("## Accuracy and the cost of each integer approximation\n")
for m in models:
    e0 = load(f"{m}-acc-int")
    if e0 is None:
        continue
    cls = e0["task"] == "classification"
    print(f"### {names[m]}\n")
    if cls:
        print("| path | top-1 % | agreement with FP32 % | logits cosine (mean) |")
        print("|---|---|---|---|")
        print(f"| FP32 | {fmt(metric(e0, 'fp32'))} | 100 | 1 |")
    else:
        probe = fmt(100 * e0["fp32"].get("probe_accuracy", float("nan")))
        print(f"| path | embedding cosine to FP32 (mean) | min | linear probe % (FP32 {probe}) |")
        print("|---|---|---|---|")
    rows = [("dynamic int8 activations (default eval)", "acc-dynamic"), ("fake-quant (weights only)", "acc-fake"),
            ("**integer-only**", "acc-int")]
    ops = ["gelu", "softmax", "layernorm"] if m == "bert" else ["softmax", "layernorm"]
    for f in ops:
        rows.append((f"integer-only, {f} in float", f"acc-int-f{f}"))
    rows.append(("integer-only, " + " + ".join(ops) + " in float", "acc-int-fall"))
    for label, tag in rows:
        e = load(f"{m}-{tag}")
        if e is None:
            continue
        if cls:
            print(f"| {label} | {fmt(metric(e, 'quantized'))} | {fmt(100 * e['agreement'])} | {e['cosine']['mean']:.6f} |")
        else:
            print(f"| {label} | {e['cosine']['mean']:.5f} | {e['cosine']['min']:.5f} | "
                  f"{fmt(100 * e['quantized'].get('probe_accuracy', float('nan')))} |")
    print()

if any(load(f"{m}-meth-mse") for m in models):
    print("## Static range methods (integer-only)\n")
    print("| model | minmax | percentile 99.99 | mse | entropy | minmax, no outlier channels |")
    print("|---|---|---|---|---|---|")
    for m in models:
        cells = []
        for tag in ("acc-int", "meth-percentile", "meth-mse", "meth-entropy", "meth-noout"):
            e = load(f"{m}-{tag}")
            if e is None:
                cells.append("-")
            elif e["task"] == "classification":
                cells.append(f"{100 * e['quantized']['accuracy']:.2f} %")
            else:
                cells.append(f"cos {e['cosine']['mean']:.5f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()

if any(load(f"{m}-speed-b1-int-r1") for m in models):
    print("## Speed (one core; FP32 timed in the same run; median of %d runs)\n" % rounds)
    print("| model | batch | FP32 samples/s | dynamic samples/s | integer-only samples/s | dynamic vs FP32 | "
          "integer-only vs FP32 | integer-only vs dynamic |")
    print("|---|---|---|---|---|---|---|---|")
    for m in models:
        for b in (1, 32):
            r_int, r_dyn, t32, tdyn, tint = [], [], [], [], []
            for r in range(1, rounds + 1):
                ei, ed = load(f"{m}-speed-b{b}-int-r{r}"), load(f"{m}-speed-b{b}-dyn-r{r}")
                if ei is None or ed is None:
                    continue
                fi, qi = ei["fp32"]["throughput_per_s"], ei["quantized"]["throughput_per_s"]
                fd, qd = ed["fp32"]["throughput_per_s"], ed["quantized"]["throughput_per_s"]
                r_int.append(qi / fi)
                r_dyn.append(qd / fd)
                t32 += [fi, fd]
                tdyn.append(qd)
                tint.append(qi)
            if not r_int:
                continue
            med = statistics.median
            print(f"| {m} | {b} | {med(t32):.1f} | {med(tdyn):.1f} | {med(tint):.1f} | {med(r_dyn):.2f}x | "
                  f"{med(r_int):.2f}x | {med(r_int) / med(r_dyn):.2f}x |")
    print()
PY
