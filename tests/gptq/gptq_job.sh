#!/bin/sh
# qdist quantize --method gptq / adaround on the real ViT with MNIST calibration images: the same
# file on 1, 2 and 4 ranks in both calibration modes (h5diff), also for AdaRound's mini-batch form
# (--batch), act-order stores g_idx, the file records the calibration and the settings, and
# configuration errors are clear usage errors.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-gptq-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
for mode in data pipeline; do
  for n in 1 2 4; do
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/$mode$n.h5" --quiet --method gptq \
      --bits 4 --asym --group-size 32 --act-order --calib "$D" --nsamples 40 --microbatch 6 --calib-mode $mode
  done
  for n in 2 4; do
    if h5diff --exclude-path /run "$T/${mode}1.h5" "$T/$mode$n.h5"; then echo "ok: $mode: 1 rank == $n ranks"
    else echo "DIFFERENT: $mode: 1 rank vs $n ranks"; fail=1; fi
  done
done
# the old names of the modes are aliases: the same files
for alias in sequential:data fp:pipeline; do
  "$QDIST" quantize --model "$M" --out "$T/alias.h5" --quiet --method gptq --bits 4 --asym --group-size 32 \
    --act-order --calib "$D" --nsamples 40 --microbatch 6 --calib-mode "${alias%%:*}" --overwrite
  if h5diff --exclude-path /run "$T/${alias#*:}1.h5" "$T/alias.h5"; then echo "ok: --calib-mode $alias"
  else echo "DIFFERENT: --calib-mode ${alias%%:*} vs ${alias#*:}"; fail=1; fi
done
# AdaRound through the same calibration: identical files on 1, 2 and 4 ranks (pipeline mode
# and data), method recorded
for mode in data pipeline; do
  for n in 1 2 4; do
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/ada$mode$n.h5" --quiet --method adaround \
      --bits 3 --asym --group-size 32 --calib "$D" --nsamples 24 --iters 60 --beta 10,2 --calib-mode $mode
  done
  for n in 2 4; do
    if h5diff --exclude-path /run "$T/ada${mode}1.h5" "$T/ada$mode$n.h5"; then echo "ok: adaround $mode: 1 rank == $n ranks"
    else echo "DIFFERENT: adaround $mode: 1 rank vs $n ranks"; fail=1; fi
  done
done
/usr/bin/python3 - "$T/adadata1.h5" <<'PY'
import h5py, json, sys
f = h5py.File(sys.argv[1], "r")
qc = json.loads(f.attrs["quant_config"])
assert qc["method"] == "adaround" and qc["adaround"]["iters"] == 60 and qc["adaround"]["beta_start"] == 10, qc
assert json.loads(f.attrs["calibration"])["method"] == "adaround"
m = f["tensors/vit.encoder.layer.0.attention.attention.query.weight"].attrs["method"]
assert (m.decode() if isinstance(m, bytes) else str(m)) == "adaround"
print("ok: adaround recorded")
PY
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --method adaround --calib "$D" --beta 20 2> "$T/err"; then fail=1; fi
grep -q "START,END" "$T/err" || { cat "$T/err"; fail=1; }
# AdaRound's mini-batch form: each step draws 64 of the calibration rows, which every rank holds in
# sample order (micro-batches of 6 spread unevenly over 4 ranks), so the files are identical on 1,
# 2 and 4 ranks in both modes
for mode in data pipeline; do
  for n in 1 2 4; do
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$M" --out "$T/adab$mode$n.h5" --quiet --method adaround \
      --bits 3 --asym --group-size 32 --calib "$D" --nsamples 32 --microbatch 6 --iters 50 --batch 64 --calib-mode $mode
  done
  for n in 2 4; do
    if h5diff --exclude-path /run "$T/adab${mode}1.h5" "$T/adab$mode$n.h5"; then echo "ok: adaround --batch $mode: 1 rank == $n ranks"
    else echo "DIFFERENT: adaround --batch $mode: 1 rank vs $n ranks"; fail=1; fi
  done
done
# the same job in the Hessian form, and with a batch larger than all rows (every step sees all of
# them: the same loss as through H, so nearly the same codes — the rows are the right ones)
for b in 0 1000000; do
  mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$M" --out "$T/adah$b.h5" --quiet --method adaround --bits 3 --asym \
    --group-size 32 --calib "$D" --nsamples 32 --microbatch 6 --iters 50 --batch $b
done
/usr/bin/python3 - "$T/adabdata1.h5" "$T/adah0.h5" "$T/adah1000000.h5" <<'PY' || fail=1
import h5py, json, sys, numpy as np
mb, hs, full = (h5py.File(p, "r") for p in sys.argv[1:])
assert json.loads(mb.attrs["quant_config"])["adaround"]["batch"] == 64
assert "batch" not in json.loads(hs.attrs["quant_config"])["adaround"]  # the Hessian form records none
assert json.loads(full.attrs["quant_config"])["adaround"]["batch"] == 1000000
names = [n for n in hs["tensors"] if "qweight" in hs["tensors"][n]]
def same(a, b):
    return np.mean([(a["tensors"][n]["qweight"][...] == b["tensors"][n]["qweight"][...]).mean() for n in names])
s_full, s_mb = same(hs, full), same(hs, mb)
print("codes equal to the Hessian form's: all rows per step %.4f, 64 rows per step %.4f" % (s_full, s_mb))
assert s_full >= 0.995 and s_mb < 1.0, (s_full, s_mb)
print("ok: adaround --batch recorded, all rows per step == Hessian form")
PY
"$QDIST" plan --ranks 2 --model "$M" --method adaround --calib "$D" --nsamples 32 --iters 50 --batch 64 > "$T/plan"
grep -q "50 steps of 64 calibration rows" "$T/plan" && grep -q "AdaRound calibration rows" "$T/plan" || { cat "$T/plan"; fail=1; }
# a negative batch: a usage error naming the option, from the command line or a configuration file
rc=0
"$QDIST" quantize --model "$M" --out "$T/x.h5" --method adaround --calib "$D" --batch -1 2> "$T/err" || rc=$?
[ $rc -eq 2 ] && grep -q -- "--batch -1: 'adaround_batch' must be an integer >= 0" "$T/err" || { echo "--batch -1: exit $rc"; cat "$T/err"; fail=1; }
echo '{"method": "adaround", "adaround_batch": -1}' > "$T/bad.json"
rc=0
"$QDIST" quantize --model "$M" --out "$T/x.h5" --calib "$D" --config "$T/bad.json" 2> "$T/err" || rc=$?
[ $rc -eq 2 ] && grep -q "'adaround_batch' must be an integer >= 0" "$T/err" || { echo "adaround_batch -1: exit $rc"; cat "$T/err"; fail=1; }
# a rank failing after 5 pieces, then --resume on 4 ranks: the calibrated phase runs again and the
# file equals the uninterrupted one
if QD_FAULT_RANK=1 QD_FAULT_AFTER=5 QD_CHECKPOINT_SECONDS=0 mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$M" \
     --out "$T/res.h5" --quiet --method gptq --bits 4 --asym --group-size 32 --act-order --calib "$D" --nsamples 40 \
     --microbatch 6 > /dev/null 2>&1; then echo "the injected fault did not fail the job"; fail=1; fi
[ -f "$T/res.h5.partial" ] || { echo "no partial file after the fault"; fail=1; }
mpiexec -n 4 --oversubscribe "$QDIST" quantize --model "$M" --out "$T/res.h5" --quiet --method gptq --bits 4 --asym \
  --group-size 32 --act-order --calib "$D" --nsamples 40 --microbatch 6 --resume
if h5diff --exclude-path /run "$T/data1.h5" "$T/res.h5"; then echo "ok: gptq resumed on 4 ranks == uninterrupted"
else echo "DIFFERENT: gptq resumed vs uninterrupted"; fail=1; fi
# the two modes calibrate on different inputs: their codes differ (not only the recorded mode)
if h5diff -q "$T/data1.h5" "$T/pipeline1.h5" /tensors /tensors >/dev/null 2>&1; then echo "modes gave the same file"; fail=1; fi
/usr/bin/python3 - "$T/data1.h5" <<'PY'
import h5py, json, sys, numpy as np
f = h5py.File(sys.argv[1], "r")
cal = json.loads(f.attrs["calibration"])
assert cal["method"] == "gptq" and cal["nsamples"] == 40 and cal["mode"] == "data", cal
qc = json.loads(f.attrs["quant_config"])
assert qc["method"] == "gptq" and qc["gptq"]["act_order"] is True, qc
g = f["tensors/vit.encoder.layer.3.intermediate.dense.weight"]
meth = g.attrs["method"]
meth = meth.decode() if isinstance(meth, bytes) else str(meth)
assert meth == "gptq" and int(g.attrs["act_order"]) == 1, (meth, g.attrs["act_order"])
gi = g["g_idx"][...]
assert gi.shape == (64,) and gi.min() == 0 and gi.max() == 1 and (np.bincount(gi) == 32).all(), gi
print("ok: calibration recorded, g_idx stored")
PY
# usage errors: gptq without --calib, per-tensor gptq, a bad mode
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --method gptq 2> "$T/err"; then fail=1; fi
grep -q -- "--calib PATH" "$T/err" || { cat "$T/err"; fail=1; }
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --method gptq --calib "$D" --granularity tensor 2> "$T/err"; then fail=1; fi
grep -q "per channel or per group" "$T/err" || { cat "$T/err"; fail=1; }
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --method gptq --calib "$D" --calib-mode later 2> "$T/err"; then fail=1; fi
grep -q "data or pipeline" "$T/err" || { cat "$T/err"; fail=1; }
# gptq on a tensor that is not an encoder Linear: a clear error, no output
if "$QDIST" quantize --model "$M" --out "$T/x.h5" --method gptq --calib "$D" --include-head --nsamples 8 2> "$T/err"; then fail=1; fi
grep -q "classifier.weight': gptq needs the inputs of an encoder Linear" "$T/err" || { cat "$T/err"; fail=1; }
[ ! -e "$T/x.h5" ] || { echo "an output was left behind"; fail=1; }
exit $fail
