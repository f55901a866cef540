#!/bin/sh
# The same job with 1, 2, 3, 4 and 8 ranks writes the same model: every dataset and attribute
# equal (h5diff), except the /run group (time stamps, rank count). Three schemes: 8-bit symmetric
# per channel; 4-bit asymmetric groups of 32 with the MSE clipping search and layer sharding;
# 3-bit asymmetric groups of 16 with row sharding (tensors cut into row ranges that depend on
# the rank count). The sharding policy does not change the file either.
set -eu
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
MODEL="$QD_MODELS_DIR/vit-mnist-tiny"
T=$(mktemp -d /tmp/qd-det-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
for scheme in "--bits 8" "--bits 4 --asym --group-size 32 --clip mse --shard layer" "--bits 3 --asym --group-size 16 --shard rows"; do
  for n in 1 2 3 4 8; do
    # shellcheck disable=SC2086
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/n$n.h5" --quiet $scheme
  done
  [ -f "$T/n1.h5" ] || { echo "no output for: $scheme"; exit 1; }
  for n in 2 3 4 8; do
    if h5diff --exclude-path /run "$T/n1.h5" "$T/n$n.h5"; then
      echo "ok: $scheme: 1 rank == $n ranks"
    else
      echo "DIFFERENT: $scheme: 1 rank vs $n ranks"; fail=1
    fi
  done
  # the comparison is not vacuous: a different scheme differs
  mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/other.h5" --quiet --bits 6
  if h5diff -q --exclude-path /run "$T/n1.h5" "$T/other.h5" >/dev/null 2>&1; then
    echo "h5diff found no difference between different schemes"; fail=1
  fi
  rm -f "$T"/*.h5
done
# tensor, layer and row sharding write the same file
for sh in tensor layer rows; do
  mpiexec -n 3 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/sh-$sh.h5" --quiet --bits 4 --group-size 64 --shard $sh
done
for sh in layer rows; do
  h5diff --exclude-path /run "$T/sh-tensor.h5" "$T/sh-$sh.h5" && echo "ok: --shard $sh == --shard tensor" \
    || { echo "DIFFERENT: --shard $sh vs tensor"; fail=1; }
done
rm -f "$T"/sh-*.h5
# mixed precision by glob overrides: same file for 1 and 3 ranks, and the overrides applied
cat > "$T/ov.json" <<J
{"bits": 8, "overrides": [
  {"pattern": "*.output.dense.weight", "skip": true},
  {"pattern": "*.attention.attention.*", "bits": 4, "group_size": 32, "sym": false, "clip": "mse"}]}
J
mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/ov1.h5" --quiet --config "$T/ov.json"
mpiexec -n 3 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/ov3.h5" --quiet --config "$T/ov.json"
h5diff --exclude-path /run "$T/ov1.h5" "$T/ov3.h5" && echo "ok: overrides: 1 rank == 3 ranks" || { echo "DIFFERENT: overrides"; fail=1; }
ins=$("$QDIST" inspect "$T/ov1.h5")
printf '%s' "$ins" | grep -q "86 tensors, 24 quantized" || { echo "overrides: wrong count"; fail=1; }
printf '%s' "$ins" | grep "layer.2.attention.attention.key.weight" | grep -q "4 rtn *group 32 *asym" || { echo "overrides: attention not 4-bit g32"; fail=1; }
printf '%s' "$ins" | grep "layer.2.intermediate.dense.weight" | grep -q "8 rtn *channel *sym" || { echo "overrides: default scheme not kept"; fail=1; }
printf '%s' "$ins" | grep "layer.2.output.dense.weight" | grep -q " float " || { echo "overrides: skip not applied"; fail=1; }
rm -f "$T"/ov*.h5
# export of a mixed-precision file (3-bit per tensor, 4-bit asymmetric groups, a skipped tensor,
# an included head) to F16, within one step of the source for every tensor
cat > "$T/mix.json" <<J
{"bits": 8, "include": ["classifier.weight"], "overrides": [
  {"pattern": "*.output.dense.weight", "skip": true},
  {"pattern": "*.attention.attention.*", "bits": 4, "group_size": 32, "sym": false},
  {"pattern": "*.intermediate.*", "bits": 3, "granularity": "tensor", "sym": false}]}
J
mpiexec -n 3 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/mix.h5" --quiet --config "$T/mix.json"
"$QDIST" export "$T/mix.h5" --out "$T/exp-mix" --dtype f16 >/dev/null || fail=1
/usr/bin/python3 "$(dirname "$0")/check_export.py" "$MODEL/model.safetensors" "$T/exp-mix/model.safetensors" "$T/mix.h5" f16 || fail=1
"$QDIST" inspect "$T/mix.h5" | grep "^classifier.weight" | grep -q "8 rtn" || { echo "include: classifier not quantized"; fail=1; }
rm -rf "$T/mix.h5" "$T/exp-mix"
# the file records what it is
mpiexec -n 2 "$QDIST" quantize --model "$MODEL" --out "$T/a.h5" --quiet
h5dump -a /format -a /status -a /format_version "$T/a.h5" | grep -q '"qdist"' || { echo "format attribute missing"; fail=1; }
h5dump -a /status "$T/a.h5" | grep -q '"complete"' || { echo "status attribute missing"; fail=1; }
[ ! -e "$T/a.h5.partial" ] || { echo "partial file left behind"; fail=1; }
# h5py reads it as docs/FORMAT.md says, within half a step of the source
mpiexec -n 3 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/g.h5" --quiet --bits 3 --asym --group-size 48
/usr/bin/python3 "$(dirname "$0")/read_h5py.py" "$T/g.h5" "$MODEL/model.safetensors" || fail=1
/usr/bin/python3 "$(dirname "$0")/read_h5py.py" "$T/a.h5" "$MODEL/model.safetensors" || fail=1
# export: a dequantized checkpoint within one step of the source, F32 and F16
for dt in f32 f16; do
  "$QDIST" export "$T/a.h5" --out "$T/exp-$dt" --dtype $dt >/dev/null || fail=1
  /usr/bin/python3 "$(dirname "$0")/check_export.py" "$MODEL/model.safetensors" "$T/exp-$dt/model.safetensors" "$T/a.h5" $dt || fail=1
  cmp -s "$MODEL/config.json" "$T/exp-$dt/config.json" || { echo "config.json not copied"; fail=1; }
  "$QDIST" inspect "$T/exp-$dt" >/dev/null || { echo "export not readable"; fail=1; }
done
"$QDIST" export "$T/nothere.h5" --out "$T/x" 2>/dev/null && { echo "export of a missing file succeeded"; fail=1; }
# and qdist inspect reads it back
out=$("$QDIST" inspect "$T/a.h5")
for pat in "format qdist v1" "status        complete" "86 tensors, 36 quantized" "vit.encoder.layer.5.output.dense.weight"; do
  printf '%s' "$out" | grep -q "$pat" || { echo "inspect output lacks '$pat'"; fail=1; }
done
exit $fail
