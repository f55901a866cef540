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

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)   CPUs: $(nproc)"

# run NAME NRANKS ARGS...: best-of-REPS line "NAME n wall job calib quant"
run() {
    name=$1 n=$2
    shift 2
    best=""
    i=0
    while [ $i -lt "$REPS" ]; do
        i=$((i + 1))
        t0=$(date +%s.%N)
        mpirun -n "$n" --oversubscribe "$QDIST" quantize --method gptq --bits 4 --asym --group-size 128 \
            --out "$TMP/$name-$n.h5" --overwrite --progress lines "$@" >"$TMP/log" 2>&1 ||
            { cat "$TMP/log"; exit 1; }
        t1=$(date +%s.%N)
        line=$(awk -v w="$(echo "$t1 - $t0" | bc)" '
            /^calibrated: block/ { for (k = 1; k <= NF; k++) { if ($k == "calibration") c += $(k + 1); if ($k == "quantization") q += $(k + 1) } }
            /^  time / { job = $2 }
            END { printf "%.3f %.3f %.3f %.3f\n", w, job, c, q }' "$TMP/log")
        job=$(echo "$line" | cut -d' ' -f2)
        if [ -z "$best" ] || [ "$(echo "$job < $(echo "$best" | cut -d' ' -f2)" | bc)" = 1 ]; then best=$line; fi
    done
    echo "$name $n $best"
}

{
    run vit-mnist-tiny 1 --model "$MODELS/vit-mnist-tiny" --calib "$MODELS/data/mnist/t10k-images-idx3-ubyte.gz"
    run vit-mnist-tiny 2 --model "$MODELS/vit-mnist-tiny" --calib "$MODELS/data/mnist/t10k-images-idx3-ubyte.gz"
    if [ -d "$MINILM" ]; then
        run all-MiniLM-L6-v2 1 --model "$MINILM" --calib "$MODELS/data/sst2/dev.tsv" --nsamples 128 --seqlen 128
        run all-MiniLM-L6-v2 2 --model "$MINILM" --calib "$MODELS/data/sst2/dev.tsv" --nsamples 128 --seqlen 128
    else
        echo "# $MINILM missing: all-MiniLM-L6-v2 skipped" >&2
    fi
} >"$TMP/res"

echo "GPTQ 4-bit asym g128, sequential calibration, 1 BLAS thread per rank; best of $REPS (by job time), seconds"
awk '
    { n[$1 " " $2] = $0; if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
    END {
        printf "%-18s %5s %7s %7s %7s %7s %7s %9s\n", "checkpoint", "ranks", "wall", "job", "calib", "quant", "other", "eff(job)"
        for (i = 1; i <= m; i++) {
            split(n[order[i] " 1"], a, " ")
            for (r = 1; r <= 2; r++) {
                if (!((order[i] " " r) in n)) continue
                split(n[order[i] " " r], b, " ")
                eff = r == 1 ? "" : sprintf("%8.0f%%", 100 * a[4] / (2 * b[4]))
                printf "%-18s %5d %7.2f %7.2f %7.2f %7.2f %7.2f %9s\n", b[1], r, b[3], b[4], b[5], b[6], b[4] - b[5] - b[6], eff
            }
            if ((order[i] " 2") in n) {
                split(n[order[i] " 2"], b, " ")
                printf "%-18s %5s %7s %7s %6.0f%% %6.0f%% %6.0f%%  (T1 / 2 T2 per phase; wall %.0f%%)\n", "", "", "", "",
                       100 * a[5] / (2 * b[5]), 100 * a[6] / (2 * b[6]), 100 * (a[4] - a[5] - a[6]) / (2 * (b[4] - b[5] - b[6]) + 1e-9),
                       100 * a[3] / (2 * b[3])
            }
        }
    }' "$TMP/res"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
