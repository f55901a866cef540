#!/bin/sh
# qdist export --format onnx on the real checkpoints, run by ONNX Runtime on real eval data
# (deploy/pyenv.sh's venv) against qdist's own outputs on the same inputs (export_outputs):
#   ViT (MNIST test images) and all-MiniLM-L6-v2 (SST-2 dev sentences):
#   - FP32 (a file that keeps every tensor in float) against qdist's FP32 forward: max |diff| 1e-4;
#   - INT8 per channel as DequantizeLinear (qdq), INT4 g32 asymmetric as blocked DequantizeLinear
#     and as MatMulNBits, INT3 g16 (blocked, 3-bit codes), GPTQ 4-bit act-order (inputs gathered
#     into group order): against `qdist eval --fake-quant`'s outputs (float activations), cosine
#     >= 0.9999 per sample, top-1 agreement >= 99.9 %;
#   - INT8 as MatMulInteger on per-token int8 activations (integer) against qdist's int8 kernels:
#     ViT cosine >= 0.9999 per sample and agreement >= 99.9 %; BERT (whose activations carry
#     outliers, so that a float rounding difference upstream flips int8 codes downstream) mean
#     cosine >= 0.999 and as close to FP32 as qdist's own int8 path.
#   K-means codebooks as a Gather of the levels: the weights ORT computes bit-identical to the
#   file's, the outputs against `qdist eval`'s lookup path (max |diff| 1e-4, cosine >= 0.9999).
#   Bad input: groups with --opset 17, a missing tensor, an unknown architecture, a file that is
#   not a model: exit 1, a message naming the problem, no output file.
# Skipped (77) when the venv cannot be made (no package registry reachable); the BERT part is
# skipped when the checkpoint is absent.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
OUTS=$1
PY=$(bash "$QD_SOURCE_DIR/deploy/pyenv.sh") || { echo "export_onnx: no Python venv (deploy/pyenv.sh failed): skipped"; exit 77; }
CHECK="$PY $QD_SOURCE_DIR/tests/export/check_onnx.py"
T=$(mktemp -d /tmp/qd-onnx-XXXXXX)
trap 'rm -rf "$T"' EXIT
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
NV=${QD_ONNX_IMAGES:-500}
echo '{"overrides": [{"pattern": "*", "skip": true}]}' > "$T/float.json"

# ---- ViT ----
"$QDIST" quantize --model "$VIT" --out "$T/vf.h5" --quiet --config "$T/float.json"  # every tensor float
"$QDIST" quantize --model "$VIT" --out "$T/v8.h5" --quiet
"$QDIST" quantize --model "$VIT" --out "$T/v4.h5" --quiet --bits 4 --asym --group-size 32
"$QDIST" quantize --model "$VIT" --out "$T/v3.h5" --quiet --bits 3 --asym --group-size 16
"$QDIST" quantize --model "$VIT" --out "$T/vg.h5" --quiet --method gptq --bits 4 --group-size 16 --act-order \
    --calib "$MNIST" --nsamples 32
"$QDIST" export "$T/vf.h5" --format onnx --out "$T/vf.onnx"
"$QDIST" export "$T/v8.h5" --format onnx --out "$T/v8.onnx"
"$QDIST" export "$T/v8.h5" --format onnx --onnx-ops integer --out "$T/v8i.onnx"
"$QDIST" export "$T/v4.h5" --format onnx --out "$T/v4.onnx"
"$QDIST" export "$T/v4.h5" --format onnx --onnx-ops nbits --out "$T/v4n.onnx" --opset 17
"$QDIST" export "$T/v3.h5" --format onnx --out "$T/v3.onnx" --opset 23
"$QDIST" export "$T/vg.h5" --format onnx --onnx-ops nbits --out "$T/vgn.onnx" | tee "$T/vg.log"
grep -q "act-order inputs gathered" "$T/vg.log"
Q="--data $MNIST --n $NV --batch 100"
"$OUTS" --model "$VIT" --quantized "$T/v8.h5" $Q --out "$T/v8r.st"
for f in 8 4 3 g; do "$OUTS" --model "$VIT" --quantized "$T/v$f.h5" $Q --fake-quant --no-fp32 --out "$T/v$f.st"; done
# ORT's optimizer turns DequantizeLinear + MatMul into MatMulNBits on int8 activations unless told
# otherwise (session.qdq_matmulnbits_accuracy_level); level 1 keeps the graph's float semantics
$CHECK "$T/vf.onnx" "$T/v8r.st" --against fp32 --max-abs 1e-4 --min-agree 1.0 --label "ViT FP32"
A="--min-cos 0.9999 --min-agree 0.999 --ort-accuracy-level 1"
$CHECK "$T/v8.onnx" "$T/v8.st" --against quant $A --label "ViT INT8 qdq"
$CHECK "$T/v4.onnx" "$T/v4.st" --against quant $A --label "ViT INT4 g32 blocked qdq"
$CHECK "$T/v4n.onnx" "$T/v4.st" --against quant $A --label "ViT INT4 g32 MatMulNBits (opset 17)"
$CHECK "$T/v3.onnx" "$T/v3.st" --against quant $A --label "ViT INT3 g16 blocked qdq (opset 23)"
$CHECK "$T/vgn.onnx" "$T/vg.st" --against quant $A --label "ViT GPTQ INT4 g16 act-order MatMulNBits"
$CHECK "$T/v8i.onnx" "$T/v8r.st" --against quant --min-cos 0.9999 --min-agree 0.999 --label "ViT INT8 integer"

# ---- bad input: exit 1, the reason, no output file ----
. "$QD_SOURCE_DIR/tests/export/fails.sh"
fails "opset 21" "$T/x1.onnx" -- "$QDIST" export "$T/v4.h5" --format onnx --opset 17 --out "$T/x1.onnx"
cp "$T/v8.h5" "$T/missing.h5"
/usr/bin/python3 -c "import h5py,sys; f=h5py.File(sys.argv[1],'r+'); del f['tensors/vit.encoder.layer.2.output.dense.weight']" "$T/missing.h5"
fails "vit.encoder.layer.2.output.dense.weight': missing" "$T/x2.onnx" -- "$QDIST" export "$T/missing.h5" --format onnx --out "$T/x2.onnx"
cp "$T/v8.h5" "$T/arch.h5"
/usr/bin/python3 - "$T/arch.h5" <<'PY'
import h5py, json, sys, numpy as np
f = h5py.File(sys.argv[1], "r+")
c = json.loads(f.attrs["model_config"]); c["model_type"] = "gpt2"
f.attrs["model_config"] = np.bytes_(json.dumps(c)); f.attrs["arch"] = np.bytes_("gpt2")
PY
fails "arch 'gpt2' is not an architecture qdist runs" "$T/x3.onnx" -- "$QDIST" export "$T/arch.h5" --format onnx --out "$T/x3.onnx"

# ---- K-means codebooks: Gather of the file's levels (UINT4 codes at opset 21, uint8 at 17; the
# same form under every --onnx-ops), the weights bit-identical, the outputs against `qdist eval`'s
# lookup path ----
"$QDIST" quantize --model "$VIT" --out "$T/k4.h5" --quiet --method kmeans --bits 4 --group-size 32
"$QDIST" quantize --model "$VIT" --out "$T/k3.h5" --quiet --method kmeans --bits 3
"$QDIST" export "$T/k4.h5" --format onnx --onnx-ops integer --out "$T/k4.onnx" | tee "$T/k4.log"
grep -q "36 codebook Gather" "$T/k4.log"
"$QDIST" export "$T/k3.h5" --format onnx --onnx-ops nbits --opset 17 --out "$T/k3.onnx"
for f in k4 k3; do
    "$QDIST" export "$T/$f.h5" --out "$T/${f}dq" > /dev/null
    "$PY" "$QD_SOURCE_DIR/tests/export/check_onnx_codebook.py" "$T/${f}dq/model.safetensors" "$T/$f.onnx" --expect 36
    "$OUTS" --model "$VIT" --quantized "$T/$f.h5" $Q --no-fp32 --out "$T/$f.st"
done
$CHECK "$T/k4.onnx" "$T/k4.st" --against quant --max-abs 1e-4 --min-cos 0.9999 --min-agree 0.999 --label "ViT K-means 4-bit g32 Gather"
$CHECK "$T/k3.onnx" "$T/k3.st" --against quant --max-abs 1e-4 --min-cos 0.9999 --min-agree 0.999 --label "ViT K-means 3-bit per channel Gather (opset 17)"
fails "K-means codebook weights .* no compressed-tensors layout" "$T/x5" -- "$QDIST" export "$T/k3.h5" --format compressed-tensors --out "$T/x5"
printf 'not a model' > "$T/junk.h5"
fails "not an HDF5 file" "$T/x4.onnx" -- "$QDIST" export "$T/junk.h5" --format onnx --out "$T/x4.onnx"

# ---- BERT (all-MiniLM-L6-v2) ----
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh") || { echo "export_onnx: no BERT checkpoint: BERT part skipped"; exit 0; }
SST="$QD_MODELS_DIR/data/sst2/dev.tsv"
NB=${QD_ONNX_SENTENCES:-32}
"$QDIST" quantize --model "$BERT" --out "$T/bf.h5" --quiet --config "$T/float.json"
"$QDIST" quantize --model "$BERT" --out "$T/b8.h5" --quiet
"$QDIST" quantize --model "$BERT" --out "$T/b4.h5" --quiet --bits 4 --asym --group-size 32
"$QDIST" export "$T/bf.h5" --format onnx --out "$T/bf.onnx"
"$QDIST" export "$T/b8.h5" --format onnx --out "$T/b8.onnx"
"$QDIST" export "$T/b8.h5" --format onnx --onnx-ops integer --out "$T/b8i.onnx"
"$QDIST" export "$T/b4.h5" --format onnx --onnx-ops nbits --out "$T/b4n.onnx"
Q="--data $SST --n $NB --batch 8"
"$OUTS" --model "$BERT" --quantized "$T/b8.h5" $Q --out "$T/b8r.st"
"$OUTS" --model "$BERT" --quantized "$T/b8.h5" $Q --fake-quant --no-fp32 --out "$T/b8.st"
"$OUTS" --model "$BERT" --quantized "$T/b4.h5" $Q --fake-quant --no-fp32 --out "$T/b4.st"
$CHECK "$T/bf.onnx" "$T/b8r.st" --against fp32 --max-abs 1e-4 --label "MiniLM FP32"
$CHECK "$T/b8.onnx" "$T/b8.st" --against quant --min-cos 0.9999 --ort-accuracy-level 1 --label "MiniLM INT8 qdq"
$CHECK "$T/b4n.onnx" "$T/b4.st" --against quant --min-cos 0.9999 --label "MiniLM INT4 g32 MatMulNBits"
$CHECK "$T/b8i.onnx" "$T/b8r.st" --against quant --min-mean-cos 0.999 --max-fidelity-gap 5e-4 \
    --label "MiniLM INT8 integer"
echo "ok: export_onnx"
