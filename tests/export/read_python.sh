#!/bin/sh
# docs/qdist_h5.py (the Python reader users script against) on real files: RTN 8-bit, 4-bit g32
# asymmetric, GPTQ 3-bit g16 act-order, SparseGPT 2:4 + 8-bit of vit-mnist-tiny, each compared
# with `qdist export` (tests/export/read_python.py). System Python with h5py and numpy.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
VIT="$QD_MODELS_DIR/vit-mnist-tiny"
MNIST="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-py-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$QDIST" quantize --model "$VIT" --out "$T/a.h5" --quiet
"$QDIST" quantize --model "$VIT" --out "$T/b.h5" --quiet --bits 4 --asym --group-size 32
"$QDIST" quantize --model "$VIT" --out "$T/c.h5" --quiet --method gptq --bits 3 --group-size 16 --act-order \
    --calib "$MNIST" --nsamples 16
"$QDIST" quantize --model "$VIT" --out "$T/d.h5" --quiet --method gptq --sparsity 2:4 --calib "$MNIST" --nsamples 16
for f in a b c d; do "$QDIST" export "$T/$f.h5" --out "$T/$f" > /dev/null; done
printf 'not a model' > "$T/junk.h5"
/usr/bin/python3 "$QD_SOURCE_DIR/tests/export/read_python.py" "$QD_SOURCE_DIR/docs" \
    "$T/a.h5" "$T/a/model.safetensors" "$T/b.h5" "$T/b/model.safetensors" \
    "$T/c.h5" "$T/c/model.safetensors" "$T/d.h5" "$T/d/model.safetensors" "$T/junk.h5"
