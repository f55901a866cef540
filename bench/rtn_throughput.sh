#!/bin/sh
# RTN throughput of `qdist quantize` with 1 and 2 ranks, 8-bit per channel and 4-bit asymmetric
# groups of 128, on the real ViT checkpoint and on a generated BERT-base-shaped one (110M
# parameters, F32, written to /tmp with the project's safetensors writer). Prints GB/s of input
# (all tensors read, as the job's summary reports it) and of quantized input, per run and per rank,
# and the 2-rank speed-up. Each figure is the best of REPS runs (default 3): the machine may be
# shared, and the best run is the one least disturbed.
#   bench/rtn_throughput.sh [BUILD_DIR] [REPS]
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
REPS=${2:-3}
. deploy/mpienv.sh
T=$(mktemp -d /tmp/qd-rtn-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$B/bench/gen_checkpoint" "$T/bert-base" >/dev/null
printf '%-15s %-28s %5s %8s %12s %16s %14s\n' model scheme ranks seconds "GB/s input" "GB/s quantized" "GB/s per rank"
for model in ../shared/models/vit-mnist-tiny "$T/bert-base"; do
  for scheme in "--bits 8" "--bits 4 --asym --group-size 128"; do
    for n in 1 2; do
      best=""
      i=0
      while [ $i -lt "$REPS" ]; do
        rm -f "$T/o.h5"
        # shellcheck disable=SC2086
        line=$(mpirun -n $n "$B/qdist" quantize --model "$model" --out "$T/o.h5" --progress none $scheme </dev/null | grep " GB/s of input")
        secs=$(echo "$line" | awk '{print $2}')
        if [ -z "$best" ] || awk "BEGIN{exit !($secs < $best)}"; then best=$secs; bline=$line; fi
        i=$((i + 1))
      done
      gin=$(echo "$bline" | sed 's/.*: \([0-9.]*\) GB\/s of input.*/\1/')
      gq=$(echo "$bline" | sed 's/.*, \([0-9.]*\) GB\/s of quantized.*/\1/')
      printf '%-15s %-28s %5d %8s %12s %16s %14s\n' "$(basename "$model")" "$scheme" $n "$best" "$gin" "$gq" \
        "$(echo "$gin $n" | awk '{printf "%.2f", $1/$2}')"
      eval "t_$n=$best"
    done
    # shellcheck disable=SC2154
    echo "    2-rank speed-up: $(echo "$t_1 $t_2" | awk '{printf "%.2f", $1/$2}')"
  done
done
