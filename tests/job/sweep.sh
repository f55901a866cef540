#!/bin/sh
# qdist sweep on a tiny grid of vit-mnist-tiny (rtn and kmeans x 4 bits x channel and g32, plus
# gptq without calibration data, which must fail without stopping the grid, and a per-tensor
# kmeans cell, which is skipped; dense and 2:4 by magnitude; an fp16 reference cell): the CSV's
# figures equal those of a separate quantize + eval of the same cell; the fp16 cell's file holds
# the source weights rounded to float16 and is sized at 2 bytes a value; per-layer output errors
# are there (fp16 at float16's rounding level, 2:4 pruning above dense); a second run takes every
# evaluated cell from before (resume), evaluates nothing again and adds the output errors a cell
# lacks; the plots are drawn when gnuplot is there.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-sweep-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
G="--model $M --data $D --out $T/sw --methods rtn,kmeans,gptq --bits 4 --granularity tensor,g32 --n 100 --batch 50
   --floats fp16 --sparsity 0,2:4 --error-samples 8"
# shellcheck disable=SC2086
timeout 300 mpiexec -n 2 "$QDIST" sweep $G > "$T/log1" 2>&1
rc=$?
[ $rc = 1 ] || { echo "FAIL: a failed cell should make the sweep exit 1, got $rc"; cat "$T/log1"; fail=1; }
grep -q "\[13/13\]" "$T/log1" || { echo "FAIL: the grid stopped early"; cat "$T/log1"; fail=1; }
grep -q "gptq-w4-g32-a8: failed" "$T/log1" || { echo "FAIL: gptq without --calib not reported"; fail=1; }
grep -q "kmeans-w4-tensor-a8: skipped" "$T/log1" || { echo "FAIL: per-tensor kmeans not skipped"; fail=1; }
[ "$(grep -c ',ok,' "$T/sw/sweep.csv")" = 6 ] || { echo "FAIL: expected 6 evaluated cells"; cat "$T/sw/sweep.csv"; fail=1; }
/usr/bin/python3 - "$T/sw/sweep.csv" "$T/sw/cells/fp16.h5" "$M/model.safetensors" <<'P' || fail=1
import csv, json, struct, sys
import h5py, numpy as np
rows = {r["cell"]: r for r in csv.DictReader(open(sys.argv[1]))}
raw = open(sys.argv[3], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
hdr = json.loads(raw[8 : 8 + n])
bad = []
with h5py.File(sys.argv[2], "r") as f:
    for name, g in f["tensors"].items():
        v = hdr.get(name)
        if v is None or v["dtype"] != "F32" or "data" not in g:
            continue
        src = np.frombuffer(raw[8 + n + v["data_offsets"][0] : 8 + n + v["data_offsets"][1]], "<f4")
        if not np.array_equal(g["data"][...].reshape(-1), src.astype(np.float16).astype(np.float32)):
            bad.append(name + ": not the float16 rounding of the source")
r, d, p, k = rows["fp16"], rows["rtn-w4-g32-a8"], rows["rtn-w4-g32-s2:4-magnitude-a8"], rows["kmeans-w4-g32-a8"]
if float(r["file_bytes"]) * 2 != float(r["fp32_file_bytes"]) or float(r["cosine_mean"]) < 0.99999:
    bad.append("fp16 cell: size %s vs fp32 %s, cosine %s" % (r["file_bytes"], r["fp32_file_bytes"], r["cosine_mean"]))
# float16 keeps 11 significant bits: a relative output error of at most ~2^-11 per layer
if not 0 < float(r["max_out_error"]) <= 2 ** -11:
    bad.append("fp16 output error %s" % r["max_out_error"])
if not 0 < float(d["mean_out_error"]) < float(p["mean_out_error"]) or not 0 < float(k["mean_out_error"]) < 1:
    bad.append("output errors: dense %s, 2:4 %s, kmeans %s" % (d["mean_out_error"], p["mean_out_error"], k["mean_out_error"]))
if p["sparsity"] != "2:4" or p["prune"] != "magnitude":
    bad.append("2:4 cell's scheme: %s %s" % (p["sparsity"], p["prune"]))
for b in bad:
    print("FAIL:", b)
print("fp16 cell, output errors, sparsity: %d problems" % len(bad))
sys.exit(1 if bad else 0)
P
# the same cell by hand
mpiexec -n 1 "$QDIST" quantize --model "$M" --out "$T/k.h5" --method kmeans --bits 4 --group-size 32 --quiet || fail=1
"$QDIST" eval --model "$M" --quantized "$T/k.h5" --data "$D" --n 100 --batch 50 --json > "$T/k.json" || fail=1
h5diff --exclude-path /run "$T/k.h5" "$T/sw/cells/kmeans-w4-g32.h5" || { echo "FAIL: sweep's file differs"; fail=1; }
/usr/bin/python3 - "$T/sw/sweep.csv" "$T/k.json" "$T/k.h5" <<'P' || fail=1
import csv, json, os, sys
rows = {r["cell"]: r for r in csv.DictReader(open(sys.argv[1]))}
e = json.load(open(sys.argv[2]))
r = rows["kmeans-w4-g32-a8"]
checks = [
    ("accuracy", float(r["accuracy"]), e["quantized"]["accuracy"]),
    ("fp32_accuracy", float(r["fp32_accuracy"]), e["fp32"]["accuracy"]),
    ("cosine_mean", float(r["cosine_mean"]), e["cosine"]["mean"]),
    ("file_bytes", float(r["file_bytes"]), os.path.getsize(sys.argv[3])),
    ("compression", float(r["compression"]), e["fp32"]["file_bytes"] / os.path.getsize(sys.argv[3])),
]
bad = [c for c in checks if abs(c[1] - c[2]) > 1e-5 * max(1, abs(c[2]))]
for c in bad:
    print("FAIL: csv %s = %r, single run %r" % c)
print("sweep csv vs single run: %d of %d figures agree" % (len(checks) - len(bad), len(checks)))
sys.exit(1 if bad else 0)
P
# resume: nothing evaluated again; a cell without output errors (an older sweep's) gets them
K="$T/sw/cells/kmeans-w4-g32-a8.json"
/usr/bin/python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); e = j.pop("out_errors"); json.dump(j, open(sys.argv[1], "w")); json.dump(e, open(sys.argv[1] + ".ref", "w"))' "$K" || fail=1
# shellcheck disable=SC2086
timeout 300 mpiexec -n 2 "$QDIST" sweep $G > "$T/log2" 2>&1
/usr/bin/python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))["out_errors"] != json.load(open(sys.argv[1] + ".ref")))' "$K" \
  || { echo "FAIL: resume did not add the same output errors"; fail=1; }
[ "$(grep -c 'done before' "$T/log2")" = 6 ] && ! grep -q "quantizing .*rtn\|quantizing .*kmeans" "$T/log2" \
  || { echo "FAIL: resume re-ran cells"; cat "$T/log2"; fail=1; }
if command -v gnuplot > /dev/null; then
  for p in bits size granularity layers; do
    [ -s "$T/sw/plots/$p.svg" ] && [ -s "$T/sw/plots/$p.png" ] || { echo "FAIL: plot $p missing"; fail=1; }
  done
fi
[ $fail = 0 ] && echo "ok: sweep"
exit $fail
