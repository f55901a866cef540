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
        for k in ("accuracy", "latency_ms", "throughput_per_s", "peak_rss_bytes", "tensor_bytes", "file_bytes",
                  "forward_seconds", "wall_seconds"):
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
# the runtime path line says which path ran
assert e8["runtime_path"].startswith("integer kernels (") and "36 int8 x int8" in e8["runtime_path"], e8["runtime_path"]
assert "outlier columns (a value above 6) in float: %.2f per product" % e8["quantized"]["outlier_columns_mean"] in e8["runtime_path"]
assert "36 int4 x int8" in e4["runtime_path"], e4["runtime_path"]
assert e4f["runtime_path"].startswith("fake-quant: the 36 quantized Linears"), e4f["runtime_path"]
assert e3["runtime_path"].startswith("dequantized float weights for the 36 quantized Linears"), e3["runtime_path"]
# total wall time covers both passes; tensor data (payload) and file bytes are different figures
for e in (e8, e4):
    assert e["wall_seconds_total"] >= e["fp32"]["wall_seconds"] + e["quantized"]["wall_seconds"] >= \
        e["fp32"]["forward_seconds"] + e["quantized"]["forward_seconds"] > 0
    assert e["fp32"]["tensor_bytes"] == 1998888 and e["quantized"]["tensor_bytes"] < e["quantized"]["file_bytes"]
    assert e["quantized"]["quantized_payload_bytes"] < e["quantized"]["tensor_bytes"]
# 8-bit codes of 491,520 weights + a float scale for each of the 6 x 1024 rows (symmetric: no zeros)
assert e8["quantized"]["quantized_payload_bytes"] == 491520 + 4 * 6144, e8["quantized"]
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
