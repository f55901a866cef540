#!/bin/sh
# bench/scale_resume.sh: a calibrated job on a generated checkpoint killed (SIGKILL on the last
# rank, through the job's test hook) once K blocks are in the file, then `--resume`: the resumed
# run reads those blocks back instead of calibrating them. Prints both runs' wall time and
# busiest rank's peak RSS, and compares the file with an uninterrupted one when REF is given.
#
#   sh bench/scale_resume.sh RANKS K [REF.h5] [QDIST]
#
# Model and options as bench/scale_job.sh (QD_SCALE_MODEL, QD_SCALE_CALIB, QD_SCALE_OPTS;
# default the 1.3 B BERT, GPTQ 4-bit g128 asym on 32 x 64 SST-2 tokens). The machine may be
# shared: the load average is printed.
set -u
N=${1:?RANKS}
K=${2:?BLOCKS}
REF=${3:-}
QDIST=${4:-build/qdist}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODEL=${QD_SCALE_MODEL:-$HOME/.cache/qdist/gen/bert-1.3b}
DATA=${QD_SCALE_CALIB:-$ROOT/../shared/models/data/sst2/dev.tsv}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
OPTS=${QD_SCALE_OPTS:---method gptq --bits 4 --asym --group-size 128 --calib $DATA --nsamples 32 --seqlen 64}
run() { # LABEL EXTRA...
  label=$1
  shift
  rm -f "$T"/rss.*
  t0=$(date +%s.%N)
  # shellcheck disable=SC2086
  mpirun --oversubscribe -n "$N" sh -c '/usr/bin/time -f "%M" -o '"$T"'/rss.$OMPI_COMM_WORLD_RANK "$@"' \
    sh "$QDIST" quantize --model "$MODEL" --out "$T/out.h5" --progress none $OPTS "$@" > "$T/log.$label" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  peak=$(cat "$T"/rss.* 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
  echo "$label: exit $rc, wall $(echo "$t1 - $t0" | bc) s, busiest rank peak RSS $(echo "${peak:-0} * 1.024 / 1000" | bc) MB"
  grep -E "resuming|read back|calibrated phase:|phases" "$T/log.$label" | head -8
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   CPUs: $(nproc)   ranks: $N   killed after block $K"
QD_FAULT_RANK=$((N - 1)) QD_FAULT_KILL_BLOCKS=$K run killed
[ -f "$T/out.h5.partial" ] || { echo "no partial file after the kill"; exit 1; }
run resumed --resume
if [ -n "$REF" ]; then
  if h5diff -q --exclude-path /run "$REF" "$T/out.h5" > /dev/null 2>&1; then
    echo "resumed file identical to $REF"
  else
    echo "resumed file DIFFERS from $REF"
    exit 1
  fi
fi
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
