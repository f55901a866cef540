#!/bin/sh
# qdist export --format onnx --onnx-ops qoperator: a model quantized with static activation
# scales (--activations static) as an ONNX graph of integer operators on those scales
# (QuantizeLinear, MatMulInteger with the file's zero points, outlier channels apart), float
# between them, run by ONNX Runtime against `qdist eval --integer-only` on the same inputs
# (export_outputs --integer-only):
#   ViT (MNIST test images): cosine of logits mean >= 0.9999 and >= 0.998 per image, top-1
#   agreement >= 99 %, cosine to FP32 within 2e-4 of qdist's;
#   all-MiniLM-L6-v2 (SST-2 dev sentences; outlier channels in 17 of its 18 Linear inputs):
#   embedding cosine mean >= 0.996, cosine to FP32 within 5e-4 of qdist's.
# The graph takes the same int8 codes, scales, zero points and integer products as qdist, and
# GELU follows qdist's integer curve (I-BERT's i-GELU on the Q10 input, in float operators); it
# differs where qdist's graph is integer and ONNX's is float: softmax and LayerNorm, the int32
# residual stream, the requantization (float products here, Q31 multipliers there). The ViT patch projection and classifier, float in the file, are quantized
# to int8 per row as qdist's integer graph does at load.
# Bad input: a file without /activations, weights in groups: exit 1, a message, no output file.
# Skipped (77) when the venv cannot be made; the BERT part when the checkpoint is absent.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
OUTS=$1
PY=$(bash "$QD_SOURCE_DIR/deploy/pyenv.sh") || { echo "export_qoperator: no Python venv (deploy/pyenv.sh failed): skipped"; exit 77; }
CHECK="$PY $QD_SOURCE_DIR/tests/export/check_onnx.py"
T=$(mktemp -d /tmp/qd-qop-XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$QD_SOURCE_DIR/tests/export/fails.sh"
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"

"$QDIST" quantize --model "$VIT" --out "$T/vs.h5" --quiet --activations static --calib "$MNIST" --nsamples 64
"$QDIST" export "$T/vs.h5" --format onnx --onnx-ops qoperator --out "$T/vs.onnx" | tee "$T/vs.log"
grep -q "37 MatMulInteger" "$T/vs.log"  # the classifier too, int8 per row as qdist makes it
"$OUTS" --model "$VIT" --quantized "$T/vs.h5" --data "$MNIST" --n "${QD_ONNX_IMAGES:-500}" --batch 100 --integer-only \
    --out "$T/vs.st"
$CHECK "$T/vs.onnx" "$T/vs.st" --against quant --min-mean-cos 0.9999 --min-cos 0.998 --min-agree 0.99 --max-fidelity-gap 2e-4 \
    --label "ViT qoperator vs qdist integer-only"

"$QDIST" quantize --model "$VIT" --out "$T/v8.h5" --quiet
fails "no static activation scales" "$T/x1.onnx" -- "$QDIST" export "$T/v8.h5" --format onnx --onnx-ops qoperator --out "$T/x1.onnx"
"$QDIST" quantize --model "$VIT" --out "$T/g.h5" --quiet --bits 4 --group-size 32 --activations static --calib "$MNIST" --nsamples 8
fails "qoperator takes symmetric per-channel weights" "$T/x2.onnx" -- "$QDIST" export "$T/g.h5" --format onnx --onnx-ops qoperator --out "$T/x2.onnx"

BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh") || { echo "export_qoperator: no BERT checkpoint: BERT part skipped"; exit 0; }
SST="$QD_MODELS_DIR/data/sst2/dev.tsv"
"$QDIST" quantize --model "$BERT" --out "$T/bs.h5" --quiet --activations static --calib "$SST" --nsamples 32
"$QDIST" export "$T/bs.h5" --format onnx --onnx-ops qoperator --out "$T/bs.onnx"
"$OUTS" --model "$BERT" --quantized "$T/bs.h5" --data "$SST" --n "${QD_ONNX_SENTENCES:-32}" --batch 8 --integer-only \
    --out "$T/bs.st"
$CHECK "$T/bs.onnx" "$T/bs.st" --against quant --min-mean-cos 0.996 --max-fidelity-gap 5e-4 \
    --label "MiniLM qoperator vs qdist integer-only"
