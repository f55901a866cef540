/* coordinator/cmd_plan.c — the time part of `qdist plan` (see cmd_plan.h). */
#include "coordinator/cmd_plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/qd_common.h"
#include "common/qd_file.h"
#include "coordinator/cli.h"
#include "model/calib_data.h"
#include "model/model.h"
#include "shard/cost.h"
#include "shard/safetensors.h"
#include "worker/calib_job.h"

/* the options of the time model (rank 0 reads them; one plan per process) */
static struct {
    const char *record, *time_model, *model_out;
    qd_cost_env env;
    int nodes, cores;
    int record_ranks;
    double rec[QD_COST_NPHASES], rec_wall, rec_file;
} g_tm;

static const char *const time_opts[] = {"--record",         "--time-model", "--model-out", "--net-gbps",
                                        "--net-latency-us", "--fs-mbps",    "--nodes",     "--cores"};

static int number_arg(MPI_Comm comm, const char *opt, const char *v, double lo, double *out)
{
    char *end;
    *out = strtod(v, &end);
    if (end == v || *end || !(*out >= lo) || !isfinite(*out))
        return qd_cli_usage_error(comm, "plan", "%s: '%s' is not a number >= %g", opt, v, lo);
    return 0;
}

/* The phases, wall time and ranks a job printed (its summary's lines). */
static int read_log(const char *path)
{
    char *text = NULL;
    size_t len = 0;
    int rc = qd_read_file(path, 64 << 20, "a job's log", &text, &len);
    if (rc) return rc;
    const char *p = strstr(text, "calibrated phases (busiest rank, s):"), *t = strstr(text, "\n  time ");
    const char *f = strstr(text, "\n  file ");
    int ok = p && t && f;
    double *m = g_tm.rec, streamed = 0;
    /* the calibrated tensors' streamed writes (the phases' optional `write`) are part of the
     * write phase beside the summary's `writing` (the rest of the file) */
    ok = ok && sscanf(p,
                      "calibrated phases (busiest rank, s): read %lf forward %lf reduce %lf quantize %lf gather %lf "
                      "write %lf",
                      &m[QD_COST_READ], &m[QD_COST_FORWARD], &m[QD_COST_REDUCE], &m[QD_COST_QUANTIZE],
                      &m[QD_COST_GATHER], &streamed) >= 5;
    ok = ok && sscanf(t, "\n  time %lf s on %d rank", &g_tm.rec_wall, &g_tm.record_ranks) == 2;
    const char *w = ok ? strstr(t, "writing ") : NULL;
    ok = ok && w && sscanf(w, "writing %lf s", &m[QD_COST_WRITE]) == 1;
    m[QD_COST_WRITE] += streamed;
    ok = ok && sscanf(f, "\n  file %lf bytes", &g_tm.rec_file) == 1;
    free(text);
    if (!ok)
        return qd_err_set(QD_EFORMAT,
                          "%s: not the log of a calibrated 'qdist quantize' run (needs its 'calibrated phases', "
                          "'time' and 'file' lines; run without --quiet)",
                          path);
    return 0;
}

/* --fit RECORDS... [--model-out FILE]: the coefficients and each run's measured vs predicted wall;
 * with --time-model FILE, that model's predictions for the runs instead of a fit. */
static int fit(MPI_Comm comm, int argc, char **argv)
{
    if (!qd_cli_is_root(comm)) return QD_EXIT_OK;
    qd_cost_job *jobs = NULL;
    double(*meas)[QD_COST_NPHASES] = NULL, *wall = NULL, rms[QD_COST_NPHASES];
    int n = 0, rc = 0, files = 0;
    for (int i = 1; i < argc && !rc; i++) {
        if (argv[i][0] == '-' && argv[i][1]) {
            rc = qd_cli_usage_error(comm, "plan", "--fit takes run records only (%s)", argv[i]);
            break;
        }
        files++;
        if (qd_cost_records_read(argv[i], &jobs, &meas, &wall, &n)) {
            fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
            rc = QD_EXIT_FAIL;
        }
    }
    if (!rc && !files) rc = qd_cli_usage_error(comm, "plan", "--fit needs record files (qdist plan --record LOG)");
    qd_cost_model m;
    /* with --time-model: that model against the runs (validation), nothing fitted */
    const int given = g_tm.time_model != NULL;
    if (!rc && (given ? qd_cost_model_read(g_tm.time_model, &m)
                      : qd_cost_fit(jobs, (const double(*)[QD_COST_NPHASES])meas, n, &m, rms))) {
        fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
        rc = QD_EXIT_FAIL;
    }
    if (!rc) {
        if (given)
            printf("time model %s against %d run%s (coefficient, s per unit):\n", g_tm.time_model, n,
                   n == 1 ? "" : "s");
        else
            printf("time model fitted on %d run%s (coefficient, s per unit):\n", n, n == 1 ? "" : "s");
        for (int k = 0; k < QD_COST_NCOEF; k++) printf("  %-24s %.6g\n", qd_cost_coef_names[k], m.c[k]);
        printf("\n%-5s %-6s %-6s", "run", "ranks", "nodes");
        for (int p = 0; p < QD_COST_NPHASES; p++) printf(" %9s", qd_cost_phase_names[p]);
        printf(" %10s %10s %7s\n", "wall (s)", "model (s)", "error");
        double worst = 0;
        for (int r = 0; r < n; r++) {
            double t[QD_COST_NPHASES];
            const double pw = qd_cost_predict(&m, &jobs[r], NULL, t);
            printf("%-5d %-6d %-6d", r, jobs[r].ranks, jobs[r].nodes);
            for (int p = 0; p < QD_COST_NPHASES; p++) printf(" %4.1f/%4.1f", meas[r][p], t[p]);
            const double e = wall[r] > 0 ? (pw - wall[r]) / wall[r] : 0;
            worst = fmax(worst, fabs(e));
            printf(" %10.2f %10.2f %+6.1f%%\n", wall[r], pw, 100 * e);
        }
        printf("(phases: measured/model s; largest wall-time error %.1f%%)\n", 100 * worst);
        if (g_tm.model_out && qd_cost_model_write(g_tm.model_out, &m, n, given ? NULL : rms)) {
            fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
            rc = QD_EXIT_FAIL;
        } else if (g_tm.model_out)
            printf("wrote %s\n", g_tm.model_out);
    }
    free(jobs);
    free(meas);
    free(wall);
    return rc;
}

int qd_plan_time_args(int *argc, char **argv, MPI_Comm comm)
{
    memset(&g_tm, 0, sizeof g_tm);
    g_tm.nodes = 1;
    g_tm.cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (g_tm.cores < 1) g_tm.cores = 1;
    int fitting = 0, k = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--fit")) {
            fitting = 1;
            continue;
        }
        int which = -1;
        for (int o = 0; o < (int)QD_ARRAY_LEN(time_opts); o++)
            if (!strcmp(a, time_opts[o])) which = o;
        if (which < 0) {
            argv[k++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc) return qd_cli_usage_error(comm, "plan", "%s needs a value", a);
        const char *v = argv[++i];
        double x = 0;
        switch (which) {
        case 0: g_tm.record = v; break;
        case 1: g_tm.time_model = v; break;
        case 2: g_tm.model_out = v; break;
        case 3:
        case 4:
        case 5:
            if (number_arg(comm, a, v, 0, &x)) return QD_EXIT_USAGE;
            *(which == 3 ? &g_tm.env.net_gbps : which == 4 ? &g_tm.env.net_latency_us : &g_tm.env.fs_mbps) = x;
            break;
        default:
            if (number_arg(comm, a, v, 1, &x)) return QD_EXIT_USAGE;
            *(which == 6 ? &g_tm.nodes : &g_tm.cores) = (int)x;
        }
    }
    *argc = k;
    argv[k] = NULL;
    if (fitting) return fit(comm, *argc, argv);
    if (g_tm.record && read_log(g_tm.record)) {
        if (qd_cli_is_root(comm)) fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
        return QD_EXIT_FAIL;
    }
    return -1;
}

int qd_plan_time_record_ranks(void) { return g_tm.record ? g_tm.record_ranks : 0; }

/* The job's work for the time model, the per-block method costs kept for the span at any rank
 * count. */
typedef struct {
    qd_cost_job j;
    int nblocks;
    int *nt;               /* [nblocks] calibrated tensors */
    double *fixed, *share; /* [nblocks][QD_LIN_PER_BLOCK] their method costs: per input, per rows */
    int *group;            /* [nblocks][QD_LIN_PER_BLOCK] their input groups */
} job_work;

static double out_bytes_of(const qd_job_tensor *j, const qd_tensor_info *t, int calibrated)
{
    if (!calibrated && j->kind != QD_JOB_QUANT) return (double)t->numel * (t->float_like ? 4 : 1);
    const double ng = j->scheme.gran == QD_GRAN_GROUP ? ceil((double)j->cols / (double)j->scheme.group_size) : 1;
    return (double)j->rows * j->cols * j->scheme.bits / 8 + (double)j->rows * ng * 8;
}

static int job_work_of(const qd_job_config *c, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_plan_item *pi,
                       int n, job_work *w)
{
    memset(w, 0, sizeof *w);
    qd_model *m = NULL;
    int rc = qd_model_load_flags(c->model, QD_MODEL_STREAM_LINEARS, &m);
    if (rc) return rc;
    const qd_model_config *mc = qd_model_cfg(m);
    double tokens = (double)c->nsamples * (mc->arch == QD_ARCH_VIT ? qd_model_tokens(m, 0) : c->seqlen);
    qd_calib_data *d = NULL;
    if (c->calib && qd_calib_data_open(m, c->calib, c->nsamples, c->seqlen, (uint64_t)c->calib_seed, &d) == QD_OK)
        tokens = (double)qd_calib_data_count(d) * qd_calib_data_tokens(d);
    qd_calib_data_free(d);
    w->nblocks = mc->layers;
    w->nt = qd_xcalloc((size_t)mc->layers, sizeof *w->nt);
    w->fixed = qd_xcalloc((size_t)mc->layers * QD_LIN_PER_BLOCK, sizeof *w->fixed);
    w->share = qd_xcalloc((size_t)mc->layers * QD_LIN_PER_BLOCK, sizeof *w->share);
    w->group = qd_xcalloc((size_t)mc->layers * QD_LIN_PER_BLOCK, sizeof *w->group);
    uint8_t *calibrated = qd_xcalloc((size_t)n + 1, 1), *group_seen = qd_xcalloc((size_t)qd_model_num_groups(m) + 1, 1);
    uint8_t *block_seen = qd_xcalloc((size_t)mc->layers, 1);
    for (int li = 0; li < qd_model_num_linears(m); li++) {
        const qd_linear *L = qd_model_linear(m, li);
        char name[200];
        snprintf(name, sizeof name, "%s.weight", L->name);
        const int ti = qd_ckpt_find(ck, name);
        if (ti < 0 || jt[ti].kind != QD_JOB_QUANT || qd_job_needs(c, &jt[ti]) == QD_NEEDS_NOTHING) continue;
        calibrated[ti] = 1;
        const double in = L->in, out = L->out;
        w->j.fwd_work += tokens * 3 * in * out;
        if (!group_seen[L->input_group]) {
            group_seen[L->input_group] = 1;
            w->j.fwd_work += tokens * in * in;
            w->j.reduce_bytes += in * 4 + in * in * 8;
        }
        if (!block_seen[L->layer]) {
            block_seen[L->layer] = 1;
            w->j.reductions += 2;
        }
        if (w->nt[L->layer] < QD_LIN_PER_BLOCK) {
            /* GPTQ: the factorization of the input's statistics (in^3) is done by every rank
             * that quantizes rows of the tensor; the rest divides over them */
            const size_t at = (size_t)L->layer * QD_LIN_PER_BLOCK + (size_t)w->nt[L->layer]++;
            w->fixed[at] = jt[ti].method == QD_METHOD_GPTQ ? fmin(in * in * in, pi[ti].cost) : 0;
            w->share[at] = pi[ti].cost - w->fixed[at];
            w->group[at] = L->input_group;
        }
        w->j.qparams += in * out;
    }
    for (int i = 0; i < n; i++) {
        const qd_tensor_info *t = qd_ckpt_tensor(ck, i);
        w->j.bytes_in += (double)t->nbytes;
        w->j.out_bytes += out_bytes_of(&jt[i], t, calibrated[i]);
    }
    free(calibrated);
    free(group_seen);
    free(block_seen);
    qd_model_free(m);
    return 0;
}

static void job_at(const job_work *w, int ranks, int nodes, int cores, qd_cost_job *j)
{
    *j = w->j;
    j->ranks = ranks;
    j->nodes = nodes < ranks ? nodes : ranks;
    j->cores = cores;
    j->quant_span = j->quant_total = 0;
    for (int k = 0; k < w->nblocks; k++) {
        double work = 0;
        const size_t at = (size_t)k * QD_LIN_PER_BLOCK;
        j->quant_span += qd_cost_block_span(w->fixed + at, w->share + at, w->group + at, w->nt[k], ranks, &work);
        j->quant_total += work;
    }
}

static void job_work_free(job_work *w)
{
    free(w->nt);
    free(w->fixed);
    free(w->share);
    free(w->group);
}

int qd_plan_time_report(const qd_job_config *c, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_plan_item *pi,
                        int n, int ranks)
{
    if (!g_tm.record && !qd_job_needs_calibration(c, jt, n)) return -1;
    job_work w;
    if (job_work_of(c, ck, jt, pi, n, &w)) {
        fprintf(stderr, "qdist plan: time model: %s\n", qd_errmsg());
        return 2;
    }
    qd_cost_job j;
    if (g_tm.record) {
        job_at(&w, g_tm.record_ranks, g_tm.nodes, g_tm.cores, &j);
        j.out_bytes = g_tm.rec_file; /* what the run wrote */
        char *s = qd_cost_record_json(&j, g_tm.rec, g_tm.rec_wall);
        printf("%s\n", s);
        free(s);
        job_work_free(&w);
        return 1;
    }
    qd_cost_model m;
    qd_cost_model_default(&m);
    if (g_tm.time_model && qd_cost_model_read(g_tm.time_model, &m)) {
        fprintf(stderr, "qdist plan: %s\n", qd_errmsg());
        job_work_free(&w);
        return 2;
    }
    printf("\ntime model (%s; %d node%s of %d cores", g_tm.time_model ? g_tm.time_model : "this machine's default",
           g_tm.nodes, g_tm.nodes == 1 ? "" : "s", g_tm.cores);
    if (g_tm.env.net_gbps > 0) printf(", network %.3g GB/s", g_tm.env.net_gbps);
    if (g_tm.env.net_latency_us > 0) printf(", latency %.3g us", g_tm.env.net_latency_us);
    if (g_tm.env.fs_mbps > 0) printf(", file system %.4g MB/s", g_tm.env.fs_mbps);
    printf("):\n%6s %6s", "ranks", "nodes");
    for (int p = 0; p < QD_COST_NPHASES; p++) printf(" %9s", qd_cost_phase_names[p]);
    printf(" %10s %14s %14s\n", "wall (s)", "MB/rank", "MB/node");
    int list[] = {1, 2, 4, 8, 16, 32, 64, ranks}, nl = (int)QD_ARRAY_LEN(list);
    for (int q = 0; q < nl; q++) {
        const int P = list[q];
        if (q == nl - 1 && (P == 1 || P == 2 || P == 4 || P == 8 || P == 16 || P == 32 || P == 64)) continue;
        double t[QD_COST_NPHASES], worst = 0;
        job_at(&w, P, g_tm.nodes, g_tm.cores, &j);
        const double wall = qd_cost_predict(&m, &j, &g_tm.env, t);
        char bd[512];
        const int erc = qd_calib_job_estimate(c, ck, jt, P, &worst, bd, sizeof bd);
        printf("%6d %6d", P, j.nodes);
        for (int p = 0; p < QD_COST_NPHASES; p++) printf(" %9.2f", t[p]);
        const int per_node = (P + j.nodes - 1) / j.nodes;
        if (erc)
            printf(" %10.2f %14s %14s%s\n", wall, "?", "?", P == ranks ? "  <- --ranks" : "");
        else
            printf(" %10.2f %14.1f %14.1f%s\n", wall, worst * 1e-6, worst * per_node * 1e-6,
                   P == ranks ? "  <- --ranks" : "");
    }
    printf("(seconds per phase; memory: the busiest rank's estimate, and that times the ranks on a node)\n");
    job_work_free(&w);
    return 0;
}
