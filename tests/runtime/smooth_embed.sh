#!/bin/sh
# SmoothQuant (quantize --smooth) and quantized embeddings (--quantize-embeddings):
#   vit-mnist-tiny --smooth 0.5 on 1 and 2 ranks: identical files; every Linear records its
#   factors s (shared by query, key and value), its codes are RTN of W diag(s) (read back with
#   h5py against the checkpoint), export divides by s, and eval with every column int8 keeps the
#   FP32 accuracy within 1 point; the errors of --smooth without --calib, with gptq, out of (0, 1];
#   all-MiniLM-L6-v2 (when fetched) --quantize-embeddings 8 and 4: the tables per row, a smaller
#   file, the embedding cosine, and the engine's resident weights at most 0.4x (INT8) and 0.25x
#   (INT4) of the FP32 engine's.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
T=$(mktemp -d /tmp/qd-smooth-XXXXXX)
trap 'rm -rf "$T"' EXIT
V="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
MPIRUN=${MPIEXEC:-mpiexec}
"$QDIST" quantize --model "$V" --out "$T/s1.h5" --smooth 0.5 --calib "$D" --nsamples 64 --quiet
"$MPIRUN" -n 2 --oversubscribe "$QDIST" quantize --model "$V" --out "$T/s2.h5" --smooth 0.5 --calib "$D" --nsamples 64 --quiet
h5diff --exclude-path /run "$T/s1.h5" "$T/s2.h5" || { echo "smoothed files differ between 1 and 2 ranks"; exit 1; }
"$QDIST" export "$T/s1.h5" --out "$T/exp" > /dev/null
/usr/bin/python3 - "$T/s1.h5" "$V/model.safetensors" "$T/exp/model.safetensors" <<'PY'
import json, os, sys
import h5py, numpy as np
sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.join(os.environ["QD_SOURCE_DIR"], "tests", "runtime"))
from safetensors_f32 import read as st
f, ck, ex = h5py.File(sys.argv[1], "r"), st(sys.argv[2]), st(sys.argv[3])
assert json.loads(f.attrs["quant_config"])["smooth"] == 0.5
n = 0
for name, g in f["tensors"].items():
    if g.attrs["kind"] != b"quantized":
        continue
    s = g["smooth"][:]
    assert s.shape == (ck[name].shape[1],) and (s > 0).all(), name
    q = g["qweight"][:].astype(np.int64) - 128
    w = q * g["scales"][:]
    ws = ck[name] * s  # what was quantized: the rows of W diag(s), to within one step
    assert (np.abs(w - ws) <= g["scales"][:] * 1.0001).all(), name
    assert np.abs(ex[name] * s - w).max() <= 1e-5 * np.abs(w).max(), name  # export: W' / s
    n += 1
for k in range(6):  # query, key and value read one input: one vector
    p = "vit.encoder.layer.%d.attention.attention." % k
    assert (f["tensors"][p + "query.weight"]["smooth"][:] == f["tensors"][p + "value.weight"]["smooth"][:]).all()
print("ok: %d smoothed Linears, codes = RTN(W diag(s)), export = W" % n)
PY
"$QDIST" eval --model "$V" --quantized "$T/s1.h5" --data "$D" --n 500 --outlier-threshold 0 --json > "$T/e.json"
/usr/bin/python3 - "$T/e.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
assert e["quantized"]["outlier_columns_mean"] == 0
assert e["quantized"]["accuracy"] >= e["fp32"]["accuracy"] - 0.01, (e["quantized"]["accuracy"], e["fp32"]["accuracy"])
print("ok: smoothed INT8, every column int8: accuracy %.3f (FP32 %.3f), cosine %.5f" %
      (e["quantized"]["accuracy"], e["fp32"]["accuracy"], e["cosine"]["mean"]))
PY
for bad in "--smooth 0.5" "--smooth 0.5 --method gptq --calib $D" "--smooth 1.5 --calib $D" "--quantize-embeddings 3"; do
  # shellcheck disable=SC2086
  if "$QDIST" quantize --model "$V" --out "$T/bad.h5" $bad --quiet 2> "$T/err"; then
    echo "accepted: $bad"; exit 1
  fi
  grep -q -e "calib" -e "rtn" -e "(0, 1]" -e "8 or 4" "$T/err" || { cat "$T/err"; exit 1; }
done
echo "ok: --smooth and --quantize-embeddings refuse what they cannot do"

B=$(sh "$QD_SOURCE_DIR/tests/reference/bert_dir.sh" 2> /dev/null || true)
if [ -z "$B" ] || [ ! -d "$B" ]; then
  echo "all-MiniLM-L6-v2 not fetched (deploy/fetch-models.sh): embedding cases skipped"
  exit 0
fi
S="$QD_MODELS_DIR/data/sst2/dev.tsv"
"$QDIST" quantize --model "$B" --out "$T/b8.h5" --quiet
"$QDIST" quantize --model "$B" --out "$T/b8e.h5" --quantize-embeddings 8 --quiet
"$QDIST" quantize --model "$B" --out "$T/b4e.h5" --quantize-embeddings 4 --bits 4 --asym --group-size 32 --quiet
for f in b8e b4e; do
  "$QDIST" eval --model "$B" --quantized "$T/$f.h5" --data "$S" --n 64 --json > "$T/$f.json"
done
/usr/bin/python3 - "$T" <<'PY'
import json, os, sys
import h5py
t = sys.argv[1]
for f, bits in (("b8e", 8), ("b4e", 4)):
    g = h5py.File("%s/%s.h5" % (t, f), "r")["tensors"]["embeddings.word_embeddings.weight"]
    assert g.attrs["kind"] == b"quantized" and g.attrs["bits"] == bits and g.attrs["granularity"] == b"channel"
    assert g["scales"].shape == (30522, 1)
assert os.path.getsize(t + "/b8e.h5") < 0.5 * os.path.getsize(t + "/b8.h5")
e8, e4 = json.load(open(t + "/b8e.json")), json.load(open(t + "/b4e.json"))
assert e8["cosine"]["mean"] >= 0.998, e8["cosine"]
r8 = e8["quantized"]["resident_weight_bytes"] / e8["fp32"]["resident_weight_bytes"]
r4 = e4["quantized"]["resident_weight_bytes"] / e4["fp32"]["resident_weight_bytes"]
assert r8 <= 0.4 and r4 <= 0.25, (r8, r4)
print("ok: embeddings per row: INT8 cosine %.5f, resident %.3fx FP32; INT4 resident %.3fx" %
      (e8["cosine"]["mean"], r8, r4))
PY
