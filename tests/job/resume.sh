#!/bin/sh
# Atomic and resumable: a job that fails on one rank after K tensors, and one preempted by
# SIGTERM, keep OUT.h5.partial; `--resume` then completes a file identical (h5diff) to an
# uninterrupted run. A partial file written with other settings is refused.
set -u
export QD_CHECKPOINT_SECONDS=0  # completion marks after every round
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
MODEL="$QD_MODELS_DIR/vit-mnist-tiny"
T=$(mktemp -d /tmp/qd-resume-XXXXXX)
trap 'rm -rf "$T"' EXIT
fail=0
Q="--bits 4 --asym --group-size 32"
# shellcheck disable=SC2086
mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/ref.h5" --quiet $Q || exit 1
for n in 2 4; do
  # an injected failure on the last rank after 3 of its tensors
  # shellcheck disable=SC2086
  QD_FAULT_RANK=$((n - 1)) QD_FAULT_AFTER=3 timeout 60 mpiexec -n $n --oversubscribe "$QDIST" quantize \
      --model "$MODEL" --out "$T/f$n.h5" --quiet $Q > "$T/log" 2>&1
  rc=$?
  [ $rc = 1 ] && [ -f "$T/f$n.h5.partial" ] && [ ! -f "$T/f$n.h5" ] \
    || { echo "FAIL: fault run: exit $rc"; cat "$T/log"; fail=1; }
  # shellcheck disable=SC2086
  timeout 60 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/f$n.h5" --resume $Q > "$T/log" 2>&1 \
    || { echo "FAIL: resume after fault"; cat "$T/log"; fail=1; }
  grep -q "already complete" "$T/log" || { echo "FAIL: resume did not reuse completed tensors"; cat "$T/log"; fail=1; }
  h5diff --exclude-path /run "$T/ref.h5" "$T/f$n.h5" && echo "ok: fault + resume on $n ranks == uninterrupted" \
    || { echo "FAIL: fault + resume on $n ranks differs"; fail=1; }
  # preemption: SIGTERM on rank 0 after 2 of its tensors -> exit 3 with a resume hint
  # shellcheck disable=SC2086
  QD_FAULT_RANK=0 QD_FAULT_SIGNAL_AFTER=2 timeout 60 mpiexec -n $n --oversubscribe "$QDIST" quantize \
      --model "$MODEL" --out "$T/s$n.h5" --quiet $Q > "$T/log" 2>&1
  rc=$?
  [ $rc = 3 ] && grep -q -- "--resume" "$T/log" && [ -f "$T/s$n.h5.partial" ] \
    || { echo "FAIL: SIGTERM run: exit $rc"; cat "$T/log"; fail=1; }
  # shellcheck disable=SC2086
  timeout 60 mpiexec -n $n --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/s$n.h5" --resume --quiet $Q \
    || { echo "FAIL: resume after SIGTERM"; fail=1; }
  h5diff --exclude-path /run "$T/ref.h5" "$T/s$n.h5" && echo "ok: SIGTERM + resume on $n ranks == uninterrupted" \
    || { echo "FAIL: SIGTERM + resume on $n ranks differs"; fail=1; }
done
# resumed with another rank count and sharding policy than the run that failed
# shellcheck disable=SC2086
QD_FAULT_RANK=1 QD_FAULT_AFTER=5 timeout 60 mpiexec -n 4 --oversubscribe "$QDIST" quantize --model "$MODEL" \
    --out "$T/x.h5" --quiet --shard rows $Q > "$T/log" 2>&1
[ $? = 1 ] && [ -f "$T/x.h5.partial" ] || { echo "FAIL: fault run on 4 ranks"; cat "$T/log"; fail=1; }
# shellcheck disable=SC2086
timeout 60 mpiexec -n 3 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --resume --shard tensor $Q \
    > "$T/log" 2>&1 || { echo "FAIL: resume on 3 ranks"; cat "$T/log"; fail=1; }
h5diff --exclude-path /run "$T/ref.h5" "$T/x.h5" && echo "ok: fault on 4 ranks (rows) + resume on 3 (tensor) == uninterrupted" \
  || { echo "FAIL: 4 -> 3 ranks resume differs"; fail=1; }
# nothing left to resume: a complete output is not touched
out=$(mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/x.h5" --resume $Q 2>&1); rc=$?
[ $rc = 1 ] && printf '%s' "$out" | grep -q "already complete" && echo "ok: resume of a complete file refused" \
  || { echo "FAIL: resume of a complete file: exit $rc: $out"; fail=1; }
# a partial file with other settings is refused, naming both
QD_FAULT_RANK=0 QD_FAULT_AFTER=1 mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/m.h5" --quiet --bits 8 >/dev/null 2>&1
out=$(mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/m.h5" --resume --bits 4 2>&1); rc=$?
[ $rc = 1 ] && printf '%s' "$out" | grep -q "other settings" && echo "ok: mismatched resume refused" \
  || { echo "FAIL: mismatched resume: exit $rc: $out"; fail=1; }
exit $fail
