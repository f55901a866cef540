#!/bin/sh
# qdist export for the further architecture families, on the tiny reference models (no checkpoint).
# ONNX: RoBERTa and XLM-R (positions counted after the padding id), DistilBERT, ELECTRA (its
# embeddings projected to the hidden width), ALBERT (layers shared between blocks, read once), BERT
# token classification, MPNet (its relative position buckets added to every block's scores), BEiT
# (relative position tables per block or shared, layer scales, mean pooling or not), DINOv2 (layer
# scales, register tokens, positions resampled bicubically to the input's patch grid, [CLS, patch
# mean] classifier), CLIP vision (pre-LayerNorm, quick GELU, class embedding, post_layernorm on CLS,
# image_embeds, the patch-mean classifier), with
# their heads (RoBERTa's classifier.dense/tanh/out_proj, DistilBERT's pre_classifier/ReLU, token
# classifiers, ELECTRA's discriminator, ALBERT's pooler), FP32, INT4 g16 and INT8 pruned 2:4, run by
# ONNX Runtime on the reference inputs (text padded) against qdist forward (FP32 / --fake-quant):
# last_hidden_state, sentence_embedding and logits within 1e-4 relative, onnx.checker with full
# shape inference (check_onnx_archs.py); vision: last_hidden_state, pooler_output, image_embeds and
# logits. Refused, no file left: DINOv2 with registers at --opset 17, a BEiT as --onnx-ops qoperator.
# compressed-tensors for every architecture family qdist runs, on the tiny
# reference models of tests/reference/archs/ (RoBERTa, XLM-R, DistilBERT, MPNet, ELECTRA, ALBERT's
# shared layers, BERT token heads, BEiT, CLIP vision), loaded by
# transformers (the class config.json names; deploy/pyenv.sh's venv) with compressed-tensors:
# INT8 per channel, INT4 g16 symmetric (packed) and INT3 g16 asymmetric in turn, and two pruned
# files (2:4 and 50 %, magnitude, written dense: the pruned weights dequantize to exactly 0; their
# pattern in quantization_config's sparsity_config).
# check_ctensors_archs.py: the modules transformers quantizes are the ones written, every weight it
# decompresses equals qdist's dequantized one bit for bit, and its outputs match
# `qdist forward --fake-quant` within 1e-4 relative. DINOv2 is refused by name (transformers 5.23
# cannot load quantized DINOv2 checkpoints). Skipped (77) without the venv.
set -eu
: "${QDIST:?}" "${QD_SOURCE_DIR:?}"
PY=$(bash "$QD_SOURCE_DIR/deploy/pyenv.sh") || { echo "export_archs: no Python venv: skipped"; exit 77; }
A="$QD_SOURCE_DIR/tests/reference/archs"
T=$(mktemp -d /tmp/qd-archs-XXXXXX)
trap 'rm -rf "$T"' EXIT

# ---- ONNX ----
echo '{"overrides": [{"pattern": "*", "skip": true}]}' > "$T/float.json"
oargs=""
for m in roberta-seq xlm-roberta-token distilbert-seq electra-disc albert-seq bert-token mpnet beit-cls beit-shared \
  dinov2-cls dinov2-reg clip-vision clip-cls; do
  d="$A/$m"
  for s in f q p; do
    case $s in
      f) set -- --config "$T/float.json"; fq="" ;;
      q) set -- --bits 4 --group-size 16; fq=--fake-quant ;;
      *) set -- --bits 8 --sparsity 2:4; fq=--fake-quant ;; # pruned: the zeros as codes of the zero point
    esac
    "$QDIST" quantize --model "$d" --out "$T/o-$m-$s.h5" --quiet "$@"
    "$QDIST" export "$T/o-$m-$s.h5" --format onnx --out "$T/o-$m-$s.onnx" > /dev/null
    "$QDIST" forward --model "$d" --inputs "$d/reference.safetensors" --quantized "$T/o-$m-$s.h5" $fq --hidden \
      --save-outputs "$T/o-$m-$s.st" > /dev/null
    oargs="$oargs $m-$s $T/o-$m-$s.onnx $T/o-$m-$s.st $d/reference.safetensors"
  done
done
# shellcheck disable=SC2086
"$PY" "$QD_SOURCE_DIR/tests/export/check_onnx_archs.py" $oargs
. "$QD_SOURCE_DIR/tests/export/fails.sh"
# DINOv2 with registers resamples its positions with antialiasing: Resize has it from opset 18
fails "antialiasing, which ONNX's Resize has from opset 18" "$T/o-reg17.onnx" -- \
  "$QDIST" export "$T/o-dinov2-reg-f.h5" --format onnx --opset 17 --out "$T/o-reg17.onnx"
# static activation scales of a BEiT (calibrated on its two reference images): no integer-only graph
"$QDIST" quantize --model "$A/beit-cls" --out "$T/o-beit-static.h5" --quiet --activations static \
  --calib "$A/beit-cls/reference.safetensors" --nsamples 2
fails "model_type 'beit' (relative position bias, layer scales) has no integer-only graph" "$T/o-bq.onnx" -- \
  "$QDIST" export "$T/o-beit-static.h5" --format onnx --onnx-ops qoperator --out "$T/o-bq.onnx"

# ---- compressed-tensors ----
set -- "--bits 8" "--bits 4 --group-size 16" "--bits 3 --asym --group-size 16"
i=0 args=""
run() { # run NAME DIR QUANTIZE-FLAGS...
  n=$1 d=$2
  shift 2
  "$QDIST" quantize --model "$d" --out "$T/$n.h5" --quiet "$@"
  "$QDIST" export "$T/$n.h5" --format compressed-tensors --out "$T/$n.ct" > /dev/null
  "$QDIST" export "$T/$n.h5" --out "$T/$n.dq" > /dev/null
  "$QDIST" forward --model "$d" --inputs "$d/reference.safetensors" --quantized "$T/$n.h5" --fake-quant --hidden \
    --save-outputs "$T/$n.st" > /dev/null
  args="$args $n $T/$n.ct $T/$n.dq $T/$n.st $d/reference.safetensors"
}
for dir in "$A"/*/; do
  m=$(basename "$dir")
  case $m in dinov2*) continue ;; esac # refused, below
  case $((i % 3)) in 0) s=$1 ;; 1) s=$2 ;; *) s=$3 ;; esac
  # shellcheck disable=SC2086
  run "$m" "$dir" $s
  i=$((i + 1))
done
run "roberta-seq-2of4" "$A/roberta-seq" --bits 4 --group-size 16 --sparsity 2:4
run "beit-cls-50pc" "$A/beit-cls" --bits 8 --sparsity 0.5
# the pattern in sparsity_config (format dense: the zeros are in the weights)
/usr/bin/python3 - "$T/roberta-seq-2of4.ct/config.json" "$T/beit-cls-50pc.ct/config.json" <<'PY'
import json, sys
for path, structure in zip(sys.argv[1:], ("2:4", "unstructured")):
    sp = json.load(open(path))["quantization_config"]["sparsity_config"]
    assert sp["format"] == "dense" and sp["sparsity_structure"] == structure, (path, sp)
    assert abs(sp["global_sparsity"] - 0.5) < 1e-9 and len(sp["targets"]) == 12, (path, sp)
print("ok: sparsity_config 2:4 and unstructured, 12 targets, global_sparsity 0.5")
PY
"$QDIST" quantize --model "$A/dinov2-reg" --out "$T/dino.h5" --quiet
fails "model_type 'dinov2_with_registers': transformers (5.23) cannot load" "$T/dino.ct" -- \
  "$QDIST" export "$T/dino.h5" --format compressed-tensors --out "$T/dino.ct"
# shellcheck disable=SC2086
"$PY" "$QD_SOURCE_DIR/tests/export/check_ctensors_archs.py" $args 2> "$T/py.err" || { cat "$T/py.err"; exit 1; }
echo "ok: export_archs"
