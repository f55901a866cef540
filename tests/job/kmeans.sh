#!/bin/sh
# K-means codebooks end to end on vit-mnist-tiny: the same file for 1, 2 and 4 ranks (plain,
# 3-bit groups of 16 with row sharding; weighted by the calibration Hessian's diagonal, 2-bit per
# channel); a fault on one rank then --resume gives the uninterrupted file; mixed precision by
# overrides (kmeans next to rtn); inspect lists the codebooks; the file read with h5py as
# docs/FORMAT.md says holds nearest-level codes and mean levels, and export writes exactly
# codebook[r, c // G, q]; eval runs it.
set -u
export QD_CHECKPOINT_SECONDS=0
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-kmeans-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
P="--method kmeans --bits 3 --group-size 16 --shard rows"
W="--method kmeans --bits 2 --weighted --kmeans-init linear --calib $D --nsamples 16 --microbatch 4"
for n in 1 2 4; do
  # shellcheck disable=SC2086
  timeout 120 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/p$n.h5" --quiet $P || fail=1
  # shellcheck disable=SC2086
  timeout 120 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/w$n.h5" --quiet $W || fail=1
done
for n in 2 4; do
  for k in p w; do
    h5diff --exclude-path /run "$T/${k}1.h5" "$T/$k$n.h5" && echo "ok: $k: 1 rank == $n ranks" \
      || { echo "FAIL: $k: 1 rank vs $n ranks differ"; fail=1; }
  done
done
# weighting changes the levels (the comparison is not vacuous)
# shellcheck disable=SC2086
timeout 120 mpiexec -n 2 "$QDIST" quantize --model "$M" --out "$T/u.h5" --quiet --method kmeans --bits 2 --kmeans-init linear || fail=1
h5diff -q --exclude-path /run "$T/w1.h5" "$T/u.h5" >/dev/null 2>&1 && { echo "FAIL: --weighted changed nothing"; fail=1; }
# fault on the last rank after 3 tensors, then resume on another rank count
# shellcheck disable=SC2086
QD_FAULT_RANK=1 QD_FAULT_AFTER=3 timeout 60 mpiexec -n 2 "$QDIST" quantize --model "$M" --out "$T/f.h5" --quiet $P >"$T/log" 2>&1
[ $? = 1 ] && [ -f "$T/f.h5.partial" ] || { echo "FAIL: fault run"; cat "$T/log"; fail=1; }
# shellcheck disable=SC2086
timeout 60 mpiexec -n 4 --oversubscribe "$QDIST" quantize --model "$M" --out "$T/f.h5" --resume $P >"$T/log" 2>&1 \
  || { echo "FAIL: resume"; cat "$T/log"; fail=1; }
grep -q "already complete" "$T/log" || { echo "FAIL: resume did not reuse completed tensors"; fail=1; }
h5diff --exclude-path /run "$T/p1.h5" "$T/f.h5" && echo "ok: fault + resume == uninterrupted" \
  || { echo "FAIL: fault + resume differs"; fail=1; }
# mixed precision: kmeans on the MLP, rtn 8-bit elsewhere
cat > "$T/mix.json" <<J
{"bits": 8, "overrides": [{"pattern": "*.intermediate.dense.weight", "method": "kmeans", "bits": 4, "group_size": 32}]}
J
timeout 60 mpiexec -n 2 "$QDIST" quantize --model "$M" --out "$T/mix.h5" --quiet --config "$T/mix.json" || fail=1
ins=$("$QDIST" inspect "$T/mix.h5")
printf '%s' "$ins" | grep "layer.1.intermediate.dense.weight" | grep -q "4 kmeans *group 32" || { echo "FAIL: override not kmeans"; fail=1; }
printf '%s' "$ins" | grep "layer.1.output.dense.weight" | grep -q "8 rtn" || { echo "FAIL: default not rtn"; fail=1; }
printf '%s' "$ins" | grep -q "codebook" || { echo "FAIL: inspect does not show codebooks"; fail=1; }
# the file as docs/FORMAT.md reads it, and the export
"$QDIST" export "$T/p2.h5" --out "$T/exp" >/dev/null || fail=1
/usr/bin/python3 "$(dirname "$0")/check_kmeans.py" "$M/model.safetensors" "$T/p2.h5" "$T/exp/model.safetensors" || fail=1
/usr/bin/python3 "$(dirname "$0")/check_kmeans.py" "$M/model.safetensors" "$T/w2.h5" || fail=1
# compressed-tensors has no codebook layout: a clear refusal (ONNX takes them: tests/export)
out=$("$QDIST" export "$T/p2.h5" --format compressed-tensors --out "$T/x.ct" 2>&1)
[ $? = 1 ] && printf '%s' "$out" | grep -q "codebook" || { echo "FAIL: compressed-tensors export of codebooks: $out"; fail=1; }
# --weighted without calibration data, and per tensor: refused with a message
out=$(mpiexec -n 1 "$QDIST" quantize --model "$M" --out "$T/x.h5" --method kmeans --weighted 2>&1)
[ $? = 2 ] && printf '%s' "$out" | grep -q "needs calibration data" || { echo "FAIL: --weighted without --calib: $out"; fail=1; }
out=$(mpiexec -n 1 "$QDIST" quantize --model "$M" --out "$T/x.h5" --method kmeans --granularity tensor 2>&1)
[ $? = 2 ] && printf '%s' "$out" | grep -q "per channel or per group" || { echo "FAIL: per tensor: $out"; fail=1; }
# a codebook with more levels than its group has weights: refused, naming the tensor
out=$(mpiexec -n 1 "$QDIST" quantize --model "$M" --out "$T/x.h5" --method kmeans --bits 8 --group-size 32 2>&1)
[ $? = 2 ] && printf '%s' "$out" | grep -q "tensor 'vit.encoder.layer.0.*256 levels per codebook, more than the 32 weights of its group" \
  || { echo "FAIL: 8-bit g32: $out"; fail=1; }
[ -e "$T/x.h5" ] || [ -e "$T/x.h5.partial" ] && { echo "FAIL: a refused job left a file"; fail=1; }
# a file from before float16 levels (codebook stored as float32): read as before, same outputs
cp "$T/p1.h5" "$T/old.h5"
/usr/bin/python3 -c '
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r+") as f:
    for g in f["tensors"].values():
        if "codebook" in g:
            cb = g["codebook"][...]; del g["codebook"]; g.create_dataset("codebook", data=cb.astype(np.float32))' "$T/old.h5" || fail=1
"$QDIST" inspect "$T/old.h5" | grep -q codebook || { echo "FAIL: inspect of a float32 codebook"; fail=1; }
# eval runs it: the lookup kernel gives the dequantized weights' outputs (cosine as --fake-quant),
# the int8 grid stays within a point of it; accuracy within 2 points of FP32 at 3 bits
E="--model $M --quantized $T/p1.h5 --data $D --n 300 --batch 50 --json"
# shellcheck disable=SC2086
lut=$("$QDIST" eval $E) && i8=$(QD_CODEBOOK_KERNEL=int8 "$QDIST" eval $E) && fk=$("$QDIST" eval $E --fake-quant) || fail=1
# shellcheck disable=SC2086
old=$("$QDIST" eval $E --quantized "$T/old.h5") || fail=1
/usr/bin/python3 -c '
import json, sys
l, i, f, o = (json.loads(a) for a in sys.argv[1:5])
fp, q = l["fp32"]["accuracy"], l["quantized"]["accuracy"]
print("eval: fp32 %.4f kmeans lookup %.4f int8 grid %.4f; cosine lookup %.6f fake-quant %.6f int8 %.6f" % (
    fp, q, i["quantized"]["accuracy"], l["cosine"]["mean"], f["cosine"]["mean"], i["cosine"]["mean"]))
ok = l["quantized"]["linears"]["codebook lookup"] == 36 and i["quantized"]["linears"]["codebook on an int8 grid x int8"] == 36
ok = ok and abs(l["cosine"]["mean"] - f["cosine"]["mean"]) < 1e-6 and q > fp - 0.02
ok = ok and abs(i["quantized"]["accuracy"] - q) <= 0.01
# float32 levels of the same values: the same outputs; 2 more bytes per level
nlev = o["quantized"]["tensor_bytes"] - l["quantized"]["tensor_bytes"]
print("float32 codebooks: cosine %.6f, %d more tensor bytes" % (o["cosine"]["mean"], nlev))
import h5py
with h5py.File(sys.argv[5], "r") as h:
    levels = sum(g["codebook"].size for g in h["tensors"].values() if "codebook" in g)
ok = ok and o["cosine"] == l["cosine"] and o["quantized"]["accuracy"] == q and nlev == 2 * levels > 0
sys.exit(0 if ok else 1)' "$lut" "$i8" "$fk" "$old" "$T/p1.h5" || { echo "FAIL: eval"; fail=1; }
exit $fail
