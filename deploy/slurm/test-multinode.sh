#!/usr/bin/env bash
# Tests deploy/slurm/qdist.sbatch on a Slurm cluster of several nodes started on this machine:
# each node a network namespace (127.100.0.N on a bridge, hostname node-N) running its own
# slurmd, slurmctld in one more namespace (127.100.0.100); munge, state, logs and ports private
# to this run under a temp dir; everything stopped on exit. Open MPI between the nodes over TCP.
#
#   deploy/slurm/test-multinode.sh [QDIST]      (QDIST default: build/qdist)
#   QD_SLURM_NODES=2 (nodes)  QD_SLURM_RANKS=4 (tasks, spread over all nodes)  QD_SLURM_KEEP=1
#   QD_SLURM_LAUNCHERS="srun mpirun"  QD_SLURM_UP_SECONDS=60
#
# Checks, on the real checkpoint ../shared/models/vit-mnist-tiny, for each launcher: a batch job
# of RANKS tasks on NODES nodes (-N NODES) completes, its ranks ran on every node, and its output
# is identical (h5diff, outside /run) to `mpirun -n 1` without Slurm. Exit 77 (skipped) without
# root, namespaces or Slurm (deploy/slurm/test-local.sh installs it), or when the cluster does not
# come up (with its logs).
set -uo pipefail
SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
QDIST=${1:-${QDIST:-$SRC/build/qdist}}
MODELS=${QD_MODELS_DIR:-$SRC/../shared/models}
MODEL=$MODELS/vit-mnist-tiny
NODES=${QD_SLURM_NODES:-2}
RANKS=${QD_SLURM_RANKS:-4}
LAUNCHERS=${QD_SLURM_LAUNCHERS:-srun mpirun}
t_begin=$(date +%s)
say() { printf '[%3ds] %s\n' $(($(date +%s) - t_begin)) "$*"; }
skip() { echo "SKIP: $*"; exit $SKIP; }

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces, slurmctld, slurmd, munged)"
[ -x "$QDIST" ] || skip "no qdist binary at $QDIST"
QDIST=$(cd "$(dirname "$QDIST")" && pwd)/$(basename "$QDIST") # the jobs start elsewhere
[ -d "$MODEL" ] || skip "no checkpoint at $MODEL"
for t in slurmctld slurmd sbatch munged ip unshare nsenter h5diff mpirun; do
  command -v $t >/dev/null || skip "'$t' not found (deploy/slurm/test-local.sh installs Slurm)"
done

tag=$$
SW=qdsl${tag}s CTL=qdsl${tag}c
NS=()
for i in $(seq 1 "$NODES"); do NS+=("qdsl${tag}n$i"); done
T=$(mktemp -d /tmp/qd-slurm-nodes-XXXXXX)
chmod 755 "$T"
PIDS=()
. "$SRC/tests/deploy/netns.sh"
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 1
  netns_delete "${NS[@]}" "$CTL" "$SW"
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  if [ "${QD_SLURM_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- the network: a bridge, one namespace per node and one for the controller -----------------
netns_switch "$SW" 2>"$T/err" || skip "cannot create a network namespace with a bridge: $(cat "$T/err")"
for i in $(seq 1 "$NODES"); do
  netns_host "$SW" "${NS[$((i - 1))]}" "$i" "$i" || { echo "FAIL: node $i's namespace"; exit 1; }
done
netns_host "$SW" "$CTL" 100 100 || { echo "FAIL: the controller's namespace"; exit 1; }
# nsenter, not `ip netns exec`: that one remounts /sys, and slurmd wants the cgroup mount under it
in_ns() { local ns=$1; shift; nsenter --net=/run/netns/"$ns" "$@"; }
in_ctl() { in_ns "$CTL" "$@"; }

# ---- munge (its socket is a file: every namespace reaches it) ---------------------------------
mkdir -p "$T/state" "$T/spool" "$T/out" "$T/tmp" "$T/pmix"
. "$HERE/munge.sh"
start_munge "$T" || skip "munged did not start"

export SLURM_CONF=$T/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=qdnodes$tag
SlurmctldHost=ctl(127.100.0.100)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$T/munge/sock
StateSaveLocation=$T/state
SlurmdSpoolDir=$T/spool/%n
SlurmctldPidFile=$T/slurmctld.pid
SlurmdPidFile=$T/slurmd.%n.pid
SlurmctldLogFile=$T/slurmctld.log
SlurmdLogFile=$T/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/builtin
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
TmpFS=$T/tmp
PlugStackConfig=$T/plugstack.conf
NodeName=node-[1-$NODES] NodeAddr=127.100.0.[1-$NODES] CPUs=4 Sockets=1 CoresPerSocket=4 ThreadsPerCore=1 State=UNKNOWN
PartitionName=debug Nodes=node-[1-$NODES] Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
: >"$T/plugstack.conf"
echo "PMIxCliTmpDirBase=$T/pmix" >"$T/mpi.conf"
in_ctl unshare --uts sh -c 'hostname ctl; exec slurmctld -D -i -f "$SLURM_CONF"' >"$T/slurmctld.out" 2>&1 &
PIDS+=($!)
for i in $(seq 1 "$NODES"); do
  # a node's own temp and PMIx directories (the path is one, the files system shared: each node
  # mounts its own folder there, as real nodes have their own /tmp)
  mkdir -p "$T/spool/node-$i" "$T/node-$i/tmp" "$T/node-$i/pmix"
  in_ns "${NS[$((i - 1))]}" unshare --uts --mount sh -c "mount --bind $T/node-$i/tmp $T/tmp &&
    mount --bind $T/node-$i/pmix $T/pmix && hostname node-$i && exec slurmd -D -f \"\$SLURM_CONF\" -N node-$i" \
    >"$T/slurmd.$i.out" 2>&1 &
  PIDS+=($!)
done
up=0
t_up=$(($(date +%s) + ${QD_SLURM_UP_SECONDS:-60}))
while [ "$(date +%s)" -lt $t_up ]; do
  n=$(in_ctl timeout 5 sinfo -h -N -o '%t' 2>/dev/null | grep -cE '^(idle|mix)')
  [ "$n" = "$NODES" ] && { up=1; break; }
  sleep 0.3
done
if [ $up = 0 ]; then
  echo "--- slurmctld"; tail -20 "$T/slurmctld.log" "$T/slurmctld.out" 2>/dev/null
  echo "--- slurmd"; tail -n 10 "$T"/slurmd.*.log "$T"/slurmd.*.out 2>/dev/null
  skip "the $NODES-node Slurm cluster did not come up in ${QD_SLURM_UP_SECONDS:-60} s (its logs above)"
fi
say "cluster up: $(in_ctl sinfo -h -o '%P %D %t %C %N')"

# ---- jobs ----------------------------------------------------------------------------------------
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=mpi0 OMPI_MCA_oob_tcp_if_include=mpi0
export OMPI_MCA_mpi_yield_when_idle=1 OPENBLAS_NUM_THREADS=1 QDIST
Q=(--bits 4 --asym --group-size 32)
fail=0
OMPI_MCA_btl=self,vader OMPI_MCA_btl_tcp_if_include= OMPI_MCA_oob_tcp_if_include= \
  mpirun -n 1 "$QDIST" quantize --model "$MODEL" --out "$T/out/ref.h5" --quiet "${Q[@]}" || { echo "FAIL: reference run"; exit 1; }
state() { in_ctl timeout 5 scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
for L in $LAUNCHERS; do
  out=$T/out/$L.h5
  t0=$(date +%s.%N)
  # the ranks print their host first (a wrapper), then run qdist
  printf '#!/bin/sh\necho "rank ${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-?}} on $(hostname)" >> %s/hosts.%s\nexec "%s" "$@"\n' \
    "$T" "$L" "$QDIST" >"$T/qdist-$L"
  chmod +x "$T/qdist-$L"
  J=$(cd "$T" && QDIST=$T/qdist-$L QD_LAUNCHER=$L in_ctl sbatch --parsable -o "$T/job-$L.log" -N "$NODES" -n "$RANKS" -t 5 \
    "$SRC/deploy/slurm/qdist.sbatch" --model "$MODEL" --out "$out" "${Q[@]}") || { echo "FAIL: sbatch"; fail=1; continue; }
  s=
  for _ in $(seq 600); do
    s=$(state "$J")
    case $s in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL) break ;; esac
    sleep 0.2
  done
  t1=$(date +%s.%N)
  nodes_used=$(sed 's/.* on //' "$T/hosts.$L" 2>/dev/null | sort -u | tr '\n' ' ')
  if [ "$s" = COMPLETED ] && [ "$(echo "$nodes_used" | wc -w)" = "$NODES" ] &&
    h5diff --exclude-path /run "$T/out/ref.h5" "$out"; then
    say "ok: $L: job $J, $RANKS tasks on $NODES nodes ($nodes_used) completed in $(printf '%.1f' "$(echo "$t1 - $t0" | bc)") s; output == 1-rank reference"
  else
    say "FAIL: $L: job $J state '$s', ranks on: $nodes_used"
    tail -30 "$T/job-$L.log"
    fail=1
  fi
done
say "total $(($(date +%s) - t_begin)) s"
[ $fail = 0 ] && echo "PASS" || echo "FAILED"
exit $fail
