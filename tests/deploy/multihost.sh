#!/usr/bin/env bash
# qdist quantize across two hosts: two network namespaces on this machine joined by a veth pair,
# loopback-range addresses 127.100.0.1 and 127.100.0.2 only, Open MPI's TCP transport between
# them, a hostfile with 2 slots per host and a launch agent that enters the other namespace
# (the recipe in ENVIRONMENT.md). The output must equal (h5diff, outside /run) the output of the
# same job on one host. Exit 77 (skipped) when namespaces cannot be created (not root, no
# CAP_SYS_ADMIN, no `ip`/`unshare`).
#   tests/deploy/multihost.sh [QDIST]    (or QDIST=...; QD_MODELS_DIR=... for the checkpoints)
#   QD_MH_RANKS_PER_HOST=2 (slots per host)   QD_MH_KEEP=1 (keep the temp dir and log)
#   QD_MH_MODEL=DIR (another checkpoint, for timings)   QD_MH_ARGS="..." (quantize options)
set -uo pipefail
SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
QDIST=${1:-${QDIST:-$SRC/build/qdist}}
MODELS=${QD_MODELS_DIR:-$SRC/../shared/models}
MODEL=${QD_MH_MODEL:-$MODELS/vit-mnist-tiny}
PER=${QD_MH_RANKS_PER_HOST:-2}
NP=$((2 * PER))
skip() { echo "SKIP: $*"; exit $SKIP; }

[ -x "$QDIST" ] || { echo "FAIL: no qdist binary at $QDIST"; exit 1; }
[ -d "$MODEL" ] || skip "no checkpoint at $MODEL"
for t in ip unshare mpirun h5diff; do command -v $t >/dev/null || skip "'$t' not found"; done
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"

# unique names: concurrent runs must not collide (interface names: at most 15 characters)
tag=$$
NS1=qdmh${tag}a NS2=qdmh${tag}b VA=qdv${tag}a VB=qdv${tag}b
T=$(mktemp -d /tmp/qd-multihost-XXXXXX)
cleanup() {
  ip netns del "$NS1" 2>/dev/null
  ip netns del "$NS2" 2>/dev/null
  ip link del "$VA" 2>/dev/null   # deleting either end removes the pair (if not yet moved)
  if [ "${QD_MH_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if ! ip netns add "$NS1" 2>"$T/err"; then skip "cannot create a network namespace: $(cat "$T/err")"; fi
ip netns add "$NS2" && ip link add "$VA" type veth peer name "$VB" \
  || skip "cannot create a veth pair"
ip link set "$VA" netns "$NS1" && ip link set "$VB" netns "$NS2" || { echo "FAIL: moving veth ends"; exit 1; }
i=1
for pair in "$NS1:$VA" "$NS2:$VB"; do
  ns=${pair%%:*} dev=${pair#*:}
  ip -n "$ns" link set "$dev" name mpi0 &&
  ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.route_localnet=1 net.ipv4.conf.mpi0.route_localnet=1 \
     net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.mpi0.rp_filter=0 &&
  ip -n "$ns" link set lo up &&
  ip -n "$ns" addr del 127.0.0.1/8 dev lo &&
  ip -n "$ns" addr add 127.0.0.1/32 dev lo &&
  { ! ip -n "$ns" route show table local | grep -q '^local 127.0.0.0/8' \
    || ip -n "$ns" route del local 127.0.0.0/8 dev lo table local; } &&
  ip -n "$ns" addr add 127.100.0.$i/24 dev mpi0 &&
  ip -n "$ns" link set mpi0 up || { echo "FAIL: configuring $ns"; exit 1; }
  i=$((i + 1))
done

# Open MPI's rsh launcher runs: agent HOST orted ARGS...; enter that host's namespace with its
# own hostname (equal hostnames would make Open MPI treat both as one node)
cat > "$T/agent.sh" <<EOF
#!/bin/sh
host=\$1; shift
case \$host in
  127.100.0.1) ns=$NS1; n=1 ;;
  127.100.0.2) ns=$NS2; n=2 ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts /bin/sh -c "hostname node-\$n; \$*"
EOF
chmod +x "$T/agent.sh"
printf '127.100.0.1 slots=%d\n127.100.0.2 slots=%d\n' "$PER" "$PER" > "$T/hostfile"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
unset OMPI_MCA_btl OMPI_MCA_rmaps_base_oversubscribe
# shellcheck disable=SC2054  # the commas belong to MCA values
MPIRUN_MH=(mpirun --hostfile "$T/hostfile" -n "$NP" --mca plm_rsh_agent "$T/agent.sh"
           --mca oob_tcp_if_include mpi0 --mca btl self,vader,tcp --mca btl_tcp_if_include mpi0
           --mca pml ob1 --bind-to none --mca mpi_yield_when_idle 1)
# (the two "hosts" share this machine's cores: ranks that wait must yield them)
in_host1() { ip netns exec "$NS1" unshare --uts /bin/sh -c 'hostname node-1; exec "$@"' sh "$@"; }

# shellcheck disable=SC2206
Q=(${QD_MH_ARGS:---bits 4 --asym --group-size 32})
fail=0
now() { date +%s.%N; }
dt() { printf '%.2f' "$(echo "$2 - $1" | bc)"; }

# where the ranks run
hosts=$(in_host1 "${MPIRUN_MH[@]}" hostname 2>"$T/err" | sort | uniq -c | tr -s ' ' | tr '\n' ';')
case $hosts in
  *node-1*node-2*) echo "ok: $NP ranks on two hosts:$hosts" ;;
  *) echo "FAIL: ranks not on two hosts: '$hosts'"; cat "$T/err"; exit 1 ;;
esac

# the same job on one host (shared memory) and on two (TCP over the veth pair)
t0=$(now)
OMPI_MCA_btl=self,vader OMPI_MCA_rmaps_base_oversubscribe=1 \
  mpirun -n "$NP" --bind-to none --mca mpi_yield_when_idle 1 "$QDIST" quantize --model "$MODEL" --out "$T/one.h5" --quiet "${Q[@]}" \
  || { echo "FAIL: single-host run"; exit 1; }
t1=$(now)
in_host1 "${MPIRUN_MH[@]}" "$QDIST" quantize --model "$MODEL" --out "$T/two.h5" "${Q[@]}" > "$T/log" 2>&1
rc=$?
t2=$(now)
if [ $rc != 0 ]; then echo "FAIL: two-host run exited $rc"; tail -30 "$T/log"; exit 1; fi
echo "time: one host $NP ranks $(dt "$t0" "$t1") s, two hosts ${PER}+${PER} ranks over TCP $(dt "$t1" "$t2") s (mpirun wall time)"
grep -E '^ +time ' "$T/log" | sed 's/^ */two hosts, qdist reports: /'
if h5diff --exclude-path /run "$T/one.h5" "$T/two.h5"; then
  echo "ok: two-host output == single-host output (h5diff, outside /run)"
else
  echo "FAIL: two-host output differs"; fail=1
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
    && echo "ok: rank $((NP - 1)) on host 2 SIGTERMed -> exit 3 -> --resume across hosts -> identical output" \
    || { echo "FAIL: resume across hosts"; tail -20 "$T/log"; fail=1; }
else
  echo "FAIL: SIGTERM on host 2: exit $rc (wanted 3)"; tail -20 "$T/log"; fail=1
fi
exit $fail
