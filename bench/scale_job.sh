#!/bin/sh
# bench/scale_job.sh: one calibrated job on a generated 1.3 B checkpoint at N ranks, with each
# rank's peak resident memory (/usr/bin/time's maximum RSS, file pages included) beside the
# job's own estimate, and the wall time. Generates the checkpoint under ~/.cache/qdist/gen on
# first use (bench/gen_checkpoint --shape bert: 26 blocks at hidden 2048, bf16, three shards).
#
#   sh bench/scale_job.sh RANKS [QDIST] [-- extra quantize options]
#
# Default job: GPTQ 4-bit, groups of 128, asymmetric, calibrated on 32 x 64 tokens of SST-2,
# sequential mode, one BLAS thread per rank. The machine may be shared: the load average is
# printed before and after. Needs several GB per rank: watch `free -g`.
set -eu
N=${1:?RANKS}
QDIST=${2:-build/qdist}
[ $# -ge 2 ] && shift 2 || shift 1
[ "${1:-}" = "--" ] && shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${QD_SCALE_MODEL:-$HOME/.cache/qdist/gen/bert-1.3b}
DATA=${QD_SCALE_CALIB:-$ROOT/../shared/models/data/sst2/dev.tsv}
if [ ! -f "$MODEL/config.json" ]; then
  "$(dirname "$QDIST")/bench/gen_checkpoint" --shape bert "$MODEL"
  cp "$ROOT/../shared/models/bert-uncased/vocab.txt" "$MODEL/"
fi
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OPTS=${QD_SCALE_OPTS:---method gptq --bits 4 --asym --group-size 128 --calib $DATA --nsamples 32 --seqlen 64}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   CPUs: $(nproc)   ranks: $N"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
mpirun --oversubscribe -n "$N" sh -c '/usr/bin/time -f "rank $OMPI_COMM_WORLD_RANK peak RSS %M kB" -o '"$T"'/rss.$OMPI_COMM_WORLD_RANK "$@"' \
  sh "$QDIST" quantize --model "$MODEL" --out "$T/out.h5" --overwrite --progress none $OPTS "$@" >"$T/log" 2>&1 || {
  tail -20 "$T/log"
  exit 1
}
t1=$(date +%s.%N)
grep -E "calibrated phase|^  time|^  file|phases|statistics per rank|write:|memory after block" "$T/log" || true
cat "$T"/rss.* | sort -k2 -n
awk '{print $5}' "$T"/rss.* | sort -n | tail -1 | awk '{printf "busiest rank peak RSS: %.1f MB\n", $1 * 1.024e-3}'
echo "wall: $(echo "$t1 - $t0" | bc) s"
[ -n "${QD_SCALE_KEEP:-}" ] && cp "$T/out.h5" "$QD_SCALE_KEEP"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
