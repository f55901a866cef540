#!/bin/sh
# RTN throughput of `qdist quantize` with 1 and 2 ranks, 8-bit per channel and 4-bit asymmetric
# groups of 128, on the real ViT checkpoint and on a generated BERT-base-shaped one (110M
# parameters, F32, written to /tmp with the project's safetensors writer).
#
# Per configuration, the best of REPS runs (default 3; the machine may be shared, the best run is
# the least disturbed one):
#   wall s      the job's own time (open, plan, quantize, write, close, rename)
#   GB/s        input bytes (all tensors) / wall time, in all and per rank
#   cpu s       work CPU time of the busiest rank (quantizing and writing its pieces), which other
#               processes on the machine do not inflate
#   GB/s/cpu    input bytes / work CPU time summed over ranks: the per-rank speed with a core each
# and the 2-rank speed-up from wall time and from the busiest rank's CPU time.
#   bench/rtn_throughput.sh [BUILD_DIR] [REPS]
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
REPS=${2:-3}
. deploy/mpienv.sh
T=$(mktemp -d /tmp/qd-rtn-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$B/bench/gen_checkpoint" "$T/bert-base" >/dev/null
printf '%-15s %-32s %5s %7s %7s %10s %7s %9s\n' model scheme ranks "wall s" GB/s "GB/s/rank" "cpu s" "GB/s/cpu"
for model in ../shared/models/vit-mnist-tiny "$T/bert-base"; do
  for scheme in "--bits 8" "--bits 4 --asym --group-size 128"; do
    for n in 1 2; do
      best=""
      i=0
      while [ $i -lt "$REPS" ]; do
        rm -f "$T/o.h5"
        # shellcheck disable=SC2086
        out=$(mpirun -n $n "$B/qdist" quantize --model "$model" --out "$T/o.h5" --progress none $scheme </dev/null)
        secs=$(echo "$out" | awk '/ GB\/s of checkpoint tensors/ {print $2}')
        if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; bout=$out; fi
        i=$((i + 1))
      done
      gin=$(echo "$bout" | sed -n 's/.*: \([0-9.]*\) GB\/s of checkpoint tensors.*/\1/p')
      cpu=$(echo "$bout" | sed -n 's/.* \([0-9.]*\) s on the busiest rank.*/\1/p')
      gcpu=$(echo "$bout" | sed -n 's/.*: \([0-9.]*\) GB\/s per CPU-second.*/\1/p')
      printf '%-15s %-32s %5d %7s %7s %10s %7s %9s\n' "$(basename "$model")" "$scheme" $n "$best" "$gin" \
        "$(echo "$gin $n" | awk '{printf "%.2f", $1/$2}')" "$cpu" "$gcpu"
      eval "t_$n=$best c_$n=$cpu"
    done
    # shellcheck disable=SC2154
    echo "    2-rank speed-up: $(echo "$t_1 $t_2" | awk '{printf "%.2f", $1/$2}') wall," \
      "$(echo "$c_1 $c_2" | awk '{printf "%.2f", ($2 > 0 ? $1/$2 : 0)}') from the busiest rank's CPU time"
  done
done
