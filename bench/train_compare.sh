#!/bin/sh
# bench/train_compare.sh — PTQ (RTN, GPTQ, AdaRound) vs QAT vs scale-only fine-tuning at 4, 3
# and 2 bits per channel (asymmetric) on one ViT classifier: top-1, time, and accuracy per epoch.
#
#   sh bench/train_compare.sh NAME MODEL_DIR TRAIN_IMAGES A:B EVAL_IMAGES C:D [OUTDIR]
#   e.g. MNIST (only its test set is available: images 0-1999 train and calibrate, 8000-9999
#   evaluate; the figures of bench/README.md):
#   RANKS=2 ADA_ITERS=2000 BITS="2 3 4" sh bench/train_compare.sh mnist ../shared/models/vit-mnist-tiny \
#       ../shared/models/data/mnist/t10k-images-idx3-ubyte.gz 0:2000 \
#       ../shared/models/data/mnist/t10k-images-idx3-ubyte.gz 8000:10000
#
# Every method sees the same training split: PTQ calibrates on 128 of its images (seed 0), QAT
# and scale-only start from the GPTQ file of the same width and train on it for EPOCHS epochs
# (batch 32, AdamW lr LR, loss DISTILL x KL to the FP32 model + the rest cross-entropy on the
# labels), evaluated before
# training and after each epoch. Top-1 figures use `qdist eval --fake-quant` (dequantized
# weights, float activations: the quantization of the weights alone) on the evaluation split.
# Output: OUTDIR/results.csv (name,bits,method,top1_pct,seconds), OUTDIR/curve.csv
# (name,bits,method,epoch,top1_pct), and the logs. bench/plot_qat.gp draws them.
# Environment: QDIST (build/qdist), RANKS (1), EPOCHS (2), LR (1e-5), DISTILL (0.9), BITS ("4 3 2"),
# ADA_ITERS (AdaRound steps per layer; its default 10,000 when unset), STAGES ("ptq train": the
# PTQ methods, then QAT/scale-only from the GPTQ file, which must exist when only "train" runs),
# SELECT (A:B: items of TRAIN_IMAGES never trained on that choose the epoch written, --select).
set -eu
name=$1 model=$2 train=$3 trange=$4 evald=$5 erange=$6 out=${7:-out/train_compare}
QDIST=${QDIST:-build/qdist}
RANKS=${RANKS:-1}
EPOCHS=${EPOCHS:-2}
LR=${LR:-1e-5}
DISTILL=${DISTILL:-0.9}
ADA_ITERS=${ADA_ITERS:-}
BITS=${BITS:-"4 3 2"}
STAGES=${STAGES:-"ptq train"}
SELECT=${SELECT:-}
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/deploy/mpienv.sh"
mkdir -p "$out/$name"
d=$out/$name
# the splits as IDX files (labels beside: qdist finds them by name)
python3 - "$train" "$trange" "$d/train" "$evald" "$erange" "$d/eval" <<'EOF'
import gzip, sys
def labels_of(p): return p.replace("images-idx3", "labels-idx1")
def split(img, rng, dst):
    a, b = map(int, rng.split(":"))
    op = gzip.open if img.endswith(".gz") else open
    with op(img, "rb") as f: im = f.read()
    with op(labels_of(img), "rb") as f: lb = f.read()
    n = int.from_bytes(im[4:8], "big"); h, w = int.from_bytes(im[8:12], "big"), int.from_bytes(im[12:16], "big")
    b = min(b, n)
    with gzip.GzipFile(dst + "-images-idx3-ubyte.gz", "wb", mtime=0) as f:
        f.write(im[:4] + (b - a).to_bytes(4, "big") + im[8:16] + im[16 + a * h * w:16 + b * h * w])
    with gzip.GzipFile(dst + "-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
        f.write(lb[:4] + (b - a).to_bytes(4, "big") + lb[8 + a:8 + b])
split(sys.argv[1], sys.argv[2], sys.argv[3]); split(sys.argv[4], sys.argv[5], sys.argv[6])
EOF
TR=$d/train-images-idx3-ubyte.gz
EV=$d/eval-images-idx3-ubyte.gz
run() { mpirun -n "$RANKS" "$QDIST" "$@"; }
now() { date +%s.%N; }
top1() { # FILE.h5 -> top-1 % of the quantized model on the evaluation split
  "$QDIST" eval --model "$model" --quantized "$1" --data "$EV" --batch 100 --fake-quant --json 2>/dev/null |
    python3 -c "import json,sys; d=json.load(sys.stdin); print('%.2f %.2f' % (100*d['quantized']['accuracy'], 100*d['fp32']['accuracy']))"
}
[ -f "$out/results.csv" ] || echo "name,bits,method,top1_pct,seconds" >"$out/results.csv"
[ -f "$out/curve.csv" ] || echo "name,bits,method,epoch,top1_pct" >"$out/curve.csv"
fp=""
for b in $BITS; do
  for m in rtn gptq adaround; do
    case " $STAGES " in *" ptq "*) ;; *) continue ;; esac
    t0=$(now)
    extra=""
    [ $m != rtn ] && extra="--calib $TR --nsamples 128"
    [ $m = adaround ] && [ -n "$ADA_ITERS" ] && extra="$extra --iters $ADA_ITERS"
    # shellcheck disable=SC2086
    run quantize --model "$model" --out "$d/$m-$b.h5" --method $m --bits "$b" --asym --overwrite --quiet $extra
    t1=$(now)
    set -- $(top1 "$d/$m-$b.h5")
    fp=$2
    echo "$name,$b,$m,$1,$(echo "$t1 - $t0" | bc)" | tee -a "$out/results.csv"
  done
  for mode in qat scale-only; do
    case " $STAGES " in *" train "*) ;; *) continue ;; esac
    sel=""
    [ -n "$SELECT" ] && sel="--select $train --select-range $SELECT"
    t0=$(now)
    # shellcheck disable=SC2086
    run finetune --model "$model" --data "$TR" --eval "$EV" --$mode "$d/gptq-$b.h5" --epochs "$EPOCHS" \
      --batch 32 --lr "$LR" --distill "$DISTILL" --log "$d/$mode-$b.jsonl" --out "$d/$mode-$b.h5" --quiet $sel
    t1=$(now)
    set -- $(top1 "$d/$mode-$b.h5")
    echo "$name,$b,$mode,$1,$(echo "$t1 - $t0" | bc)" | tee -a "$out/results.csv"
    python3 - "$d/$mode-$b.jsonl" "$name" "$b" "$mode" >>"$out/curve.csv" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "eval_acc" in r:
        print(f"{sys.argv[2]},{sys.argv[3]},{sys.argv[4]},{r['epoch']},{100 * r['eval_acc']:.2f}")
EOF
  done
done
[ -n "$fp" ] && echo "$name,32,fp32,$fp,0" | tee -a "$out/results.csv"
exit 0
