#!/bin/sh
# bench/adaround_job.sh: whole-checkpoint time of `qdist quantize --method adaround` at the
# method's default settings (4-bit --asym per output channel, scales from the MSE clipping search,
# the Hessian form of the reconstruction loss, sequential calibration) on the real checkpoints
# with 1 and 2 ranks, one BLAS thread per rank: wall and job time, the calibration /
# quantization split, the 2-rank speed-up T1 / T2 and parallel efficiency T1 / (2 T2), and the
# load average (the machine may be shared).
#
#   sh bench/adaround_job.sh [QDIST] [REPS]  (QDIST default build/qdist, REPS default 1: at the
#                                             default 10,000 steps per layer a run takes minutes)
#
# Environment: ITERS=N passes --iters N (default: none, i.e. the method's default, read from
# `qdist quantize --help`), e.g. ITERS=50 for a quick try; QD_MODELS_DIR (default ../shared/models
# beside the source tree), QD_MINILM_DIR (default ~/.cache/qdist/models/all-MiniLM-L6-v2; missing:
# its rows are skipped).
#
# Runs: vit-mnist-tiny calibrated on 128 MNIST test images (the default --nsamples), and
# all-MiniLM-L6-v2 on SST-2 dev, --nsamples 128 --seqlen 128. Figures as in bench/gptq_job.sh:
# "job" is the job's own "time ... on N ranks" line, "wall" is mpirun's wall clock; calibration =
# the block's forward passes over the calibration samples plus the Hessian all-reduces;
# quantization = the block's AdaRound optimisations (tensors or row ranges over ranks) plus the
# result all-gathers; other = reading, calibration data, writing. The load column is the 1-minute
# load average before/after that run; each run is also announced on stderr.
set -eu
QDIST=${1:-build/qdist}
REPS=${2:-1}
MODELS=${QD_MODELS_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
MINILM=${QD_MINILM_DIR:-$HOME/.cache/qdist/models/all-MiniLM-L6-v2}
[ -x "$QDIST" ] || { echo "adaround_job: no qdist binary at $QDIST" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM
export OPENBLAS_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
JOB_OPTS="--method adaround --bits 4 --asym"
if [ -n "${ITERS:-}" ]; then
    JOB_OPTS="$JOB_OPTS --iters $ITERS"
    steps="$ITERS Adam steps per layer (ITERS)"
else
    d=$("$QDIST" quantize --help 2>&1 | sed -n 's/.*--iters N .*(default \([0-9]*\)).*/\1/p')
    steps="${d:-?} Adam steps per layer (the default)"
fi
JOB_VERBOSE=1 JOB_SPEEDUP=1
# shellcheck source=bench/job_timing.sh
. "$(dirname "$0")/job_timing.sh"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   CPUs: $(nproc)"

job_models >"$TMP/res"

echo "AdaRound 4-bit asym per channel, $steps, Hessian form, data-mode calibration, 1 BLAS thread per rank; best of $REPS (by job time), seconds"
job_table <"$TMP/res"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
