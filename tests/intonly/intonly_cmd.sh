#!/bin/sh
# Static activation scales and integer-only inference end to end, on the real checkpoints:
#   - `qdist quantize --activations static` on 1, 2 and 4 ranks writes the same file (the
#     /activations record included), and every tensor the integer graph needs is in it;
#   - `qdist eval --integer-only --trace-ops` on the ViT: top-1 on 1,000 MNIST test images within
#     0.5 point of FP32, and the trace has only integer operands between quantize_input and
#     dequantize_output; with --float-ops the same check finds the float stages;
#   - all-MiniLM-L6-v2 (when fetched): embedding cosine >= 0.99 on 200 SST-2 sentences, trace too;
#   - errors: a file without static scales, --float-ops without --integer-only.
# Leaves vit8s.h5 in the working directory for test_intonly_vit (ctest fixture).
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-intonly-XXXXXX)
trap 'rm -rf "$T"' EXIT
MPI="${MPIEXEC:-mpiexec}"
for n in 1 2 4; do
  "$MPI" -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/v$n.h5" --quiet --activations static \
    --calib "$D" --nsamples 256 --microbatch 16
done
h5diff --exclude-path /run "$T/v1.h5" "$T/v2.h5"
h5diff --exclude-path /run "$T/v1.h5" "$T/v4.h5"
h5dump -a /activations/names "$T/v1.h5" > /dev/null
echo "ok: /activations identical on 1, 2 and 4 ranks"
cp "$T/v1.h5" vit8s.h5

"$QDIST" eval --model "$M" --quantized "$T/v1.h5" --data "$D" --n 1000 --batch 50 --integer-only \
  --trace-ops "$T/trace.tsv" --json > "$T/e.json"
"$QDIST" eval --model "$M" --quantized "$T/v1.h5" --data "$D" --n 50 --batch 50 --integer-only \
  --float-ops layernorm,softmax --trace-ops "$T/trace_f.tsv" --json > "$T/ef.json"
if "$QDIST" eval --model "$M" --quantized "$T/v1.h5" --data "$D" --n 5 --float-ops gelu 2> "$T/err"; then exit 1; fi
grep -q "integer-only" "$T/err" || { cat "$T/err"; exit 1; }
"$QDIST" quantize --model "$M" --out "$T/plain.h5" --quiet
if "$QDIST" eval --model "$M" --quantized "$T/plain.h5" --data "$D" --n 5 --integer-only 2> "$T/err"; then exit 1; fi
grep -q "no static activation scales" "$T/err" || { cat "$T/err"; exit 1; }
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --quiet --activations static 2> "$T/err"; then exit 1; fi
grep -q "calib" "$T/err" || { cat "$T/err"; exit 1; }

B=""
if B=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh" 2>/dev/null) && [ -n "$B" ]; then
  S="$QD_MODELS_DIR/data/sst2/dev.tsv"
  "$QDIST" quantize --model "$B" --out "$T/b.h5" --quiet --activations static --calib "$S" --nsamples 128
  "$QDIST" eval --model "$B" --quantized "$T/b.h5" --data "$S" --n 200 --integer-only --trace-ops "$T/trace_b.tsv" \
    --json > "$T/eb.json"
else
  echo "all-MiniLM-L6-v2 not fetched (deploy/fetch-models.sh): BERT part skipped"
fi

/usr/bin/python3 - "$T" <<'PY'
import json, os, sys
t = sys.argv[1]

def trace(name):
    rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(t, name))]
    return [(r[1], r[3], r[4]) for r in rows]

def floats_inside(ops):
    """operations with a float operand strictly between the input quantization (or the first
    operation) and the output dequantization"""
    names = [o[0] for o in ops]
    start = names.index("quantize_input") + 1 if "quantize_input" in names else 0
    end = names.index("dequantize_output")
    assert end == len(ops) - 1, "dequantize_output is not the last operation"
    return [o for o in ops[start:end] if "f32" in o[1] or "f32" in o[2]]

e = json.load(open(os.path.join(t, "e.json")))
assert e["integer_only"] is True and e["float_ops"] == []
acc32, accq = e["fp32"]["accuracy"], e["quantized"]["accuracy"]
assert accq >= acc32 - 0.005, (acc32, accq)
ops = trace("trace.tsv")
assert ops[0][0] == "quantize_input" and ops[0][1] == "f32" and ops[0][2] == "i8", ops[0]
bad = floats_inside(ops)
assert not bad, bad
kinds = {o[0] for o in ops}
for need in ("qkv.gemm", "attention.scores", "attention.softmax", "attention.context", "layernorm", "relu",
             "residual_add", "classifier.gemm"):
    assert need in kinds, need
print("ok: ViT integer-only top-1 %.2f %% vs FP32 %.2f %% on 1000 images; %d traced operations, no float inside"
      % (100 * accq, 100 * acc32, len(ops)))
fl = floats_inside(trace("trace_f.tsv"))
assert any(o[0] == "attention.softmax" for o in fl) and any(o[0] == "layernorm" for o in fl), fl
print("ok: with --float-ops layernorm,softmax the check finds %d float operations" % len(fl))
if os.path.exists(os.path.join(t, "eb.json")):
    eb = json.load(open(os.path.join(t, "eb.json")))
    cos = eb["cosine"]["mean"]
    assert cos >= 0.99, cos
    ops = trace("trace_b.tsv")
    assert ops[0][0] == "embedding_lookup" and ops[0][1] == "i32 ids", ops[0]
    bad = floats_inside(ops)
    assert not bad, bad
    assert "gelu" in {o[0] for o in ops}
    print("ok: MiniLM integer-only embedding cosine %.4f on 200 sentences, trace without float" % cos)
PY
