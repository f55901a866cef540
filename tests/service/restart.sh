#!/bin/sh
# The service never loses a job: a service with --state-dir accepts four jobs, one of them is
# cancelled while queued, and every rank is killed with SIGKILL in the middle of the first job.
# A restarted service (another rank count) answers `status` for the jobs of before, resumes the
# job in hand from its partial file, then runs the queue: every accepted job ends exactly once
# (one start each in the logs, the killed one resumed once), the outputs equal the same jobs run
# with `qdist quantize`, the cancelled job never starts. Then the two crash windows the logs
# cannot hit on purpose, reproduced in the table: a job whose file was renamed into place just
# before the crash ends done without running again, and a job whose partial file the crash
# damaged runs again from the beginning and still gives the identical file.
set -u
: "${QDIST:?}" "${QD_MODELS_DIR:?}"
MODEL=$(realpath "$QD_MODELS_DIR/vit-mnist-tiny")
T=$(mktemp -d /tmp/qd-restart-XXXXXX)
EP="ipc://$T/req.sock"
SD="$T/state"
fail=0
SPID=
cleanup() {
  if [ -n "$SPID" ]; then
    for p in $(pgrep -P "$SPID"); do kill -9 "$p" 2>/dev/null; done
    kill -9 "$SPID" 2>/dev/null
  fi
  rm -rf "$T"
}
trap cleanup EXIT
say() { echo "$*"; }
bad() { echo "FAIL: $*"; fail=1; }

# start_service NRANKS LOG [ENV...]: starts `qdist serve` and waits until it answers
start_service() {
  n=$1; log=$2; shift 2
  env "$@" mpiexec -n "$n" --oversubscribe "$QDIST" serve --bind "$EP" --state-dir "$SD" --allow-dir "$T" \
      --allow-dir "$MODEL" > "$log" 2>&1 &
  SPID=$!
  i=0; until "$QDIST" status --to "$EP" --timeout 1 >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 60 ] && { echo "service did not start"; cat "$log"; exit 1; }; sleep 0.3; done
}
# state ID: the job's state as the service reports it
state() { "$QDIST" status "$1" --to "$EP" 2>/dev/null | sed -n 's/^[[:space:]]*"state":[[:space:]]*"\([a-z]*\)".*/\1/p'; }
field() { "$QDIST" status "$1" --to "$EP" 2>/dev/null | sed -n "s/^[[:space:]]*\"$2\":[[:space:]]*\([0-9]*\).*/\1/p"; }
wait_end() {
  i=0; while :; do
    s=$(state "$1"); case "$s" in done|failed|cancelled) return 0 ;; esac
    i=$((i + 1)); [ $i -gt 600 ] && { bad "$1 did not end (state '$s')"; return 1; }; sleep 0.2
  done
}
stop_service() {
  "$QDIST" shutdown --to "$EP" > /dev/null || bad "shutdown"
  i=0; while kill -0 "$SPID" 2>/dev/null; do i=$((i + 1)); [ $i -gt 100 ] && { bad "service did not exit"; break; }; sleep 0.2; done
  wait "$SPID"; SPID=
}
job() { # job NAME OUT-FILE EXTRA-JSON
  printf '{"model": "%s", "out": "%s"%s}\n' "$MODEL" "$2" "$3" > "$T/$1.json"
}

job a "$T/a.h5" ', "bits": 4, "sym": false, "group_size": 32'
job b "$T/b.h5" ', "bits": 8'
job c "$T/c.h5" ', "bits": 3, "sym": false, "clip": "mse", "shard": "layer"'
job d "$T/d.h5" ', "bits": 2'

# ---- 1. kill -9 of every rank in the middle of a job -----------------------------------------
# every piece takes 100 ms and every round ends with a checkpoint: the first job runs ~4 s
start_service 2 "$T/serve1.log" QD_FAULT_SLOW_MS=100 QD_CHECKPOINT_SECONDS=0
A=$("$QDIST" submit "$T/a.json" --to "$EP" --token tok-a) || bad "submit a"
B=$("$QDIST" submit "$T/b.json" --to "$EP") || bad "submit b"
C=$("$QDIST" submit "$T/c.json" --to "$EP") || bad "submit c"
D=$("$QDIST" submit "$T/d.json" --to "$EP") || bad "submit d"
"$QDIST" cancel "$D" --to "$EP" | grep -q '^cancelled' || bad "cancel of queued $D"
# progress straight from the table (WAL: readers never block the service)
progress() { sqlite3 "$SD/jobs.db" "SELECT tensors_done FROM jobs WHERE seq=${A#j}"; }
i=0; while [ "$(progress)" -lt 20 ]; do
  i=$((i + 1)); [ $i -gt 600 ] && { bad "$A made no progress"; break; }; sleep 0.02; done
done_before=$(progress)
ranks=$(pgrep -P "$SPID" | tr '\n' ' ')
set -- $ranks
[ $# = 2 ] || bad "expected 2 ranks under mpiexec, found: $ranks"
kill -9 $ranks
say "killed ranks $ranks with SIGKILL at $done_before tensors of $A"
i=0; while kill -0 "$SPID" 2>/dev/null; do i=$((i + 1)); [ $i -gt 100 ] && { kill -9 "$SPID"; break; }; sleep 0.1; done
wait "$SPID" 2>/dev/null; SPID=
[ -f "$T/a.h5.partial" ] && [ ! -f "$T/a.h5" ] || bad "after the kill: $(ls "$T")"
# the table on disk: what the dead service had recorded
[ "$(sqlite3 "$SD/jobs.db" "SELECT state FROM jobs WHERE seq=${A#j}")" = running ] || bad "table: $A not running"
[ "$(sqlite3 "$SD/jobs.db" "SELECT group_concat(state) FROM jobs WHERE seq>${A#j} ORDER BY seq")" = "queued,queued,cancelled" ] ||
  bad "table: $(sqlite3 "$SD/jobs.db" 'SELECT seq, state FROM jobs')"

# ---- 2. restart (one rank this time): status of old jobs, resume, then the queue -----------------
start_service 1 "$T/serve2.log"
for j in "$A" "$B" "$C" "$D"; do
  s=$(state "$j"); [ -n "$s" ] || bad "status of $j after the restart"
done
[ "$(state "$D")" = cancelled ] || bad "$D: $(state "$D")"
# the same token again: the same job, not a new one
A2=$("$QDIST" submit "$T/a.json" --to "$EP" --token tok-a) || bad "resubmit with token"
[ "$A2" = "$A" ] || bad "token: $A2 instead of $A"
for j in "$A" "$B" "$C"; do wait_end "$j"; [ "$(state "$j")" = done ] || bad "$j: $(state "$j")"; done
[ "$(field "$A" attempts)" = 2 ] || bad "$A attempts: $(field "$A" attempts)"
[ ! -f "$T/d.h5" ] && [ ! -f "$T/d.h5.partial" ] || bad "the cancelled job $D wrote a file"
resumed=$(h5dump -a /run/resumed_tensors "$T/a.h5" | sed -n 's/^ *(0): \([0-9]*\)/\1/p')
[ "${resumed:-0}" -gt 0 ] && say "ok: $A resumed with $resumed tensors from its partial file" || bad "$A was not resumed (resumed_tensors '$resumed')"
# exactly once: one start per job over both lives of the service, the killed job resumed once
for j in "$A" "$B" "$C"; do
  n=$(cat "$T/serve1.log" "$T/serve2.log" | grep -c "job $j: started")
  [ "$n" = 1 ] || bad "$j started $n times"
done
n=$(grep -c "job $A: resumed after a restart" "$T/serve2.log")
[ "$n" = 1 ] || bad "$A resumed $n times"
! grep -q "job $D: " "$T/serve1.log" "$T/serve2.log" || bad "the cancelled job $D started"
[ "$(sqlite3 "$SD/jobs.db" "SELECT COUNT(*) FROM jobs")" = 4 ] || bad "table: $(sqlite3 "$SD/jobs.db" 'SELECT seq, state FROM jobs')"

# ---- 3. the crash windows, reproduced in the table ---------------------------------------------
stop_service
cp -p "$T/b.h5" "$T/b.keep"
# (a) the job's file was renamed into place, the service died before recording it
sqlite3 "$SD/jobs.db" "UPDATE jobs SET state='running', ended=NULL WHERE seq=${B#j}"
# (b) the service died mid-job and the partial file is damaged (cut in half)
cp "$T/c.h5" "$T/c.h5.partial"; rm "$T/c.h5"
sz=$(stat -c %s "$T/c.h5.partial"); truncate -s $((sz / 2)) "$T/c.h5.partial"
sqlite3 "$SD/jobs.db" "UPDATE jobs SET state='running', ended=NULL, summary=NULL WHERE seq=${C#j}"
start_service 2 "$T/serve3.log"
wait_end "$B"; wait_end "$C"
[ "$(state "$B")" = done ] && cmp -s "$T/b.h5" "$T/b.keep" && ! grep -q "job $B: started\|job $B: resumed" "$T/serve3.log" &&
  say "ok: $B, written before the crash, ends done without running again" || bad "$B after the crash window: $(state "$B")"
[ "$(state "$C")" = done ] && grep -q "job $C: resuming failed" "$T/serve3.log" &&
  say "ok: $C, with a damaged partial file, ran again from the beginning" || { bad "$C: $(state "$C")"; cat "$T/serve3.log"; }
stop_service

# ---- 4. the outputs equal an undisturbed run -------------------------------------------------
mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/ra.h5" --quiet --bits 4 --asym --group-size 32
mpiexec -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/rb.h5" --quiet --bits 8
mpiexec -n 2 --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/rc.h5" --quiet --bits 3 --asym --clip mse --shard layer
for j in a b c; do
  h5diff --exclude-path /run "$T/$j.h5" "$T/r$j.h5" > /dev/null && say "ok: job $j == the undisturbed batch job" ||
    bad "job $j differs from the undisturbed batch job"
done
[ $fail = 0 ] && echo "service restart: all checks passed"
exit $fail
