#!/bin/sh
# The exported models in their runtimes, on all the eval data, against qdist in the same run:
#   output match (tests/export/check_onnx.py, check_ctensors.py) of every ONNX form and of the
#   compressed-tensors checkpoint, on all 10,000 MNIST test images (ViT) and all 872 SST-2 dev
#   sentences (all-MiniLM-L6-v2), the ViT's K-means Gather and qoperator (static activation
#   scales) graphs, the integer-only LiteRT ViT (from the file's static activation scales vs
#   `eval --integer-only`, and from ranges calibrated on 256 images), MiniLM's qoperator graph, and the latency of ONNX Runtime and LiteRT (one thread, batch 1, CPU time per sample:
#   bench/runtime_latency.py) beside `qdist eval`'s (wall time, one thread, batch 1) on the first N
#   samples.
#   sh bench/export_ort.sh [BUILD_DIR] [N]          (BUILD_DIR default build, N default 300)
# Needs the test build (tests/export/export_outputs) and deploy/pyenv.sh's venv. Figures go to
# stdout; the README's Deploy table is made from them.
set -eu
B=${1:-build}
N=${2:-300}
SRC=$(cd "$(dirname "$0")/.." && pwd)
Q=$B/qdist
OUTS=$B/tests/export/export_outputs
M=${QD_MODELS_DIR:-$SRC/../shared/models}
PY=$(bash "$SRC/deploy/pyenv.sh")
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
T=$(mktemp -d /tmp/qd-export-bench-XXXXXX)
trap 'rm -rf "$T"' EXIT
CHECK="$PY $SRC/tests/export/check_onnx.py"
LAT="$PY $SRC/bench/runtime_latency.py"
echo '{"overrides": [{"pattern": "*", "skip": true}]}' > "$T/float.json"
eval_lat() { # eval_lat MODEL FILE DATA [options]: qdist's quantized latency per sample (ms)
  m=$1 f=$2 d=$3; shift 3
  "$Q" eval --model "$m" --quantized "$f" --data "$d" --n "$N" --batch 1 --json "$@" |
    "$PY" -c 'import json,sys; e=json.load(sys.stdin); print("qdist eval %-24s mean %.3f ms p50 %.3f ms (FP32 %.3f ms)" % (sys.argv[1], e["quantized"]["latency_ms"]["mean"], e["quantized"]["latency_ms"]["p50"], e["fp32"]["latency_ms"]["mean"]))' "$(basename "$f") $*"
}
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); onnxruntime $("$PY" -c 'import onnxruntime; print(onnxruntime.__version__)')"

# ---- ViT on MNIST ----
VIT=$M/vit-mnist-tiny
MN=$M/data/mnist/t10k-images-idx3-ubyte.gz
"$Q" quantize --model "$VIT" --out "$T/vf.h5" --quiet --config "$T/float.json"
"$Q" quantize --model "$VIT" --out "$T/v8.h5" --quiet
"$Q" quantize --model "$VIT" --out "$T/v4.h5" --quiet --method gptq --bits 4 --group-size 32 --calib "$MN"
"$Q" export "$T/vf.h5" --format onnx --out "$T/vit-fp32.onnx" > /dev/null
"$Q" export "$T/v8.h5" --format onnx --out "$T/vit-int8-qdq.onnx" > /dev/null
"$Q" export "$T/v8.h5" --format onnx --onnx-ops integer --out "$T/vit-int8-integer.onnx" > /dev/null
"$Q" export "$T/v4.h5" --format onnx --onnx-ops nbits --out "$T/vit-int4-nbits.onnx" > /dev/null
"$OUTS" --model "$VIT" --quantized "$T/v8.h5" --data "$MN" --batch 100 --out "$T/v8r.st" > /dev/null
"$OUTS" --model "$VIT" --quantized "$T/v8.h5" --data "$MN" --batch 100 --fake-quant --out "$T/v8f.st" > /dev/null
"$OUTS" --model "$VIT" --quantized "$T/v4.h5" --data "$MN" --batch 100 --fake-quant --out "$T/v4f.st" > /dev/null
$CHECK "$T/vit-fp32.onnx" "$T/v8r.st" --against fp32 --label "ViT ONNX FP32"
$CHECK "$T/vit-int8-qdq.onnx" "$T/v8f.st" --against quant --ort-accuracy-level 1 --label "ViT ONNX INT8 qdq (ORT level 1) vs fake-quant"
$CHECK "$T/vit-int8-qdq.onnx" "$T/v8r.st" --against quant --label "ViT ONNX INT8 qdq (ORT default) vs qdist int8"
$CHECK "$T/vit-int8-integer.onnx" "$T/v8r.st" --against quant --label "ViT ONNX INT8 integer vs qdist int8"
$CHECK "$T/vit-int4-nbits.onnx" "$T/v4f.st" --against quant --label "ViT ONNX GPTQ INT4 g32 nbits vs fake-quant"
/usr/bin/python3 "$SRC/tests/export/vit_ranges.py" "$SRC/docs" "$T/v8.h5" "$T/v8f.st" "$T/ranges.json" --n 256
"$Q" export "$T/v8.h5" --format tflite --activation-ranges "$T/ranges.json" --out "$T/vit-int8.tflite" > /dev/null
"$PY" "$SRC/tests/export/check_tflite.py" "$T/vit-int8.tflite" "$T/v8f.st" --label "ViT LiteRT integer-only INT8 vs fake-quant" 2>/dev/null
"$PY" "$SRC/tests/export/check_tflite.py" "$T/vit-int8.tflite" "$T/v8r.st" --against fp32 --label "ViT LiteRT integer-only INT8 vs FP32" 2>/dev/null
# K-means 4-bit g32 as a Gather of its levels (vs eval's lookup path); static activation scales
# as --onnx-ops qoperator (vs eval --integer-only)
"$Q" quantize --model "$VIT" --out "$T/vk.h5" --quiet --method kmeans --bits 4 --group-size 32
"$Q" quantize --model "$VIT" --out "$T/vs.h5" --quiet --activations static --calib "$MN" --nsamples 256
"$Q" export "$T/vk.h5" --format onnx --out "$T/vit-kmeans4-gather.onnx" > /dev/null
"$Q" export "$T/vs.h5" --format onnx --onnx-ops qoperator --out "$T/vit-int8-qoperator.onnx" > /dev/null
"$OUTS" --model "$VIT" --quantized "$T/vk.h5" --data "$MN" --batch 100 --no-fp32 --out "$T/vkr.st" > /dev/null
"$OUTS" --model "$VIT" --quantized "$T/vs.h5" --data "$MN" --batch 100 --integer-only --out "$T/vsi.st" > /dev/null
$CHECK "$T/vit-kmeans4-gather.onnx" "$T/vkr.st" --against quant --label "ViT ONNX K-means 4-bit g32 Gather vs qdist lookup"
$CHECK "$T/vit-int8-qoperator.onnx" "$T/vsi.st" --against quant --label "ViT ONNX qoperator vs qdist integer-only"
# LiteRT from the file's static activation scales (no ranges file), vs eval --integer-only
"$Q" export "$T/vs.h5" --format tflite --out "$T/vit-int8-static.tflite" > /dev/null
"$PY" "$SRC/tests/export/check_tflite.py" "$T/vit-int8-static.tflite" "$T/vsi.st" --label "ViT LiteRT from the file's scales vs qdist integer-only" 2>/dev/null
$LAT "$T/v8r.st" --n "$N" "$T/vit-fp32.onnx" "$T/vit-int8-qdq.onnx" "$T/vit-int8-qdq.onnx:1" \
    "$T/vit-int8-integer.onnx" "$T/vit-int4-nbits.onnx" "$T/vit-int4-nbits.onnx:4" "$T/vit-int8.tflite" \
    "$T/vit-kmeans4-gather.onnx" "$T/vit-int8-qoperator.onnx" 2>/dev/null
eval_lat "$VIT" "$T/v8.h5" "$MN"
eval_lat "$VIT" "$T/v4.h5" "$MN"
eval_lat "$VIT" "$T/vk.h5" "$MN"
eval_lat "$VIT" "$T/vs.h5" "$MN" --integer-only
ls -l "$T"/vit-*.onnx "$T"/vit-int8.tflite "$T"/v8.h5 "$T"/v4.h5 "$T"/vk.h5 "$T"/vs.h5 | awk '{printf "%-24s %8.3f MB\n", $NF, $5 / 1e6}' | sed "s|$T/||"

# ---- all-MiniLM-L6-v2 on SST-2 ----
BERT=$(sh "$SRC/tests/reference/bert_dir.sh") || { echo "no BERT checkpoint: stop"; exit 0; }
SST=$M/data/sst2/dev.tsv
"$Q" quantize --model "$BERT" --out "$T/bf.h5" --quiet --config "$T/float.json"
"$Q" quantize --model "$BERT" --out "$T/b8.h5" --quiet
"$Q" quantize --model "$BERT" --out "$T/b4.h5" --quiet --method gptq --bits 4 --group-size 32 --calib "$SST"
"$Q" export "$T/bf.h5" --format onnx --out "$T/minilm-fp32.onnx" > /dev/null
"$Q" export "$T/b8.h5" --format onnx --out "$T/minilm-int8-qdq.onnx" > /dev/null
"$Q" export "$T/b8.h5" --format onnx --onnx-ops integer --out "$T/minilm-int8-integer.onnx" > /dev/null
"$Q" export "$T/b4.h5" --format onnx --onnx-ops nbits --out "$T/minilm-int4-nbits.onnx" > /dev/null
"$Q" export "$T/b8.h5" --format compressed-tensors --out "$T/minilm-int8-ct" > /dev/null
"$Q" export "$T/b4.h5" --format compressed-tensors --out "$T/minilm-int4-ct" > /dev/null
"$Q" export "$T/b8.h5" --out "$T/b8dq" > /dev/null
"$Q" export "$T/b4.h5" --out "$T/b4dq" > /dev/null
"$OUTS" --model "$BERT" --quantized "$T/b8.h5" --data "$SST" --batch 1 --out "$T/b8r.st" > /dev/null
"$OUTS" --model "$BERT" --quantized "$T/b8.h5" --data "$SST" --batch 1 --fake-quant --out "$T/b8f.st" > /dev/null
"$OUTS" --model "$BERT" --quantized "$T/b4.h5" --data "$SST" --batch 1 --fake-quant --out "$T/b4f.st" > /dev/null
$CHECK "$T/minilm-fp32.onnx" "$T/b8r.st" --against fp32 --label "MiniLM ONNX FP32"
$CHECK "$T/minilm-int8-qdq.onnx" "$T/b8f.st" --against quant --ort-accuracy-level 1 --label "MiniLM ONNX INT8 qdq (ORT level 1) vs fake-quant"
$CHECK "$T/minilm-int8-qdq.onnx" "$T/b8r.st" --against quant --label "MiniLM ONNX INT8 qdq (ORT default) vs qdist int8"
$CHECK "$T/minilm-int8-integer.onnx" "$T/b8r.st" --against quant --label "MiniLM ONNX INT8 integer vs qdist int8"
$CHECK "$T/minilm-int4-nbits.onnx" "$T/b4f.st" --against quant --label "MiniLM ONNX GPTQ INT4 g32 nbits vs fake-quant"
"$Q" quantize --model "$BERT" --out "$T/bs.h5" --quiet --activations static --calib "$SST" --nsamples 32
"$Q" export "$T/bs.h5" --format onnx --onnx-ops qoperator --out "$T/minilm-int8-qoperator.onnx" > /dev/null
"$OUTS" --model "$BERT" --quantized "$T/bs.h5" --data "$SST" --batch 1 --integer-only --out "$T/bsi.st" > /dev/null
$CHECK "$T/minilm-int8-qoperator.onnx" "$T/bsi.st" --against quant --label "MiniLM ONNX qoperator vs qdist integer-only"
"$PY" "$SRC/tests/export/check_ctensors.py" "$T/minilm-int8-ct" "$T/b8f.st" "$T/b8dq/model.safetensors" --label "MiniLM compressed-tensors INT8" 2>/dev/null
"$PY" "$SRC/tests/export/check_ctensors.py" "$T/minilm-int4-ct" "$T/b4f.st" "$T/b4dq/model.safetensors" --label "MiniLM compressed-tensors GPTQ INT4 g32" 2>/dev/null
$LAT "$T/b8r.st" --n "$N" "$T/minilm-fp32.onnx" "$T/minilm-int8-qdq.onnx" "$T/minilm-int8-qdq.onnx:1" \
    "$T/minilm-int8-integer.onnx" "$T/minilm-int4-nbits.onnx" "$T/minilm-int4-nbits.onnx:4"
eval_lat "$BERT" "$T/b8.h5" "$SST"
eval_lat "$BERT" "$T/b4.h5" "$SST"
ls -l "$T"/minilm-*.onnx "$T"/b8.h5 "$T"/b4.h5 "$T"/minilm-int*-ct/model.safetensors | awk '{printf "%-40s %8.3f MB\n", $NF, $5 / 1e6}' | sed "s|$T/||"
