#!/bin/sh
# vit-mnist-tiny, SparseGPT+GPTQ against magnitude+RTN in the 50 % INT4 g32 cell and its neighbours
# (2:4 INT4 g32, 50 % INT8), with the GPTQ damping chosen on held-out images.
#
# usage: bench/sparse_vit_cell.sh OUTDIR [DAMPS]   (DAMPS default "0.01 0.03 0.1 0.3")
#
# MNIST's training images are not part of ../shared, so images 0-4,999 of the test file act as the
# training side (calibration draws 128 of them; the dampings are compared on all 5,000) and the
# damping with the best top-1 there is remeasured on all 10,000 test images, each file against
# magnitude+RTN with an exact McNemar test on the per-image predictions (eval --save-outputs).
# Images 5,000-9,999 are never used to choose. Needs the pinned venv (deploy/pyenv.sh) for numpy.
set -eu
out=${1:?usage: sparse_vit_cell.sh OUTDIR [DAMPS]}
damps=${2:-"0.01 0.03 0.1 0.3"}
here=$(cd "$(dirname "$0")/.." && pwd)
Q=${QDIST:-$here/build/qdist}
V=${MODEL:-$here/../shared/models/vit-mnist-tiny}
T=$here/../shared/models/data/mnist/t10k-images-idx3-ubyte.gz
PY=$("$here/deploy/pyenv.sh")
mkdir -p "$out"
S=$out/sel-images-idx3-ubyte.gz
"$PY" - "$T" "$out/sel" <<'EOF'
import gzip, sys
t, dst = sys.argv[1], sys.argv[2]
im = gzip.open(t).read(); lb = gzip.open(t.replace("images-idx3", "labels-idx1")).read()
with gzip.GzipFile(dst + "-images-idx3-ubyte.gz", "wb", mtime=0) as f:
    f.write(im[:4] + (5000).to_bytes(4, "big") + im[8:16] + im[16:16 + 5000 * 784])
with gzip.GzipFile(dst + "-labels-idx1-ubyte.gz", "wb", mtime=0) as f:
    f.write(lb[:4] + (5000).to_bytes(4, "big") + lb[8:8 + 5000])
EOF
top1() { # FILE.h5 DATA -> top-1 % (also writes FILE.json)
  "$Q" eval --model "$V" --quantized "$1" --data "$2" --batch 100 --json >"${1%.h5}.json" 2>/dev/null
  "$PY" -c "import json,sys; print('%.2f' % (100*json.load(open(sys.argv[1]))['quantized']['accuracy']))" "${1%.h5}.json"
}
I4="--bits 4 --asym --group-size 32"
best=""
bt=-1
for d in $damps; do
  # shellcheck disable=SC2086
  "$Q" quantize --model "$V" --out "$out/sel-$d.h5" --overwrite --quiet $I4 --sparsity 0.5 --method gptq --calib "$S" --damp "$d"
  t=$(top1 "$out/sel-$d.h5" "$S")
  echo "selection images 0-4,999: damping $d top-1 $t %"
  if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)" "$t" "$bt"; then
    best=$d
    bt=$t
  fi
done
echo "chosen damping $best"
cell() { # NAME ARGS...: magnitude+RTN, SparseGPT+GPTQ at 0.01 and at the chosen damping, all 10,000
  n=$1
  shift
  "$Q" quantize --model "$V" --out "$out/$n-mag.h5" --overwrite --quiet "$@" --method rtn --prune magnitude
  "$Q" quantize --model "$V" --out "$out/$n-sg.h5" --overwrite --quiet "$@" --method gptq --calib "$S"
  "$Q" quantize --model "$V" --out "$out/$n-sgd.h5" --overwrite --quiet "$@" --method gptq --calib "$S" --damp "$best"
  for x in mag sg sgd; do
    "$Q" eval --model "$V" --quantized "$out/$n-$x.h5" --data "$T" --batch 100 --json \
      --save-outputs "$out/$n-$x.out.safetensors" >"$out/$n-$x.json" 2>/dev/null
  done
  for x in sg sgd; do
    "$PY" - "$out/$n-mag.out.safetensors" "$out/$n-$x.out.safetensors" "$n magnitude+RTN" "$n $x" <<'EOF'
import json, math, struct, sys
import numpy as np
def load(p):
    f = open(p, "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); out = {}
    for k, v in h.items():
        if k == "__metadata__": continue
        a, b = v["data_offsets"]; f.seek(8 + n + a)
        dt = {"F32": np.float32, "I64": np.int64, "I32": np.int32}[v["dtype"]]
        out[k] = np.frombuffer(f.read(b - a), dtype=dt).reshape(v["shape"])
    return out
A, B = load(sys.argv[1]), load(sys.argv[2])
y = A["labels"]; ca = A["logits"].argmax(1) == y; cb = B["logits"].argmax(1) == y
fa = A["logits"].argmax(1) == A["fp32.logits"].argmax(1); fb = B["logits"].argmax(1) == B["fp32.logits"].argmax(1)
b, c = int((ca & ~cb).sum()), int((~ca & cb).sum()); k = min(b, c)
p = min(1.0, 2 * sum(math.comb(b + c, i) for i in range(k + 1)) / 2 ** (b + c)) if b + c else 1.0
print("%s %.2f %% (agreement %.2f %%) vs %s %.2f %% (%.2f %%): %d / %d images right only under each, McNemar p = %.3f"
      % (sys.argv[3], 100 * ca.mean(), 100 * fa.mean(), sys.argv[4], 100 * cb.mean(), 100 * fb.mean(), b, c, p))
EOF
  done
}
# shellcheck disable=SC2086
cell 50pct-int4g32 $I4 --sparsity 0.5
# shellcheck disable=SC2086
cell 24-int4g32 $I4 --sparsity 2:4
cell 50pct-int8 --bits 8 --sparsity 0.5
