# bench/job_timing.sh: sourced by bench/gptq_job.sh and bench/adaround_job.sh (POSIX sh). Times
# whole-checkpoint `qdist quantize` runs with calibration under mpirun and prints the 1-rank vs
# 2-rank table with the per-phase split read from the job's `--progress lines` output:
#
#   calibrated: block B/N: K tensors, calibration X s, quantization Y s    (one line per block)
#     time       Z s on N ranks: ...                                      (the summary)
#
# The caller sets QDIST, REPS, TMP (a scratch folder) and JOB_OPTS (method and scheme options,
# one word list); JOB_VERBOSE=1 announces each run on stderr; JOB_SPEEDUP=1 adds the columns
# speed-up T1 / T2 and load1 (before/after the run) to the table. Then:
#
#   job_run NAME NRANKS ARGS...   best of REPS (by job time), printed as one line
#                                 "NAME n wall job calib quant load1-before load1-after"
#   job_table < RESULTS           the table of those lines
#   job_models                    job_run on 1 and 2 ranks of vit-mnist-tiny (128 MNIST images) and
#                                 all-MiniLM-L6-v2 (128 SST-2 samples of 128 tokens), from MODELS
#                                 and MINILM (a missing MiniLM is skipped with a message)

# job_run NAME NRANKS ARGS...: best-of-REPS line "NAME n wall job calib quant load0 load1"
job_run() {
    name=$1 n=$2
    shift 2
    best=""
    i=0
    while [ $i -lt "$REPS" ]; do
        i=$((i + 1))
        l0=$(cut -d' ' -f1 /proc/loadavg)
        if [ "${JOB_VERBOSE:-0}" = 1 ]; then echo "# $name on $n rank(s), run $i/$REPS (load $l0) ..." >&2; fi
        t0=$(date +%s.%N)
        # shellcheck disable=SC2086  # JOB_OPTS is a word list
        mpirun -n "$n" --oversubscribe "$QDIST" quantize $JOB_OPTS \
            --out "$TMP/$name-$n.h5" --overwrite --progress lines "$@" >"$TMP/log" 2>&1 ||
            { cat "$TMP/log" >&2; exit 1; }
        t1=$(date +%s.%N)
        l1=$(cut -d' ' -f1 /proc/loadavg)
        line=$(awk -v w="$(echo "$t1 - $t0" | bc)" -v l0="$l0" -v l1="$l1" '
            /^calibrated: block/ { for (k = 1; k <= NF; k++) { if ($k == "calibration") c += $(k + 1); if ($k == "quantization") q += $(k + 1) } }
            /^  time / { job = $2 }
            END { printf "%.3f %.3f %.3f %.3f %s %s\n", w, job, c, q, l0, l1 }' "$TMP/log")
        if [ "${JOB_VERBOSE:-0}" = 1 ]; then echo "#   wall, job, calib, quant s: $(echo "$line" | cut -d' ' -f1-4)" >&2; fi
        job=$(echo "$line" | cut -d' ' -f2)
        if [ -z "$best" ] || [ "$(echo "$job < $(echo "$best" | cut -d' ' -f2)" | bc)" = 1 ]; then best=$line; fi
    done
    echo "$name $n $best"
}

# job_table < RESULTS: per checkpoint, 1 and 2 ranks; efficiency T1 / (2 T2) of the job
# time, then per phase (calibration, quantization, the rest) and of the wall time
job_table() {
    awk -v sp="${JOB_SPEEDUP:-0}" '
    { n[$1 " " $2] = $0; if (!($1 in seen)) { seen[$1] = 1; order[++m] = $1 } }
    END {
        sp = sp == 1
        printf "%-18s %5s %7s %7s %7s %7s %7s %9s", "checkpoint", "ranks", "wall", "job", "calib", "quant", "other", "eff(job)"
        if (sp) printf " %9s %11s", "speed-up", "load1"
        printf "\n"
        for (i = 1; i <= m; i++) {
            split(n[order[i] " 1"], a, " ")
            for (r = 1; r <= 2; r++) {
                if (!((order[i] " " r) in n)) continue
                split(n[order[i] " " r], b, " ")
                eff = r == 1 ? "" : sprintf("%8.0f%%", 100 * a[4] / (2 * b[4]))
                printf "%-18s %5d %7.2f %7.2f %7.2f %7.2f %7.2f %9s", b[1], r, b[3], b[4], b[5], b[6], b[4] - b[5] - b[6], eff
                if (sp) printf " %9s %11s", r == 1 ? "" : sprintf("%8.2fx", a[4] / b[4]), b[7] "/" b[8]
                printf "\n"
            }
            if ((order[i] " 2") in n) {
                split(n[order[i] " 2"], b, " ")
                printf "%-18s %5s %7s %7s %6.0f%% %6.0f%% %6.0f%%  (T1 / 2 T2 per phase; wall %.0f%%)\n", "", "", "", "",
                       100 * a[5] / (2 * b[5]), 100 * a[6] / (2 * b[6]), 100 * (a[4] - a[5] - a[6]) / (2 * (b[4] - b[5] - b[6]) + 1e-9),
                       100 * a[3] / (2 * b[3])
            }
        }
    }'
}

# job_models: the two checkpoints on 1 and 2 ranks (the lines job_table reads)
job_models() {
    for ranks in 1 2; do
        job_run vit-mnist-tiny "$ranks" --model "$MODELS/vit-mnist-tiny" --calib "$MODELS/data/mnist/t10k-images-idx3-ubyte.gz"
    done
    if [ -d "$MINILM" ]; then
        for ranks in 1 2; do
            job_run all-MiniLM-L6-v2 "$ranks" --model "$MINILM" --calib "$MODELS/data/sst2/dev.tsv" --nsamples 128 --seqlen 128
        done
    else
        echo "# $MINILM missing: all-MiniLM-L6-v2 skipped" >&2
    fi
}
