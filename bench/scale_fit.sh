#!/bin/sh
# bench/scale_fit.sh: measures calibrated jobs at several rank counts and fits the time model
# (shard/cost.h) from their phases, then prints each run's measured wall time beside the model's
# prediction (docs/scaling.md, "The time model").
#
#   sh bench/scale_fit.sh OUTDIR MODEL RANKS...           run, record, fit
#   QD_FIT_SKIP_RUN=1 sh bench/scale_fit.sh OUTDIR MODEL RANKS...   record and fit existing logs
#
# MODEL: a checkpoint directory (bench/gen_checkpoint makes them: e.g. `gen_checkpoint --shape bert
# --layers 8 --hidden 1024 --intermediate 4096 --heads 16 DIR`, 134 M parameters). Each run's
# log is OUTDIR/<name>-<ranks>.log and its record (`qdist plan --record`) OUTDIR/<name>-<ranks>.json;
# the fit of every record in OUTDIR is OUTDIR/model.json. QD_FIT_OPTS: the job's options
# (default GPTQ 4-bit g128 asymmetric on 32 x 64 SST-2 tokens), QDIST: the binary, QD_FIT_CORES:
# the cores the jobs had (default nproc; on a shared machine the share it had, e.g. 1). Ranks
# above the core count are oversubscribed. The load is printed per run.
set -eu
OUT=${1:?OUTDIR}
MODEL=${2:?MODEL}
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
QDIST=${QDIST:-$ROOT/build/qdist}
DATA=${QD_FIT_CALIB:-$ROOT/../shared/models/data/sst2/dev.tsv}
OPTS=${QD_FIT_OPTS:---method gptq --bits 4 --asym --group-size 128 --calib $DATA --nsamples 32 --seqlen 64}
NAME=$(basename "$MODEL")
mkdir -p "$OUT"
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
for N in "$@"; do
  LOG=$OUT/$NAME-$N.log
  if [ -z "${QD_FIT_SKIP_RUN:-}" ]; then
    echo "$NAME at $N ranks: load $(cut -d' ' -f1-3 /proc/loadavg)"
    # shellcheck disable=SC2086
    mpirun --oversubscribe -n "$N" "$QDIST" quantize --model "$MODEL" --out "$OUT/$NAME-$N.h5" --overwrite \
      --progress none $OPTS >"$LOG" 2>&1 || { tail -20 "$LOG"; exit 1; }
    grep -E "calibrated phases|^  time" "$LOG"
  fi
  # shellcheck disable=SC2086
  "$QDIST" plan --model "$MODEL" $OPTS --cores "${QD_FIT_CORES:-$(nproc)}" --record "$LOG" >"$OUT/$NAME-$N.json"
done
cat "$OUT"/*-*.json >"$OUT/records.jsonl"
"$QDIST" plan --fit "$OUT/records.jsonl" --model-out "$OUT/model.json"
