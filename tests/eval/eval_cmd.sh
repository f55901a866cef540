#!/bin/sh
# qdist eval on the real ViT and MNIST: 8-bit files run on int8 kernels, 4-bit files on int4
# kernels, 3-bit and --fake-quant on dequantized floats; the JSON has its documented shape and
# sane figures (the FP32 accuracy of the first 500 test images, agreement, cosine); a file of
# another model is a clear error.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-eval-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$QDIST" quantize --model "$M" --out "$T/q8.h5" --quiet
"$QDIST" quantize --model "$M" --out "$T/q4.h5" --quiet --bits 4 --asym --group-size 32
"$QDIST" quantize --model "$M" --out "$T/q3.h5" --quiet --bits 3 --asym --group-size 16
"$QDIST" eval --model "$M" --quantized "$T/q8.h5" --data "$D" --n 500 --json > "$T/e8.json"
"$QDIST" eval --model "$M" --quantized "$T/q4.h5" --data "$D" --n 500 --batch 50 --json > "$T/e4.json"
"$QDIST" eval --model "$M" --quantized "$T/q4.h5" --data "$D" --n 200 --fake-quant --json > "$T/e4f.json"
"$QDIST" eval --model "$M" --quantized "$T/q3.h5" --data "$D" --n 200 --json > "$T/e3.json"
/usr/bin/python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
def load(n): return json.load(open(f"{t}/{n}.json"))
e8, e4, e4f, e3 = load("e8"), load("e4"), load("e4f"), load("e3")
for e in (e8, e4, e4f, e3):
    assert e["task"] == "classification"
    for side in ("fp32", "quantized"):
        s = e[side]
        for k in ("accuracy", "latency_ms", "throughput_per_s", "peak_rss_bytes", "weight_bytes", "file_bytes"):
            assert k in s, (side, k)
        assert set(s["latency_ms"]) == {"mean", "p50", "p95"}
        assert 0 <= s["accuracy"] <= 1 and s["peak_rss_bytes"] > 0
    assert e["quantized"]["file_bytes"] < e["fp32"]["file_bytes"]
# the FP32 figure is the model's: 480 of the first 500 test images, whatever the file or batch
assert e8["fp32"]["accuracy"] == e4["fp32"]["accuracy"] == 480 / 500, e8["fp32"]["accuracy"]
assert e8["quantized"]["linears"]["int8"] == 36, e8["quantized"]["linears"]
assert e8["quantized"]["outlier_threshold"] == 6 and e8["quantized"]["outlier_columns_mean"] >= 0
assert e4["quantized"]["linears"]["int4 x int8"] == 36, e4["quantized"]["linears"]
assert e4f["quantized"]["linears"]["dequantized float"] == 36 and e4f["fake_quant"] is True
assert e3["quantized"]["linears"]["dequantized float"] == 36
assert e8["agreement"] >= 0.99 and e8["cosine"]["mean"] >= 0.999, (e8["agreement"], e8["cosine"])
assert abs(e8["quantized"]["accuracy"] - e8["fp32"]["accuracy"]) <= 0.01
assert e4["agreement"] >= 0.95 and e4["cosine"]["mean"] >= 0.99, (e4["agreement"], e4["cosine"])
print("ok: int8 agreement %.4f cosine %.6f; int4 agreement %.4f cosine %.6f; 3-bit cosine %.6f" %
      (e8["agreement"], e8["cosine"]["mean"], e4["agreement"], e4["cosine"]["mean"], e3["cosine"]["mean"]))
PY
# errors: a missing file, and a file whose tensors are not the model's
if "$QDIST" eval --model "$M" --quantized "$T/none.h5" --data "$D" --n 5 2> "$T/err"; then exit 1; fi
grep -q "none.h5" "$T/err" || { cat "$T/err"; exit 1; }
printf 'not hdf5' > "$T/bad.h5"
if "$QDIST" eval --model "$M" --quantized "$T/bad.h5" --data "$D" --n 5 2> "$T/err"; then exit 1; fi
grep -q "not an HDF5 file" "$T/err" || { cat "$T/err"; exit 1; }
if "$QDIST" eval --model "$M" --quantized "$T/q8.h5" 2> "$T/err"; then exit 1; fi
grep -q "required" "$T/err" || { cat "$T/err"; exit 1; }
echo "ok: errors"
