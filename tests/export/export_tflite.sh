#!/bin/sh
# qdist export --format tflite: an integer-only INT8 vit-mnist-tiny run by LiteRT (ai-edge-litert,
# deploy/pyenv.sh's venv) on MNIST test images against qdist's outputs on the same images. The
# activation ranges are calibrated here (tests/export/vit_ranges.py on the first 256 images, system
# Python): a file's static activation scales hold none for the int8 LayerNorm's intermediates. Every activation of the
# LiteRT graph is int8, so the bound is on agreement with qdist's float-activation (fake-quant)
# logits: top-1 agreement >= 99 %, mean logits cosine >= 0.999, accuracy within 0.5 points. Files:
# RTN 8-bit per channel and RTN 4-bit symmetric per channel (its codes carried as int8 values).
# Refusals (exit 1, reason, no file): no ranges, a range missing, asymmetric group weights, BERT.
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
"$QDIST" quantize --model "$VIT" --out "$T/v8.h5" --quiet
"$QDIST" quantize --model "$VIT" --out "$T/v4.h5" --quiet --bits 4
for f in v8 v4; do
  "$OUTS" --model "$VIT" --quantized "$T/$f.h5" --data "$MNIST" --n "$NV" --batch 100 --fake-quant --out "$T/$f.st"
  /usr/bin/python3 "$QD_SOURCE_DIR/tests/export/vit_ranges.py" "$QD_SOURCE_DIR/docs" "$T/$f.h5" "$T/$f.st" \
      "$T/$f.ranges.json" --n 256
  "$QDIST" export "$T/$f.h5" --format tflite --activation-ranges "$T/$f.ranges.json" --out "$T/$f.tflite"
  "$PY" "$QD_SOURCE_DIR/tests/export/check_tflite.py" "$T/$f.tflite" "$T/$f.st" --min-agree 0.99 \
      --min-mean-cos 0.999 --max-acc-drop 0.005 --label "ViT $f integer-only LiteRT" 2> "$T/py.err" ||
      { cat "$T/py.err"; exit 1; }
done

. "$QD_SOURCE_DIR/tests/export/fails.sh"
fails "give --activation-ranges" "$T/x1.tflite" -- "$QDIST" export "$T/v8.h5" --format tflite --out "$T/x1.tflite"
/usr/bin/python3 -c "import json,sys; r=json.load(open(sys.argv[1])); del r['layer.3.ctx']; json.dump(r, open(sys.argv[2],'w'))" \
    "$T/v8.ranges.json" "$T/cut.json"
fails "no range \[min, max\] for activation 'layer.3.ctx'" "$T/x2.tflite" -- \
    "$QDIST" export "$T/v8.h5" --format tflite --activation-ranges "$T/cut.json" --out "$T/x2.tflite"
"$QDIST" quantize --model "$VIT" --out "$T/va.h5" --quiet --bits 4 --asym --group-size 32
fails "asymmetric 4-bit group-wise weights cannot be expressed in LiteRT" "$T/x3.tflite" -- \
    "$QDIST" export "$T/va.h5" --format tflite --activation-ranges "$T/v8.ranges.json" --out "$T/x3.tflite"
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh" 2>/dev/null) && {
  "$QDIST" quantize --model "$BERT" --out "$T/b8.h5" --quiet
  fails "writes ViT models for now" "$T/x4.tflite" -- \
      "$QDIST" export "$T/b8.h5" --format tflite --activation-ranges "$T/v8.ranges.json" --out "$T/x4.tflite"
}
echo "ok: export_tflite"
