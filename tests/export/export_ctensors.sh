#!/bin/sh
# qdist export --format compressed-tensors, loaded by transformers (AutoModel.from_pretrained, CPU,
# deploy/pyenv.sh's venv: transformers 5.23, compressed-tensors 0.20.1) on all-MiniLM-L6-v2:
# INT8 per channel (int-quantized), INT4 g32 symmetric (pack-quantized), INT4 g32 asymmetric, and a
# mixed file (8-bit asymmetric attention, 4-bit symmetric per-channel MLP input, 3-bit asymmetric
# g64 MLP output, some Linears float: mixed-precision). check_ctensors.py: every weight
# compressed-tensors decompresses equals qdist's dequantized weight bit for bit, and the model's
# sentence embeddings on SST-2 sentences match qdist's (`eval --fake-quant`) with cosine >= 0.9999.
# Refusals (exit 1, the tensor and the reason, no output directory): act-order groups, groups that
# do not divide the input width, a quantized embedding. (vit-mnist-tiny's q/k/v are wider than its
# hidden size, which transformers' ViT cannot hold, so its files are only written and refused here.)
# Skipped (77) without the venv or the BERT checkpoint.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
OUTS=$1
PY=$(bash "$QD_SOURCE_DIR/deploy/pyenv.sh") || { echo "export_ctensors: no Python venv (deploy/pyenv.sh failed): skipped"; exit 77; }
BERT=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh") || exit 77
SST="$QD_MODELS_DIR/data/sst2/dev.tsv"
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-ct-XXXXXX)
trap 'rm -rf "$T"' EXIT
NB=${QD_CT_SENTENCES:-32}
cat > "$T/mixed.json" <<'J'
{"bits": 3, "sym": false, "group_size": 64,
 "overrides": [{"pattern": "*.attention.*", "bits": 8, "sym": false, "granularity": "channel"},
               {"pattern": "*.layer.5.*", "skip": true},
               {"pattern": "*.intermediate.*", "bits": 4, "sym": true, "granularity": "channel"}]}
J
"$QDIST" quantize --model "$BERT" --out "$T/b8.h5" --quiet
"$QDIST" quantize --model "$BERT" --out "$T/b4s.h5" --quiet --bits 4 --group-size 32
"$QDIST" quantize --model "$BERT" --out "$T/b4a.h5" --quiet --bits 4 --asym --group-size 32
"$QDIST" quantize --model "$BERT" --out "$T/bm.h5" --quiet --config "$T/mixed.json"
for f in b8 b4s b4a bm; do
  "$QDIST" export "$T/$f.h5" --format compressed-tensors --out "$T/$f.ct"
  "$QDIST" export "$T/$f.h5" --out "$T/$f.dq" > /dev/null
  "$OUTS" --model "$BERT" --quantized "$T/$f.h5" --data "$SST" --n "$NB" --batch 8 --fake-quant --no-fp32 --out "$T/$f.st"
done
grep -q '"format":	"pack-quantized"' "$T/b4s.ct/config.json"
grep -q '"format":	"mixed-precision"' "$T/bm.ct/config.json"
for f in b8 b4s b4a bm; do
  "$PY" "$QD_SOURCE_DIR/tests/export/check_ctensors.py" "$T/$f.ct" "$T/$f.st" "$T/$f.dq/model.safetensors" \
      --min-cos 0.9999 --label "MiniLM $f" 2> "$T/py.err" || { cat "$T/py.err"; exit 1; }
done

. "$QD_SOURCE_DIR/tests/export/fails.sh"
"$QDIST" quantize --model "$VIT" --out "$T/vg.h5" --quiet --method gptq --bits 4 --group-size 16 --act-order \
    --calib "$MNIST" --nsamples 16
fails "act-order column groups (g_idx) cannot be expressed" "$T/x1" -- "$QDIST" export "$T/vg.h5" --format compressed-tensors --out "$T/x1"
"$QDIST" quantize --model "$VIT" --out "$T/v48.h5" --quiet --bits 4 --group-size 48
fails "groups of 48 do not divide its 64 inputs" "$T/x2" -- "$QDIST" export "$T/v48.h5" --format compressed-tensors --out "$T/x2"
echo '{"bits": 8, "include_embeddings": true}' > "$T/emb.json"
"$QDIST" quantize --model "$BERT" --out "$T/be.h5" --quiet --config "$T/emb.json"
fails "embeddings.position_embeddings.weight' is quantized but is not a Linear weight" "$T/x3" -- \
    "$QDIST" export "$T/be.h5" --format compressed-tensors --out "$T/x3"
"$QDIST" quantize --model "$VIT" --out "$T/v8.h5" --quiet
"$QDIST" export "$T/v8.h5" --format compressed-tensors --out "$T/v8.ct" > /dev/null
test -s "$T/v8.ct/model.safetensors" && test -s "$T/v8.ct/config.json"
echo "ok: export_ctensors"
