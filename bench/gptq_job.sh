#!/bin/sh
# bench/gptq_job.sh: whole-checkpoint time of `qdist quantize --method gptq` (4-bit, --asym,
# --group-size 128, sequential calibration) on the real checkpoints with 1 and 2 ranks, one
# BLAS thread per rank; best of REPS runs per rank count, the parallel efficiency T1 / (2 T2),
# and where the time goes (the job's per-block calibration and quantization seconds, summed).
#
#   sh bench/gptq_job.sh [QDIST] [REPS]      (QDIST default build/qdist, REPS default 3)
#
# Figures: "job" is the job's own "time ... on N ranks" line (reading, calibration, GPTQ,
# writing; no MPI start-up), "wall" is mpirun's wall clock. Calibration = forward passes of the
# block over the calibration samples (split over ranks) plus the Hessian all-reduces;
# quantization = the block's GPTQ units (prepare + column loop, units over ranks) plus the result
# all-gathers. The rest of "job" (serial) is reading the checkpoint, loading and embedding the
# calibration data, and writing the file. The machine may be shared: the load average is
# printed before and after.
set -eu
QDIST=${1:-build/qdist}
REPS=${2:-3}
MODELS=${QD_MODELS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
MINILM=${QD_MINILM_DIR:-$HOME/.cache/qdist/models/all-MiniLM-L6-v2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
JOB_OPTS="--method gptq --bits 4 --asym --group-size 128"
# shellcheck source=bench/job_timing.sh
. "$(dirname "$0")/job_timing.sh"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   CPUs: $(nproc)"

job_models >"$TMP/res"

echo "GPTQ 4-bit asym g128, data-mode calibration, 1 BLAS thread per rank; best of $REPS (by job time), seconds"
job_table <"$TMP/res"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
