#!/bin/sh
# qdist sweep on a tiny grid of vit-mnist-tiny (rtn and kmeans x 4 bits x channel and g32, plus
# gptq without calibration data, which must fail without stopping the grid, and a per-tensor
# kmeans cell, which is skipped): the CSV's figures equal those of a separate quantize + eval of
# the same cell; a second run takes every evaluated cell from before (resume) and evaluates
# nothing again; the plots are drawn when gnuplot is there.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-sweep-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
G="--model $M --data $D --out $T/sw --methods rtn,kmeans,gptq --bits 4 --granularity tensor,g32 --n 100 --batch 50"
# shellcheck disable=SC2086
timeout 300 mpiexec -n 2 "$QDIST" sweep $G > "$T/log1" 2>&1
rc=$?
[ $rc = 1 ] || { echo "FAIL: a failed cell should make the sweep exit 1, got $rc"; cat "$T/log1"; fail=1; }
grep -q "\[6/6\]" "$T/log1" || { echo "FAIL: the grid stopped early"; cat "$T/log1"; fail=1; }
grep -q "gptq-w4-g32-a8: failed" "$T/log1" || { echo "FAIL: gptq without --calib not reported"; fail=1; }
grep -q "kmeans-w4-tensor-a8: skipped" "$T/log1" || { echo "FAIL: per-tensor kmeans not skipped"; fail=1; }
[ "$(grep -c ',ok,' "$T/sw/sweep.csv")" = 3 ] || { echo "FAIL: expected 3 evaluated cells"; cat "$T/sw/sweep.csv"; fail=1; }
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
# resume: nothing evaluated again
# shellcheck disable=SC2086
timeout 300 mpiexec -n 2 "$QDIST" sweep $G > "$T/log2" 2>&1
[ "$(grep -c 'done before' "$T/log2")" = 3 ] && ! grep -q "quantizing .*rtn\|quantizing .*kmeans" "$T/log2" \
  || { echo "FAIL: resume re-ran cells"; cat "$T/log2"; fail=1; }
if command -v gnuplot > /dev/null; then
  for p in bits size granularity layers; do
    [ -s "$T/sw/plots/$p.svg" ] && [ -s "$T/sw/plots/$p.png" ] || { echo "FAIL: plot $p missing"; fail=1; }
  done
fi
[ $fail = 0 ] && echo "ok: sweep"
exit $fail
