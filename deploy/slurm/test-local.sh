#!/usr/bin/env bash
# Tests deploy/slurm/qdist.sbatch on a one-node Slurm cluster started on this machine (Debian's
# slurmctld, slurmd, slurm-client and munge; installed if missing). Everything private to this
# run: its own munged socket and key, its own ports, state and log files under a temp dir; all
# daemons stopped on exit.
#
#   deploy/slurm/test-local.sh [QDIST]      (QDIST default: build/qdist)
#   QD_SLURM_RANKS=4  QD_SLURM_LAUNCHERS="srun mpirun"  QD_SLURM_KEEP=1 (keep the temp dir)
#   QD_SLURM_RELEASE_AFTER=2 (seconds a requeued job may wait for its begin time before the test
#   starts it; 0: never, to see Slurm's own delay)
#   QD_SLURM_UP_SECONDS=60 (how long the one-node cluster may take to come up; if it does not,
#   the test is skipped (77) with the daemons' logs: nothing of qdist's ran)
#
# Checks, with RANKS tasks on the real checkpoint ../shared/models/vit-mnist-tiny:
#   1. an uninterrupted batch job: output complete and identical (h5diff) to `mpirun -n 1`;
#   2. for each launcher: a job that gets the time-limit warning in the middle
#      (scancel --batch --signal=TERM, which is what --signal=B:TERM@N delivers) stops with a
#      partial file, requeues itself, resumes, and the result is identical to run 1;
#   3. a rank that is SIGTERMed on its own (as under preemption) -> exit 3 -> requeue -> resume;
#   4. with QD_SLURM_REAL_TIMELIMIT=1 (opt-in, a few minutes): the real warning of a 1-minute
#      time limit (--signal=B:TERM@50), requeued until done.
# The tiny model quantizes in a fraction of a second, so runs 2 and 4 slow every tensor down with
# qdist's test hook QD_FAULT_SLOW_MS (the file written is unchanged); run 2 marks completed
# tensors after every round (QD_CHECKPOINT_SECONDS=0), so its "something was kept" check does not
# depend on when the warning lands.
# Exit 77 (skipped) without root or without the packages; 0 when all checks pass.
set -uo pipefail
SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
QDIST=${1:-${QDIST:-$SRC/build/qdist}}
MODELS=${QD_MODELS_DIR:-$SRC/../shared/models}
MODEL=$MODELS/vit-mnist-tiny
RANKS=${QD_SLURM_RANKS:-4}
LAUNCHERS=${QD_SLURM_LAUNCHERS:-srun mpirun}
t_begin=$(date +%s)
say() { printf '[%3ds] %s\n' $(( $(date +%s) - t_begin )) "$*"; }
skip() { echo "SKIP: $*"; exit $SKIP; }

[ "$(id -u)" = 0 ] || skip "needs root (starts slurmctld, slurmd and munged)"
[ -x "$QDIST" ] || skip "no qdist binary at $QDIST"
[ -d "$MODEL" ] || skip "no checkpoint at $MODEL"
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
   || ! command -v munged >/dev/null; then
  [ "${QD_SLURM_NO_INSTALL:-0}" = 1 ] && skip "Slurm not installed (QD_SLURM_NO_INSTALL=1)"
  say "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
      >/dev/null 2>&1 \
    || { apt-get -o DPkg::Lock::Timeout=900 update -q >/dev/null 2>&1 \
         && apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends slurmctld slurmd slurm-client munge \
              >/dev/null 2>&1; } \
    || skip "could not install Slurm (apt-get failed: offline?)"
  say "installed"
fi
command -v h5diff >/dev/null || skip "h5diff missing (hdf5-tools)"

T=$(mktemp -d /tmp/qd-slurm-XXXXXX)
chmod 755 "$T"
PIDS=()
cleanup() {
  local p
  if [ -n "${SLURM_CONF:-}" ] && [ -f "$SLURM_CONF" ]; then
    scancel --full --signal=KILL --quiet "${JOBS[@]:-0}" 2>/dev/null
  fi
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.3; done
    kill -KILL "$p" 2>/dev/null
  done
  if [ "${QD_SLURM_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
JOBS=()
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- munge: own key and socket -------------------------------------------------------------
mkdir -p "$T/state" "$T/spool" "$T/out"
. "$HERE/munge.sh"
start_munge "$T" || skip "munged did not start"

# ---- slurm.conf for this host ------------------------------------------------------------------
HOST=$(hostname -s)
free_port() { # a TCP port nobody listens on
  local p
  while :; do
    p=$(( 20000 + RANDOM % 20000 ))
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . || { echo $p; return; }
  done
}
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
[ "$SLURMD_PORT" != "$CTLD_PORT" ] || SLURMD_PORT=$((CTLD_PORT + 1))
export SLURM_CONF=$T/slurm.conf
cat > "$SLURM_CONF" <<EOF
ClusterName=qdtest$$
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
JobRequeue=1
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=600
# job ids and PMIx's per-step directories (TmpFS/spmix_appdir_UID_JOB.STEP) must not collide
# with another one-node cluster of a concurrent run
FirstJobId=$(( 1000 + RANDOM * 30 ))
TmpFS=$T/tmp
KillWait=10
PlugStackConfig=$T/plugstack.conf
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=4 Sockets=1 CoresPerSocket=4 ThreadsPerCore=1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
: > "$T/plugstack.conf"
mkdir -p "$T/tmp" "$T/pmix"
echo "PMIxCliTmpDirBase=$T/pmix" > "$T/mpi.conf"      # read from slurm.conf's directory
slurmctld -D -i -f "$SLURM_CONF" >"$T/slurmctld.out" 2>&1 &
PIDS+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$T/slurmd.out" 2>&1 &
PIDS+=($!)
# each query bounded (a slurmctld that is not answering makes sinfo wait its MessageTimeout), the
# whole wait bounded by the clock
up=0
t_up=$(( $(date +%s) + ${QD_SLURM_UP_SECONDS:-60} ))
while [ "$(date +%s)" -lt $t_up ]; do
  if timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -qE '^(idle|mix)'; then up=1; break; fi
  sleep 0.2
done
if [ $up = 0 ]; then
  echo "--- slurmctld.log"; tail -20 "$T/slurmctld.log" 2>/dev/null; tail -5 "$T/slurmctld.out"
  echo "--- slurmd.log"; tail -20 "$T/slurmd.log" 2>/dev/null; tail -5 "$T/slurmd.out"
  # the daemons (not qdist) failed to start on this host: nothing of qdist's was tested
  skip "the one-node Slurm cluster did not come up in ${QD_SLURM_UP_SECONDS:-60} s (its logs above)"
fi
say "cluster up: $(sinfo -h -o '%P %D %t %C')"

# ---- helpers -----------------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader OPENBLAS_NUM_THREADS=1
export QDIST
SBATCH="$SRC/deploy/slurm/qdist.sbatch"
fail=0
ok() { say "ok: $*"; }
bad() { say "FAIL: $*"; fail=1; }
state() { timeout 5 scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
restarts() { timeout 5 scontrol show job "$1" 2>/dev/null | sed -n 's/.*Restarts=\([0-9]*\).*/\1/p'; }
wait_done() { # JOB SECONDS: until COMPLETED/FAILED/...
  # Slurm holds a requeued batch job until its begin time; a test need not wait for it, but
  # the new start must come at least a second after the requeue (the old job credential is
  # revoked up to that second), so release it only after 2 s pending.
  local s pend=0
  for _ in $(seq $(( $2 * 5 ))); do
    s=$(state "$1")
    case $s in
      COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE) return 0 ;;
      PENDING) pend=$((pend + 1))
               [ $pend = $(( ${QD_SLURM_RELEASE_AFTER:-2} * 5 )) ] \
                 && scontrol update jobid="$1" StartTime=now >/dev/null 2>&1 ;;
      *) pend=0 ;;
    esac
    sleep 0.2
  done
  return 1
}
submit() { # LOG  sbatch-args... -- script-args...
  local logf=$1; shift
  local id
  id=$(sbatch --parsable -o "$logf" "$@") || return 1
  JOBS+=("$id")
  echo "$id"
}
Q=(--bits 4 --asym --group-size 32)

# ---- reference: one rank, no Slurm -----------------------------------------------------------
mpirun -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/out/ref.h5" --quiet "${Q[@]}" \
  || { bad "reference run"; exit 1; }

# ---- 1. uninterrupted batch job ----------------------------------------------------------------
t0=$(date +%s.%N)
J=$(submit "$T/j1.log" -n "$RANKS" -t 5 "$SBATCH" --model "$MODEL" --out "$T/out/a.h5" "${Q[@]}") \
  || { bad "sbatch"; exit 1; }
wait_done "$J" 60 || bad "job $J did not finish: $(state "$J")"
t1=$(date +%s.%N)
if [ "$(state "$J")" = COMPLETED ] && [ -f "$T/out/a.h5" ] && h5diff --exclude-path /run "$T/out/ref.h5" "$T/out/a.h5"; then
  ok "job $J ($RANKS tasks, srun) completed in $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s (submit to COMPLETED); output == 1-rank reference"
else
  bad "uninterrupted job $J: state $(state "$J")"; cat "$T/j1.log"
fi
"$QDIST" inspect "$T/out/a.h5" > "$T/inspect.txt" 2>&1
grep -q "status *complete" "$T/inspect.txt" || { bad "inspect: status not complete"; cat "$T/inspect.txt"; }

# progress from outside the job: qdist watch on the job's event port (job slowed to ~3 s so that
# the watcher is subscribed before the first tensor)
EVPORT=$(free_port)
J2=$(QD_EVENTS_PORT=$EVPORT QD_FAULT_SLOW_MS=100 submit "$T/j1w.log" -n "$RANKS" -t 5 "$SBATCH" \
     --model "$MODEL" --out "$T/out/w.h5" "${Q[@]}") || bad "sbatch"
timeout 60 "$QDIST" watch "tcp://127.0.0.1:$EVPORT" --timeout 30 > "$T/watch.txt" 2>&1
wrc=$?
wait_done "$J2" 60 || bad "job $J2 did not finish: $(state "$J2")"
if [ $wrc = 0 ] && [ "$(state "$J2")" = COMPLETED ] && grep -q "progress: qdist watch" "$T/j1w.log" \
   && grep -q "finished" "$T/watch.txt"; then
  ok "qdist watch followed job $J2 from outside: $(tr '\r' '\n' < "$T/watch.txt" | grep -c .) lines, last: $(tr '\r' '\n' < "$T/watch.txt" | grep . | tail -1 | cut -c1-70)"
else
  bad "qdist watch on job $J2: exit $wrc"; cat "$T/watch.txt"; tail -5 "$T/j1w.log"
fi

# ---- 2. time-limit warning mid-job -> requeue -> resume, for each launcher ---------------------
for L in $LAUNCHERS; do
  out=$T/out/b-$L.h5
  t0=$(date +%s.%N)
  # Completion marks after every round (QD_CHECKPOINT_SECONDS=0): a tensor the log shows done is
  # marked in the partial file before the next round starts, so "something was kept" does not
  # depend on when the signal lands; mpirun waits its default 10 s before SIGKILL (with 2 s, a
  # round still running under load was killed before its marks, and nothing was kept).
  J=$(QD_FAULT_SLOW_MS=300 QD_CHECKPOINT_SECONDS=0 QD_LAUNCHER=$L submit "$T/j2-$L.log" -n "$RANKS" -t 5 \
      "$SBATCH" --model "$MODEL" --out "$out" "${Q[@]}") || { bad "sbatch"; continue; }
  # the warning once the job has written some tensors (progress lines "[k/n]", or "\r[ k/ n]" when
  # mpirun gives rank 0 a terminal)
  for _ in $(seq 150); do
    grep -qE '\[ *[0-9]+/ *[0-9]+\]' "$T/j2-$L.log" 2>/dev/null && break
    sleep 0.1
  done
  sleep 0.5
  scancel --batch --signal=TERM "$J"
  wait_done "$J" 90 || bad "job $J did not finish: $(state "$J")"
  t1=$(date +%s.%N)
  r=$(restarts "$J")
  if [ "$(state "$J")" = COMPLETED ] && [ "${r:-0}" -ge 1 ] && grep -q "resuming" "$T/j2-$L.log" \
     && grep -q "already complete" "$T/j2-$L.log" && [ ! -e "$out.partial" ] \
     && h5diff --exclude-path /run "$T/out/ref.h5" "$out"; then
    done_before=$(sed -n 's/.*resuming .*: \([0-9]*\) of \([0-9]*\) tensors already complete.*/\1 of \2/p' "$T/j2-$L.log" | head -1)
    rc1=$(sed -n 's/.*qdist exited with \([0-9]*\) after.*/\1/p' "$T/j2-$L.log" | head -1)
    # srun: every rank gets SIGTERM from slurmstepd and exits 3; mpirun reports 1 for ranks it
    # signalled itself (and drops their last words), but must not have killed them before they
    # flushed: the resumed run found completed tensors
    [ "${done_before%% *}" -gt 0 ] 2>/dev/null || bad "$L: nothing was kept from the interrupted run"
    if [ "$L" = srun ]; then
      [ "$rc1" = 3 ] || bad "srun: interrupted run exited $rc1, wanted 3"
      grep -q "stopped after" "$T/j2-$L.log" || bad "srun: the ranks did not stop by themselves"
    fi
    ok "$L: SIGTERM mid-job -> ranks stop (launcher exit $rc1) -> requeued ($r restart) -> resumed with $done_before tensors done -> identical output; $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s submit to COMPLETED"
  else
    bad "$L: preempted job $J: state $(state "$J"), restarts ${r:-?}"; tr '\r' '\n' < "$T/j2-$L.log" | grep -v '^\[' | tail -30
  fi
done

# ---- 3. a rank SIGTERMed on its own (qdist's QD_FAULT_SIGNAL_AFTER hook) -----------------------
out=$T/out/c.h5
# the hook would fire again in the resumed run: a wrapper clears it once the job was requeued
printf '#!/bin/sh\n[ "${SLURM_RESTART_COUNT:-0}" -gt 0 ] && unset QD_FAULT_RANK QD_FAULT_SIGNAL_AFTER\nexec "%s" "$@"\n' \
  "$QDIST" > "$T/qdist-once"
chmod +x "$T/qdist-once"
J=$(QDIST=$T/qdist-once QD_FAULT_RANK=$((RANKS - 1)) QD_FAULT_SIGNAL_AFTER=2 submit "$T/j3.log" -n "$RANKS" -t 5 \
    "$SBATCH" --model "$MODEL" --out "$out" "${Q[@]}") || bad "sbatch"
wait_done "$J" 90 || bad "job $J did not finish: $(state "$J")"
r=$(restarts "$J")
if [ "$(state "$J")" = COMPLETED ] && [ "${r:-0}" -ge 1 ] && grep -q "exited with 3" "$T/j3.log" \
   && h5diff --exclude-path /run "$T/out/ref.h5" "$out"; then
  ok "rank $((RANKS - 1)) SIGTERMed after 2 tensors -> exit 3 -> requeued ($r restarts) -> identical output"
else
  bad "rank-signal job $J: state $(state "$J"), restarts ${r:-?}"; tr '\r' '\n' < "$T/j3.log" | grep -v '^\[' | tail -30
fi

# ---- 4. (opt-in) the real time-limit warning: -t 1 with --signal=B:TERM@50 ------------------------
# slurmctld checks time limits about every 30 s, so this takes a few minutes.
if [ "${QD_SLURM_REAL_TIMELIMIT:-0}" = 1 ]; then
  out=$T/out/d.h5
  t0=$(date +%s)
  J=$(QD_FAULT_SLOW_MS=3000 submit "$T/j4.log" -n "$RANKS" -t 1 --signal=B:TERM@50 \
      "$SBATCH" --model "$MODEL" --out "$out" "${Q[@]}") || bad "sbatch"
  wait_done "$J" 600 || bad "job $J did not finish: $(state "$J")"
  r=$(restarts "$J")
  if [ "$(state "$J")" = COMPLETED ] && [ "${r:-0}" -ge 1 ] && h5diff --exclude-path /run "$T/out/ref.h5" "$out"; then
    ok "time limit 1 min, warning 50 s before: $r requeues, identical output, $(( $(date +%s) - t0 )) s in all"
    tr '\r' '\n' < "$T/j4.log" | grep -E '^qdist.sbatch: (job|SIGTERM|qdist exited)|resuming'
  else
    bad "time-limit job $J: state $(state "$J"), restarts ${r:-?}"; tr '\r' '\n' < "$T/j4.log" | grep -v '^\[' | tail -40
  fi
fi

say "total $(( $(date +%s) - t_begin )) s"
[ $fail = 0 ] && echo "PASS" || echo "FAILED"
exit $fail
