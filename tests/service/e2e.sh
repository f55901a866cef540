#!/bin/sh
# A service under mpirun -n 2 receives 3 jobs from 2 concurrent clients; all complete and their
# outputs equal the same jobs run with `qdist quantize`; a job on a corrupt checkpoint fails
# without stopping the service; status, cancel of an ended job, watch of a batch job's events;
# `shutdown` makes every rank exit 0.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
MODEL=$(realpath "$QD_MODELS_DIR/vit-mnist-tiny")
T=$(mktemp -d /tmp/qd-e2e-XXXXXX)
EP="ipc://$T/req.sock"; EV="ipc://$T/ev.sock"
fail=0
cleanup() { [ -n "${SPID:-}" ] && kill "$SPID" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
QD_CHECKPOINT_SECONDS=0 QD_FAULT_SLOW_MS=40 mpiexec -n 2 --oversubscribe "$QDIST" serve --bind "$EP" --events "$EV" --allow-dir "$T" \
    --allow-dir "$MODEL" > "$T/serve.log" 2>&1 &
SPID=$!
i=0; until "$QDIST" status --to "$EP" --timeout 1 >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 30 ] && { echo "service did not start"; cat "$T/serve.log"; exit 1; }; sleep 0.3; done
cat > "$T/j1.json" <<J
{"model": "$MODEL", "out": "$T/s1.h5", "bits": 8}
J
cat > "$T/j2.json" <<J
{"model": "$MODEL", "out": "$T/s2.h5", "bits": 4, "sym": false, "group_size": 32}
J
cat > "$T/j3.json" <<J
{"model": "$MODEL", "out": "$T/s3.h5", "bits": 3, "sym": false, "clip": "mse", "shard": "layer"}
J
mkdir "$T/bad"; printf '\001\000\000\000\000\000\000\000{' > "$T/bad/model.safetensors"
cat > "$T/jbad.json" <<J
{"model": "$T/bad", "out": "$T/bad.h5"}
J
( "$QDIST" submit "$T/j1.json" --to "$EP" --wait > "$T/c1.out" 2>&1; echo $? > "$T/c1.rc"
  "$QDIST" submit "$T/j3.json" --to "$EP" --wait > "$T/c3.out" 2>&1; echo $? > "$T/c3.rc" ) &
C1=$!
"$QDIST" submit "$T/j2.json" --to "$EP" --wait > "$T/c2.out" 2>&1; echo $? > "$T/c2.rc"
"$QDIST" submit "$T/jbad.json" --to "$EP" --wait > "$T/cb.out" 2>&1; echo $? > "$T/cb.rc"
wait $C1
for c in 1 2 3; do
  [ "$(cat "$T/c$c.rc")" = 0 ] || { echo "FAIL: job $c: $(cat "$T/c$c.out")"; fail=1; }
done
[ "$(cat "$T/cb.rc")" = 1 ] && grep -q '"failed"' "$T/cb.out" && grep -q "model.safetensors" "$T/cb.out" \
  || { echo "FAIL: corrupt job: $(cat "$T/cb.out")"; fail=1; }
mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/b1.h5" --quiet --bits 8
mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/b2.h5" --quiet --bits 4 --asym --group-size 32
mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/b3.h5" --quiet --bits 3 --asym --clip mse --shard layer
for c in 1 2 3; do
  h5diff --exclude-path /run "$T/s$c.h5" "$T/b$c.h5" && echo "ok: service job $c == batch job" \
    || { echo "FAIL: service job $c differs from the batch job"; fail=1; }
done
"$QDIST" status --to "$EP" > "$T/status.json" || fail=1
n_done=$(grep -c '"done"' "$T/status.json"); n_failed=$(grep -c '"failed"' "$T/status.json")
[ "$n_done" = 3 ] && [ "$n_failed" = 1 ] || { echo "FAIL: status: $n_done done, $n_failed failed"; fail=1; }
"$QDIST" cancel j1 --to "$EP" 2>&1 | grep -q "already done" || { echo "FAIL: cancel of an ended job"; fail=1; }
# cancel: a queued job is removed; a running one stops after the tensor in hand, keeps its
# partial file, and a resubmitted job with "resume": true completes it identically
cat > "$T/slow.json" <<J
{"model": "$MODEL", "out": "$T/c.h5", "bits": 4, "sym": false, "group_size": 32}
J
cat > "$T/queued.json" <<J
{"model": "$MODEL", "out": "$T/q.h5"}
J
ID_SLOW=$("$QDIST" submit "$T/slow.json" --to "$EP")
ID_Q=$("$QDIST" submit "$T/queued.json" --to "$EP")
sleep 1
"$QDIST" cancel "$ID_Q" --to "$EP" | grep -q "^cancelled" || { echo "FAIL: cancel of a queued job"; fail=1; }
"$QDIST" cancel "$ID_SLOW" --to "$EP" | grep -q "^cancelling" || { echo "FAIL: cancel of a running job"; fail=1; }
i=0; until "$QDIST" status "$ID_SLOW" --to "$EP" | grep -q '"cancelled"'; do
  i=$((i + 1)); [ $i -gt 100 ] && { echo "FAIL: running job not cancelled"; fail=1; break; }; sleep 0.2; done
[ -f "$T/c.h5.partial" ] && [ ! -f "$T/c.h5" ] && [ ! -f "$T/q.h5" ] || { echo "FAIL: files after cancel"; ls "$T"; fail=1; }
cat > "$T/resume.json" <<J
{"model": "$MODEL", "out": "$T/c.h5", "bits": 4, "sym": false, "group_size": 32, "resume": true}
J
"$QDIST" submit "$T/resume.json" --to "$EP" --wait > /dev/null || { echo "FAIL: resumed job"; fail=1; }
h5diff --exclude-path /run "$T/c.h5" "$T/b2.h5" && echo "ok: cancelled + resumed job == batch job" \
  || { echo "FAIL: cancelled + resumed job differs"; fail=1; }
"$QDIST" shutdown --to "$EP" | grep -q drain || fail=1
i=0; while kill -0 "$SPID" 2>/dev/null; do i=$((i + 1)); [ $i -gt 50 ] && { echo "FAIL: service did not exit"; fail=1; break; }; sleep 0.2; done
wait "$SPID"; rc=$?; SPID=
[ "$rc" = 0 ] || { echo "FAIL: serve exited $rc"; fail=1; }
# a batch job's events reach `qdist watch`
"$QDIST" watch "$EV" --timeout 20 > "$T/watch.out" 2>&1 &
W=$!
sleep 0.5
mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/w.h5" --quiet --events "$EV"
wait $W; wrc=$?
[ "$wrc" = 0 ] && grep -q "finished" "$T/watch.out" || { echo "FAIL: watch ($wrc): $(cat "$T/watch.out")"; fail=1; }
[ $fail = 0 ] && echo "service end-to-end: all checks passed"
exit $fail
