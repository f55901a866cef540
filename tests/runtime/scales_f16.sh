#!/bin/sh
# Float16 scales (quantize --scales float16): vit-mnist-tiny INT8 RTN on 1 and 2 ranks gives
# identical files whose `scales` are float16 datasets; every code is round to nearest with the
# stored (float16) scale, read back with h5py against the checkpoint; the codes are those of
# the float32-scale file wherever the rounded scale does not move a value across a step; the
# file is smaller by 2 bytes a scale; export writes W = scale * (q - zero) from the float16
# scales; eval reads the file and keeps the FP32 accuracy within 1 point; gptq is refused.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}" "${QD_SOURCE_DIR:?}"
T=$(mktemp -d /tmp/qd-scalesf16-XXXXXX)
trap 'rm -rf "$T"' EXIT
V="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
MPIRUN=${MPIEXEC:-mpiexec}
"$QDIST" quantize --model "$V" --out "$T/f32.h5" --quiet
"$QDIST" quantize --model "$V" --out "$T/h1.h5" --scales float16 --quiet
"$MPIRUN" -n 2 --oversubscribe "$QDIST" quantize --model "$V" --out "$T/h2.h5" --scales float16 --quiet
h5diff --exclude-path /run "$T/h1.h5" "$T/h2.h5" || { echo "float16-scale files differ between 1 and 2 ranks"; exit 1; }
"$QDIST" export "$T/h1.h5" --out "$T/exp" > /dev/null
/usr/bin/python3 - "$T/h1.h5" "$T/f32.h5" "$V/model.safetensors" "$T/exp/model.safetensors" <<'PY'
import json, os, sys
import h5py, numpy as np
sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.join(os.environ["QD_SOURCE_DIR"], "tests", "runtime"))
from safetensors_f32 import read as st
h, f, ck, ex = h5py.File(sys.argv[1], "r"), h5py.File(sys.argv[2], "r"), st(sys.argv[3]), st(sys.argv[4])
assert json.loads(h.attrs["quant_config"])["scales"] == "float16"
n = nbytes = 0
for name, g in h["tensors"].items():
    if g.attrs["kind"] != b"quantized":
        continue
    assert g["scales"].dtype == np.float16, (name, g["scales"].dtype)
    assert f["tensors"][name]["scales"].dtype == np.float32, name
    s = g["scales"][:].astype(np.float32)
    s32 = f["tensors"][name]["scales"][:]
    assert (s == s32.astype(np.float16).astype(np.float32)).all(), name  # the float32 scale, rounded
    q = g["qweight"][:].astype(np.int64)
    w = ck[name]
    want = np.clip(np.rint(w / s), -128, 127).astype(np.int64) + 128  # symmetric INT8, zero 128
    assert np.abs(q - want).max() <= 1, name  # float32 division vs numpy's: at most one tie apart
    inner = (q > 0) & (q < 255)  # the largest |w| of a row may sit half a step past code 255
    assert (np.abs((q - 128) * s - w) <= s * 0.5001)[inner].all(), name
    assert np.array_equal(ex[name], ((q - 128) * s).astype(np.float32)), name
    n += 1
    nbytes += s.size * 2
print("ok: %d Linears with float16 scales, codes = RTN(W / scale16), export = scale16 * (q - 128)" % n)
d = os.path.getsize(sys.argv[2]) - os.path.getsize(sys.argv[1])
assert d >= nbytes, (d, nbytes)
print("ok: file %d bytes smaller (scales: %d bytes)" % (d, nbytes))
PY
"$QDIST" eval --model "$V" --quantized "$T/h1.h5" --data "$D" --n 500 --json > "$T/e.json"
/usr/bin/python3 - "$T/e.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
assert e["quantized"]["accuracy"] >= e["fp32"]["accuracy"] - 0.01, (e["quantized"]["accuracy"], e["fp32"]["accuracy"])
print("ok: float16 scales, eval: accuracy %.3f (FP32 %.3f), cosine %.5f" %
      (e["quantized"]["accuracy"], e["fp32"]["accuracy"], e["cosine"]["mean"]))
PY
for bad in "--scales float16 --method gptq --calib $D --nsamples 8" "--scales float8"; do
  # shellcheck disable=SC2086
  if "$QDIST" quantize --model "$V" --out "$T/bad.h5" $bad --quiet 2> "$T/err"; then
    echo "accepted: $bad"; exit 1
  fi
  grep -q -e "rtn only" -e "float32 or float16" "$T/err" || { cat "$T/err"; exit 1; }
done
echo "ok: --scales float16 refuses gptq and other types"
