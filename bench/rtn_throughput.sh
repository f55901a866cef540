#!/bin/sh
# RTN throughput of `qdist quantize` (GB/s of quantized FP32 input, as its summary prints) with 1
# and 2 ranks, 8-bit per channel and 4-bit groups of 128, on the real ViT checkpoint and on a
# generated BERT-base-shaped one (110M parameters), and the 2-rank speed-up.
#   bench/rtn_throughput.sh [BUILD_DIR]
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
. deploy/mpienv.sh
T=$(mktemp -d /tmp/qd-rtn-XXXXXX)
trap 'rm -rf "$T"' EXIT
"$B/bench/gen_checkpoint" "$T/bert-base" >/dev/null
printf '%-16s %-22s %6s %10s %10s\n' model scheme ranks seconds GB/s
for model in ../shared/models/vit-mnist-tiny "$T/bert-base"; do
  for scheme in "--bits 8" "--bits 4 --asym --group-size 128"; do
    for n in 1 2; do
      # shellcheck disable=SC2086
      line=$(mpirun -n $n "$B/qdist" quantize --model "$model" --out "$T/o.h5" --overwrite $scheme </dev/null | grep "GB/s")
      secs=$(echo "$line" | awk '{print $2}'); gbs=$(echo "$line" | awk '{print $(NF-4)}')
      printf '%-16s %-22s %6d %10s %10s\n' "$(basename "$model")" "$(echo $scheme | cut -c1-22)" $n "$secs" "$gbs"
      eval "t_$n=$secs"
    done
    echo "   2-rank speed-up: $(echo "$t_1 $t_2" | awk '{printf "%.2f", $1/$2}')"
  done
done
