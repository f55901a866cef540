#!/bin/sh
# qdist export --format tflite: an integer-only INT8 vit-mnist-tiny run by LiteRT (ai-edge-litert,
# deploy/pyenv.sh's venv) on MNIST test images against qdist's outputs on the same images.
# From the file's static activation scales (quantize --activations static; /activations records the
# LayerNorm inputs' means and centred values the int8 LayerNorm needs): against `qdist eval
# --integer-only`'s logits, top-1 agreement >= 99.5 %, mean logits cosine >= 0.999, accuracy within
# 0.5 points. From --activation-ranges (tests/export/vit_ranges.py on the first 256 images, system
# Python) on a file without /activations: against fake-quant, agreement >= 99 %. Files: RTN 8-bit
# per channel and RTN 4-bit symmetric per channel (its codes carried as int8 values).
# Refusals (exit 1, reason, no file): no scales, a range missing, asymmetric group weights, BERT.
# Skipped (77) when the venv cannot be made.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
OUTS=$1
PY=$(bash "$QD_SOURCE_DIR/deploy/pyenv.sh") || { echo "export_tflite: no Python venv (deploy/pyenv.sh failed): skipped"; exit 77; }
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
NV=${QD_TFLITE_IMAGES:-2000}
T=$(mktemp -d /tmp/qd-tfl-XXXXXX)
trap 'rm -rf "$T"' EXIT
check() { # MODEL OUTPUTS LABEL BOUNDS...
  m=$1 o=$2 l=$3
  shift 3
  "$PY" "$QD_SOURCE_DIR/tests/export/check_tflite.py" "$m" "$o" "$@" --label "$l" 2> "$T/py.err" ||
      { cat "$T/py.err"; exit 1; }
}
for f in v8 v4; do
  b=8
  [ "$f" = v4 ] && b=4
  "$QDIST" quantize --model "$VIT" --out "$T/$f.h5" --quiet --bits $b --activations static --calib "$MNIST" \
      --nsamples 128
  "$OUTS" --model "$VIT" --quantized "$T/$f.h5" --data "$MNIST" --n "$NV" --batch 100 --integer-only --out "$T/$f.st"
  "$QDIST" export "$T/$f.h5" --format tflite --out "$T/$f.tflite"
  check "$T/$f.tflite" "$T/$f.st" "ViT $f LiteRT from the file's scales vs integer-only" --min-agree 0.995 \
      --min-mean-cos 0.999 --max-acc-drop 0.005
done
"$QDIST" quantize --model "$VIT" --out "$T/w8.h5" --quiet
"$OUTS" --model "$VIT" --quantized "$T/w8.h5" --data "$MNIST" --n "$NV" --batch 100 --fake-quant --out "$T/w8.st"
/usr/bin/python3 "$QD_SOURCE_DIR/tests/export/vit_ranges.py" "$QD_SOURCE_DIR/docs" "$T/w8.h5" "$T/w8.st" \
    "$T/v8.ranges.json" --n 256
"$QDIST" export "$T/w8.h5" --format tflite --activation-ranges "$T/v8.ranges.json" --out "$T/w8.tflite"
check "$T/w8.tflite" "$T/w8.st" "ViT w8 LiteRT from --activation-ranges vs fake-quant" --min-agree 0.99 \
    --min-mean-cos 0.999 --max-acc-drop 0.005

. "$QD_SOURCE_DIR/tests/export/fails.sh"
fails "no static activation scales" "$T/x1.tflite" -- "$QDIST" export "$T/w8.h5" --format tflite --out "$T/x1.tflite"
/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); del r['layer.3.ctx']; json.dump(r, open(sys.argv[2],'w'))" \
    "$T/v8.ranges.json" "$T/cut.json"
fails "no range \[min, max\] for activation 'layer.3.ctx'" "$T/x2.tflite" -- \
    "$QDIST" export "$T/w8.h5" --format tflite --activation-ranges "$T/cut.json" --out "$T/x2.tflite"
"$QDIST" quantize --model "$VIT" --out "$T/va.h5" --quiet --bits 4 --asym --group-size 32
fails "asymmetric 4-bit group-wise weights cannot be expressed in LiteRT" "$T/x3.tflite" -- \
    "$QDIST" export "$T/va.h5" --format tflite --activation-ranges "$T/v8.ranges.json" --out "$T/x3.tflite"
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh" 2>/dev/null) && {
  "$QDIST" quantize --model "$BERT" --out "$T/b8.h5" --quiet
  fails "writes ViT models for now" "$T/x4.tflite" -- \
      "$QDIST" export "$T/b8.h5" --format tflite --activation-ranges "$T/v8.ranges.json" --out "$T/x4.tflite"
}
echo "ok: export_tflite"
