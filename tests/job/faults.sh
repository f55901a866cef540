#!/bin/sh
# Failure on any rank ends the job cleanly: every rank exits non-zero within seconds, rank 0
# prints the failing rank's message (which tensor, what went wrong), nothing hangs. Also bad
# input: a corrupt checkpoint, an existing output without --overwrite, usage errors.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
MODEL="$QD_MODELS_DIR/vit-mnist-tiny"
T=$(mktemp -d /tmp/qd-fault-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
expect() { # expect CODE PATTERN -- command...
  code=$1; pat=$2; shift 3
  out=$(timeout 60 "$@" 2>&1); rc=$?
  if [ "$rc" != "$code" ]; then echo "FAIL (exit $rc, wanted $code): $*"; echo "$out" | tail -5; fail=1; return; fi
  if ! printf '%s' "$out" | grep -q -- "$pat"; then echo "FAIL (no '$pat'): $*"; echo "$out" | tail -5; fail=1; return; fi
  echo "ok: exit $rc, '$pat': $*"
}
for n in 2 4; do
  last=$((n - 1))
  rm -f "$T/f.h5.partial"
  QD_FAULT_RANK=$last QD_FAULT_AFTER=2 expect 1 "injected fault" -- \
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/f.h5" --quiet
  QD_FAULT_RANK=$last QD_FAULT_AFTER=2 expect 1 "QD_FAULT_RANK=$last" -- \
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/f.h5" --quiet --overwrite
  [ ! -e "$T/f.h5" ] || { echo "FAIL: a failed job produced $T/f.h5"; fail=1; }
done
# the failed run kept its partial file: a new run neither resumes nor discards it silently
expect 1 "exists from an interrupted run: --resume continues it, --overwrite starts again" -- \
  mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/f.h5" --quiet
# a NaN inside one tensor, found by whichever rank holds it: the message names the tensor and the
# [row, col], every rank stops within seconds
mkdir -p "$T/nan"
cp "$MODEL/config.json" "$T/nan/"
/usr/bin/python3 - "$MODEL/model.safetensors" "$T/nan/model.safetensors" <<'P'
import json, struct, sys
raw = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
t = h["vit.encoder.layer.3.intermediate.dense.weight"]
cols = t["shape"][1]
off = 8 + n + t["data_offsets"][0] + 4 * (100 * cols + 7)
raw[off:off + 4] = struct.pack("<I", 0x7FC00000)
open(sys.argv[2], "wb").write(raw)
P
for n in 1 3; do
  t0=$(date +%s)
  expect 1 "tensor 'vit.encoder.layer.3.intermediate.dense.weight': NaN at \[100, 7\]" -- \
    mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$T/nan" --out "$T/nan$n.h5" --quiet
  [ $(($(date +%s) - t0)) -le 20 ] || { echo "FAIL: the failing job took more than 20 s"; fail=1; }
done
mkdir -p "$T/bad"
printf '\377\377\377\377\000\000\000\000{"a":' > "$T/bad/model.safetensors"
expect 1 "model.safetensors" -- mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$T/bad" --out "$T/b.h5"
mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/e.h5" --quiet
expect 1 "exists" -- mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/e.h5"
expect 2 "missing --out" -- "$QDIST" quantize --model "$MODEL"
expect 2 "bits" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --bits 9
expect 2 "unknown or incomplete option" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --frobnicate
printf '{"bits": 4, "colour": "red"}' > "$T/job.json"
expect 2 "unknown key 'colour'" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --config "$T/job.json"
printf '{"bits": "four"}' > "$T/job.json"
expect 2 "'bits' must be an integer" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --config "$T/job.json"
printf '{"overrides": [{"pattern": "*query*", "bitz": 4}]}' > "$T/job.json"
expect 2 "overrides\[0\]: unknown key 'bitz'" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --config "$T/job.json"
printf '{"overrides": [{"bits": 4}]}' > "$T/job.json"
expect 2 "'pattern' must be a non-empty string" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --config "$T/job.json"
printf '{"bits": 4' > "$T/job.json"
expect 2 "invalid JSON" -- "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --config "$T/job.json"
exit $fail
