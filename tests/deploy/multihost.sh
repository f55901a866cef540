#!/usr/bin/env bash
# qdist quantize across several hosts: HOSTS network namespaces on this machine (default 4), each
# joined by a veth pair to a bridge in a switch namespace, loopback-range addresses 127.100.0.N
# only, Open MPI's TCP transport between them, a hostfile with PER slots per host and a launch
# agent that enters the host's namespace (the recipe in ENVIRONMENT.md, with a bridge for more
# than two). Every file is written on one path all hosts share. Checks:
#   - RTN on a real checkpoint, and GPTQ on a generated BERT (bench/gen_checkpoint), across the
#     hosts: output equal (h5diff, outside /run) to the same job on one host;
#   - preemption: SIGTERM on a rank of the last host -> exit 3 -> --resume -> identical output;
#   - a host lost mid-job (its ranks killed during calibration): every rank ends within 10 s,
#     the message names the host or the rank, and --resume completes with the identical file.
# Exit 77 (skipped) when namespaces cannot be created (not root, no CAP_SYS_ADMIN, no
# `ip`/`unshare`); the GPTQ parts are skipped (said so) without gen_checkpoint.
#   tests/deploy/multihost.sh [QDIST [GEN_CHECKPOINT]]  (QD_MODELS_DIR=... for the checkpoints)
#   QD_MH_HOSTS=4   QD_MH_RANKS_PER_HOST=1 (slots per host)   QD_MH_KEEP=1 (keep the temp dir)
#   QD_MH_MODEL=DIR (another checkpoint, for timings)   QD_MH_ARGS="..." (RTN quantize options)
set -uo pipefail
SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
QDIST=${1:-${QDIST:-$SRC/build/qdist}}
MODELS=${QD_MODELS_DIR:-$SRC/../shared/models}
MODEL=${QD_MH_MODEL:-$MODELS/vit-mnist-tiny}
GEN=${2:-$(dirname "$QDIST")/bench/gen_checkpoint}
HOSTS=${QD_MH_HOSTS:-4}
PER=${QD_MH_RANKS_PER_HOST:-1}
NP=$((HOSTS * PER))
skip() { echo "SKIP: $*"; exit $SKIP; }

[ -x "$QDIST" ] || { echo "FAIL: no qdist binary at $QDIST"; exit 1; }
[ -d "$MODEL" ] || skip "no checkpoint at $MODEL"
for t in ip unshare mpirun h5diff; do command -v $t >/dev/null || skip "'$t' not found"; done
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"

# unique names: concurrent runs must not collide (interface names: at most 15 characters)
tag=$$
SW=qdmh${tag}s
NS=()
for i in $(seq 1 "$HOSTS"); do NS+=("qdmh${tag}h$i"); done
T=$(mktemp -d /tmp/qd-multihost-XXXXXX)
. "$HERE/netns.sh"
cleanup() {
  netns_delete "${NS[@]}" "$SW"
  if [ "${QD_MH_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

netns_switch "$SW" 2>"$T/err" || skip "cannot create a network namespace with a bridge: $(cat "$T/err")"
for i in $(seq 1 "$HOSTS"); do
  netns_host "$SW" "${NS[$((i - 1))]}" "$i" "$i" || { echo "FAIL: configuring host $i"; exit 1; }
done

# Open MPI's rsh launcher runs: agent HOST orted ARGS...; enter that host's namespace with its
# own hostname (equal hostnames would make Open MPI treat both as one node)
cat > "$T/agent.sh" <<EOF
#!/bin/sh
host=\$1; shift
n=\${host#127.100.0.}
case \$n in
  [1-9]|[1-9][0-9]) [ "\$n" -le $HOSTS ] || { echo "agent: unknown host \$host" >&2; exit 1; } ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec qdmh${tag}h\$n unshare --uts /bin/sh -c "hostname node-\$n; \$*"
EOF
chmod +x "$T/agent.sh"
for i in $(seq 1 "$HOSTS"); do echo "127.100.0.$i slots=$PER"; done > "$T/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset OMPI_MCA_btl OMPI_MCA_rmaps_base_oversubscribe
# shellcheck disable=SC2054  # the commas belong to MCA values
MPIRUN_MH=(mpirun --hostfile "$T/hostfile" -n "$NP" --mca plm_rsh_agent "$T/agent.sh"
           --mca oob_tcp_if_include mpi0 --mca btl self,vader,tcp --mca btl_tcp_if_include mpi0
           --mca pml ob1 --bind-to none --mca mpi_yield_when_idle 1)
# (the "hosts" share this machine's cores: ranks that wait must yield them)
in_host1() { ip netns exec "${NS[0]}" unshare --uts /bin/sh -c 'hostname node-1; exec "$@"' sh "$@"; }

# shellcheck disable=SC2206
Q=(${QD_MH_ARGS:---bits 4 --asym --group-size 32})
fail=0
now() { date +%s.%N; }
dt() { printf '%.2f' "$(echo "$2 - $1" | bc)"; }

# where the ranks run
hosts=$(in_host1 "${MPIRUN_MH[@]}" hostname 2>"$T/err" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
nh=$(echo "$hosts" | tr ';' '\n' | grep -c node-)
if [ "$nh" = "$HOSTS" ]; then echo "ok: $NP ranks on $HOSTS hosts:$hosts"; else
  echo "FAIL: ranks not on $HOSTS hosts: '$hosts'"; cat "$T/err"; exit 1; fi

# the same job on one host (shared memory) and on all of them (TCP over the bridge)
t0=$(now)
OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1 \
  mpirun -n "$NP" --bind-to none --mca mpi_yield_when_idle 1 "$QDIST" quantize --model "$MODEL" --out "$T/one.h5" --quiet "${Q[@]}" \
  || { echo "FAIL: single-host run"; exit 1; }
t1=$(now)
in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --model "$MODEL" --out "$T/two.h5" "${Q[@]}" > "$T/log" 2>&1
rc=$?
t2=$(now)
if [ $rc != 0 ]; then echo "FAIL: $HOSTS-host run exited $rc"; tail -30 "$T/log"; exit 1; fi
echo "time: one host $NP ranks $(dt "$t0" "$t1") s, $HOSTS hosts x $PER ranks over TCP $(dt "$t1" "$t2") s (mpirun wall time)"
grep -E '^ +time ' "$T/log" | sed "s/^ */$HOSTS hosts, qdist reports: /"
if h5diff --exclude-path /run "$T/one.h5" "$T/two.h5"; then
  echo "ok: $HOSTS-host output == single-host output (h5diff, outside /run)"
else
  echo "FAIL: $HOSTS-host output differs"; fail=1
fi
ranks=$(h5dump -a /run/ranks "$T/two.h5" 2>/dev/null | sed -n 's/.*(0): \([0-9]*\).*/\1/p')
[ -z "$ranks" ] || [ "$ranks" = "$NP" ] || { echo "FAIL: /run/ranks = $ranks, wanted $NP"; fail=1; }

# preemption across hosts: SIGTERM on a rank of the second host, then --resume
QD_FAULT_RANK=$((NP - 1)) QD_FAULT_SIGNAL_AFTER=2 in_host1 "${MPIRUN_MH[@]}" -x QD_FAULT_RANK -x QD_FAULT_SIGNAL_AFTER \
  "$QDIST" quantize --model "$MODEL" --out "$T/three.h5" --quiet "${Q[@]}" > "$T/log" 2>&1
rc=$?
if [ $rc = 3 ] && [ -f "$T/three.h5.partial" ]; then
  in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --model "$MODEL" --out "$T/three.h5" --resume --quiet "${Q[@]}" > "$T/log" 2>&1 \
    && h5diff --exclude-path /run "$T/one.h5" "$T/three.h5" \
    && echo "ok: rank $((NP - 1)) on host $HOSTS SIGTERMed -> exit 3 -> --resume across hosts -> identical output" \
    || { echo "FAIL: resume across hosts"; tail -20 "$T/log"; fail=1; }
else
  echo "FAIL: SIGTERM on host $HOSTS: exit $rc (wanted 3)"; tail -20 "$T/log"; fail=1
fi

# GPTQ on a generated BERT across the hosts, and a host lost in the middle of it
if [ ! -x "$GEN" ]; then
  echo "SKIP (part): no gen_checkpoint at $GEN (configure with QD_BUILD_BENCH): no GPTQ across hosts"
  exit $fail
fi
"$GEN" --shape bert --layers 4 --hidden 256 --heads 4 --shard-mb 2 "$T/bert" > /dev/null 2>&1 \
  && cp "$MODELS/bert-uncased/vocab.txt" "$T/bert/" || { echo "FAIL: gen_checkpoint"; exit 1; }
G=(--model "$T/bert" --method gptq --bits 4 --asym --group-size 64 --calib "$MODELS/data/sst2/dev.tsv"
   --nsamples 16 --seqlen 32)
OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1 \
  mpirun -n "$NP" --bind-to none --mca mpi_yield_when_idle 1 "$QDIST" quantize --out "$T/g1.h5" --quiet "${G[@]}" \
  || { echo "FAIL: single-host GPTQ run"; exit 1; }
in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --out "$T/g4.h5" --quiet "${G[@]}" > "$T/log" 2>&1 \
  || { echo "FAIL: GPTQ across $HOSTS hosts"; tail -20 "$T/log"; exit 1; }
if h5diff --exclude-path /run "$T/g1.h5" "$T/g4.h5"; then
  echo "ok: GPTQ across $HOSTS hosts == one host (h5diff, outside /run)"
else
  echo "FAIL: GPTQ across $HOSTS hosts differs from one host"; fail=1
fi

# the last host lost during calibration: its ranks killed (SIGKILL), as a crashed node
LAST=${NS[$((HOSTS - 1))]}
ranks_in() { for p in $(ip netns pids "$1"); do [ "$(cat /proc/"$p"/comm 2>/dev/null)" = qdist ] && echo "$p"; done; }
in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --out "$T/g5.h5" --progress lines "${G[@]}" > "$T/log" 2>&1 &
job=$!
for _ in $(seq 1 600); do grep -q "calibrated: block 1/" "$T/log" && break; kill -0 $job 2>/dev/null || break; sleep 0.1; done
victims=$(ranks_in "$LAST")
if [ -z "$victims" ] || ! grep -q "calibrated: block 1/" "$T/log"; then
  echo "FAIL: no qdist rank of host $HOSTS to kill mid-job (the job ended first?)"; tail -20 "$T/log"; fail=1
  wait $job
else
  t0=$(now)
  kill -9 $victims
  for _ in $(seq 1 300); do kill -0 $job 2>/dev/null || break; sleep 0.1; done
  t1=$(now)
  secs=$(dt "$t0" "$t1")
  if kill -0 $job 2>/dev/null; then
    echo "FAIL: the job still runs $secs s after host $HOSTS was lost"; fail=1
    kill -9 $job 2>/dev/null
  fi
  wait $job
  rc=$?
  left=$(for ns in "${NS[@]}"; do ranks_in "$ns"; done | wc -l)
  named=$({ grep -m1 -E "noticed.*(node-$HOSTS|127\.100\.0\.$HOSTS|rank $((NP - 1)))" "$T/log"
    grep -m1 -E "node-$HOSTS|127\.100\.0\.$HOSTS|rank $((NP - 1))" "$T/log"; } | head -1 | tr -s ' ' | cut -c1-200)
  if [ "$rc" != 0 ] && [ "$left" = 0 ] && [ "$(echo "$secs <= 10" | bc)" = 1 ] && [ -n "$named" ]; then
    echo "ok: host $HOSTS lost mid-job: every rank ended in $secs s (exit $rc); the message: $named"
  else
    echo "FAIL: host $HOSTS lost: exit $rc after $secs s, $left qdist processes left, the log:"; tail -15 "$T/log"
    fail=1
  fi
  in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --out "$T/g5.h5" --resume --quiet "${G[@]}" > "$T/log" 2>&1 \
    && h5diff --exclude-path /run "$T/g1.h5" "$T/g5.h5" \
    && echo "ok: --resume after the lost host -> identical output" \
    || { echo "FAIL: --resume after the lost host"; tail -20 "$T/log"; fail=1; }
fi
exit $fail
