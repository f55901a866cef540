#!/bin/sh
# The service under load: `qdist serve` (RANKS ranks, --state-dir, --max-queue QUEUE) and
# bench_svc_load with CLIENTS concurrent clients submitting JOBS small jobs in all (vit-mnist-tiny,
# 8-bit and 4-bit), polling status, watching events, cancelling some jobs while queued and some
# while running. Then, from the service's log: every job started at most once and every done job
# exactly once; a sample of outputs equal batch runs of the same settings; every job cancelled
# while running resumes (a new job with "resume": true) to the same file as an undisturbed run.
#   . deploy/mpienv.sh; sh bench/svc_load.sh [BUILD_DIR]
#   CLIENTS=50 JOBS=1000 RANKS=2 QUEUE=64 RSS_MARGIN=16 (MiB) are the defaults.
set -u
B=${1:-build}
QDIST=${QDIST:-$B/qdist}
LOAD=${SVC_LOAD:-$B/bench/bench_svc_load}
MODELS=${QD_MODELS_DIR:-$(dirname "$0")/../../shared/models}
MODEL=$(realpath "$MODELS/vit-mnist-tiny")
CLIENTS=${CLIENTS:-50} JOBS=${JOBS:-1000} RANKS=${RANKS:-2} QUEUE=${QUEUE:-64} RSS_MARGIN=${RSS_MARGIN:-16}
T=$(mktemp -d /tmp/qd-load-XXXXXX)
EP="ipc://$T/req.sock"; EV="ipc://$T/ev.sock"; SD="$T/state"
mkdir "$T/out"
SPID=
fail=0
cleanup() {
  if [ -n "$SPID" ]; then for p in $(pgrep -P "$SPID"); do kill -9 "$p" 2>/dev/null; done; kill -9 "$SPID" 2>/dev/null; fi
  rm -rf "$T"
}
trap cleanup EXIT
bad() { echo "FAIL: $*"; fail=1; }

# Every piece of a job takes at least 3 ms and the ranks agree every 10 ms (test hooks of the job):
# a small job then runs ~0.15 s, long enough for a cancel sent at its `started` event to reach it
# while it runs.
QD_FAULT_SLOW_MS=${SLOW_MS:-3} QD_ROUND_SECONDS=0.01 mpiexec -n "$RANKS" --oversubscribe "$QDIST" serve --bind "$EP" --events "$EV" --state-dir "$SD" --allow-dir "$T" \
    --allow-dir "$MODEL" --max-queue "$QUEUE" > "$T/serve.log" 2>&1 &
SPID=$!
i=0; until "$QDIST" status --to "$EP" --timeout 1 >/dev/null 2>&1; do
  i=$((i + 1)); [ $i -gt 60 ] && { echo "service did not start"; cat "$T/serve.log"; exit 1; }; sleep 0.3; done

# a first job initializes what the process keeps (HDF5, MPI-IO, BLAS buffers): the memory figures
# start after it
rss() { sed -n 's/^VmRSS: *//p' "/proc/$(cat "$SD/lock")/status"; }
rss_before=$(rss)
printf '{"model": "%s", "out": "%s"}\n' "$MODEL" "$T/warmup.h5" > "$T/warmup.json"
"$QDIST" submit "$T/warmup.json" --to "$EP" --wait > /dev/null || bad "warm-up job"
echo "service rank-0 RSS before any job: $rss_before, after one job: $(rss)"
"$LOAD" --to "$EP" --events "$EV" --model "$MODEL" --out-dir "$T/out" --pid-file "$SD/lock" --clients "$CLIENTS" \
    --jobs "$JOBS" --cancel-queued "${CANCEL_QUEUED:-50}" --cancel-running "${CANCEL_RUNNING:-50}" \
    --rss-margin "$RSS_MARGIN" --timeout "${TIMEOUT:-3000}" || fail=1

# exactly once, from the service's own log
grep -o 'job j[0-9]*: started' "$T/serve.log" | sort | uniq -d > "$T/twice"
[ -s "$T/twice" ] && bad "started twice: $(head -5 "$T/twice")"
n_started=$(grep -c 'job j[0-9]*: started' "$T/serve.log")
n_done=$(grep -c 'job j[0-9]*: done' "$T/serve.log")
n_uniq_done=$(grep -o 'job j[0-9]*: done' "$T/serve.log" | sort -u | wc -l)
[ "$n_done" = "$n_uniq_done" ] || bad "a job done twice ($n_done lines, $n_uniq_done jobs)"
echo "service log: $n_started jobs started, $n_done done, each at most once"

# outputs equal batch runs of the same settings (a sample: the first and last ones of each)
mpiexec -n "$RANKS" --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/ref8.h5" --quiet --bits 8
mpiexec -n "$RANKS" --oversubscribe "$QDIST" quantize --model "$MODEL" --out "$T/ref4.h5" --quiet --bits 4 --asym --group-size 32
cmp_ok=0; cmp_n=0
for f in $(ls "$T/out"/*.h5 | head -4) $(ls "$T/out"/*.h5 | tail -4); do
  k=$(basename "$f" .h5); k=${k#job}; k=$(expr "$k" + 0)
  ref="$T/ref8.h5"; [ $((k % 2)) = 1 ] && ref="$T/ref4.h5"
  cmp_n=$((cmp_n + 1))
  h5diff --exclude-path /run "$f" "$ref" > /dev/null && cmp_ok=$((cmp_ok + 1)) || bad "$f differs from the batch run"
done
echo "outputs: $cmp_ok of $cmp_n sampled files equal the batch runs"

# every job cancelled while running resumes to the undisturbed file
n_res=0
for p in "$T/out"/*.h5.partial; do
  [ -f "$p" ] || continue
  f=${p%.partial}; k=$(basename "$f" .h5); k=${k#job}; k=$(expr "$k" + 0)
  if [ $((k % 2)) = 1 ]; then set=', "bits": 4, "sym": false, "group_size": 32'; ref="$T/ref4.h5"
  else set=', "bits": 8'; ref="$T/ref8.h5"; fi
  printf '{"model": "%s", "out": "%s", "resume": true%s}\n' "$MODEL" "$f" "$set" > "$T/resume.json"
  "$QDIST" submit "$T/resume.json" --to "$EP" --wait > /dev/null || { bad "resuming $f"; continue; }
  h5diff --exclude-path /run "$f" "$ref" > /dev/null && n_res=$((n_res + 1)) || bad "resumed $f differs"
done
echo "cancelled while running: $n_res partial files resumed, each equal to the undisturbed file"

"$QDIST" shutdown --to "$EP" > /dev/null || bad "shutdown"
i=0; while kill -0 "$SPID" 2>/dev/null; do i=$((i + 1)); [ $i -gt 100 ] && { bad "service did not exit"; break; }; sleep 0.2; done
wait "$SPID"; rc=$?; SPID=
[ "$rc" = 0 ] || bad "serve exited $rc"
[ $fail = 0 ] && echo "service load: all checks passed"
exit $fail
