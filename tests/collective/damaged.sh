#!/bin/sh
# Model files that cannot be trusted are refused alike by eval, export and a resumed job (the
# service runs jobs through the same code, checked once below): one damaged copy per class (another
# format version, an unfinished status, unparsable JSON attributes, an unknown or inconsistent
# architecture, codes stored as another type, a missing tensor or dataset, NaN / negative / zero
# scales, zero-points and g_idx out of range, a wrong shape, non-finite float data, a dataset the
# format does not have, bits out of range, N:M positions out of order, a pruned row's stored count). Each is an error naming the file and the field, exit 1;
# inspect still describes the file, marks the damaged tensor and exits 1.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
M="$QD_MODELS_DIR/vit-mnist-tiny"
D="$QD_MODELS_DIR/data/mnist/t10k-images-idx3-ubyte.gz"
T=$(mktemp -d /tmp/qd-damaged-XXXXXX)
cleanup() { [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
fail=0
"$QDIST" quantize --model "$M" --out "$T/good.h5" --quiet --bits 4 --asym --group-size 32 || exit 1
"$QDIST" quantize --model "$M" --out "$T/gptq.h5" --quiet --method gptq --bits 4 --group-size 32 --act-order \
  --calib "$D" --nsamples 8 || exit 1
"$QDIST" quantize --model "$M" --out "$T/p24.h5" --quiet --sparsity 2:4 || exit 1
mkdir "$T/bad"
classes=$(/usr/bin/python3 "$(dirname "$0")/damage.py" "$T/good.h5" "$T/gptq.h5" "$T/bad" "$T/p24.h5") || exit 1
# what each class's message must say (the field)
expect() {
  case $1 in
    version) echo "format_version 2" ;;
    status) echo "status is 'running'" ;;
    nostatus) echo "status is ''" ;;
    model_config) echo "'model_config' is not a JSON object" ;;
    quant_config) echo "'quant_config' is not a JSON object" ;;
    arch_unknown) echo "arch 'gpt9' is not an architecture qdist runs" ;;
    arch_mismatch) echo "arch 'bert' does not match" ;;
    codes_type) echo "dataset 'qweight' holds integer16 values" ;;
    missing_tensor) echo "layer.3.output.dense.weight': missing" ;;
    missing_dataset) echo "dataset 'scales' is missing" ;;
    scale_nan) echo "dataset 'scales': element 5 (row 2) is nan" ;;
    scale_negative) echo "dataset 'scales': element 7 (row 3) is -0.5" ;;
    scale_zero) echo "dataset 'scales': element 0 (row 0) is 0" ;;
    zeros_range) echo "dataset 'zeros': element 3 (row 1) is 16, outside [0, 15]" ;;
    scales_shape) echo "dataset 'scales' has shape [256, 1]; the record needs [256, 2]" ;;
    data_nan) echo "dataset 'data': element 2 is inf" ;;
    unknown_dataset) echo "'lookup_table' is not a dataset of the format" ;;
    bits) echo "bits 9 is outside 2..8" ;;
    g_idx_range) echo "dataset 'g_idx': column 4 is in group 99" ;;
    nm_order) echo "dataset 'nm_index': row 0, group 0: position 1 is not ascending (2:4)" ;;
    nonzeros) echo "attribute 'nonzeros_per_row' is missing or not a row's kept count (31)" ;;
  esac
}
n=0
for c in $classes; do
  n=$((n + 1))
  f="$T/bad/$c.h5"
  want=$(expect "$c")
  [ -n "$want" ] || { echo "FAIL: no expectation for class $c"; fail=1; continue; }
  for cmd in eval export inspect; do
    case $cmd in
      eval) "$QDIST" eval --model "$M" --quantized "$f" --data "$D" --n 2 > "$T/out" 2> "$T/err" ;;
      export) "$QDIST" export "$f" --out "$T/exp" > "$T/out" 2> "$T/err" ;;
      inspect) "$QDIST" inspect "$f" > "$T/out" 2> "$T/err" ;;
    esac
    rc=$?
    if [ $rc != 1 ] || ! grep -qF "$want" "$T/err" || ! grep -qF "$f" "$T/err"; then
      echo "FAIL: $c: qdist $cmd: exit $rc, expected 1 and \"$want\" with the file name:"; cat "$T/err"; fail=1
    fi
  done
  # inspect still describes the file and marks what is damaged
  grep -q "problem" "$T/out" || { echo "FAIL: $c: inspect lists no problem"; cat "$T/out"; fail=1; }
  [ ! -e "$T/exp/model.safetensors" ] || { echo "FAIL: $c: export wrote a file"; fail=1; rm -rf "$T/exp"; }
done
[ "$n" -ge 21 ] || { echo "FAIL: only $n damage classes"; fail=1; }
"$QDIST" inspect "$T/bad/scale_nan.h5" 2>/dev/null | grep "layer.1.attention.attention.query.weight" | grep -q " !$" \
  || { echo "FAIL: inspect does not mark the damaged tensor"; fail=1; }
# the undamaged files pass everywhere
"$QDIST" export "$T/good.h5" --out "$T/exp" > /dev/null && "$QDIST" inspect "$T/gptq.h5" > /dev/null \
  || { echo "FAIL: undamaged files refused"; fail=1; }
echo "ok: $n damage classes refused by eval, export and inspect"

# a resumed job (batch or service): an interrupted run's partial file whose completed tensor was
# damaged is refused, naming the field
Q="--bits 4 --asym --group-size 32"
# shellcheck disable=SC2086
QD_FAULT_RANK=0 QD_FAULT_AFTER=40 QD_CHECKPOINT_SECONDS=0 QD_ROUND_SECONDS=0 "$QDIST" quantize --model "$M" --out "$T/res.h5" --quiet $Q \
  > /dev/null 2>&1
[ -f "$T/res.h5.partial" ] || { echo "FAIL: no partial file"; exit 1; }
/usr/bin/python3 - "$T/res.h5.partial" <<'PY' || exit 1
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "r+") as f:
    done = [n for n, g in f["tensors"].items() if "complete" in g.attrs and "scales" in g]
    d = f["tensors"][done[0]]["scales"]
    a = d[...]; a.flat[1] = np.nan; d[...] = a
    print(done[0])
PY
cp "$T/res.h5.partial" "$T/svc.h5.partial"
# shellcheck disable=SC2086
"$QDIST" quantize --model "$M" --out "$T/res.h5" --resume $Q > "$T/out" 2> "$T/err"
rc=$?
[ $rc = 1 ] && grep -q "res.h5.partial: tensor '.*': dataset 'scales': element 1 (row 0) is nan" "$T/err" \
  || { echo "FAIL: resume of a damaged partial: exit $rc"; cat "$T/err"; fail=1; }
EP="ipc://$T/req.sock"
"$QDIST" serve --bind "$EP" --allow-dir "$T" --allow-dir "$(realpath "$M")" > "$T/serve.log" 2>&1 &
SPID=$!
i=0; until "$QDIST" status --to "$EP" --timeout 1 >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 30 ] && { echo "FAIL: service did not start"; cat "$T/serve.log"; exit 1; }; sleep 0.3; done
cat > "$T/job.json" <<J
{"model": "$(realpath "$M")", "out": "$T/svc.h5", "resume": true, "bits": 4, "sym": false, "group_size": 32}
J
"$QDIST" submit "$T/job.json" --to "$EP" --wait > "$T/out" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "svc.h5.partial: tensor .*dataset 'scales': element 1 (row 0) is nan" "$T/out" \
  || { echo "FAIL: the service resumed a damaged partial: exit $rc"; cat "$T/out"; fail=1; }
"$QDIST" shutdown --to "$EP" > /dev/null 2>&1
wait "$SPID" 2>/dev/null
SPID=
[ $fail = 0 ] && echo "ok: resumed jobs (batch and service) refuse a damaged partial file"
exit $fail
