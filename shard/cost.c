/* shard/cost.c — the time model of a calibrated job (see cost.h). */
#include "shard/cost.h"

#include <cjson/cJSON.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/qd_common.h"
#include "common/qd_file.h"

const char *const qd_cost_phase_names[QD_COST_NPHASES] = {"read", "forward", "reduce", "quantize", "gather", "write"};
const char *const qd_cost_coef_names[QD_COST_NCOEF] = {
    "read_s_per_byte",     "forward_s_per_unit",     "forward_s_per_block", "reduce_s_per_byte", "reduce_latency_s",
    "quantize_s_per_unit", "dequantize_s_per_param", "gather_s_per_byte",   "write_s",           "write_s_per_byte"};

/* the coefficients of each phase: [first, first + count) */
static const int phase_first[QD_COST_NPHASES] = {0, 1, 3, 5, 6, 8};
static const int phase_count[QD_COST_NPHASES] = {1, 2, 2, 1, 2, 2};

static void *grow(void *p, int n, size_t size)
{
    void *q = realloc(p, (size_t)n * size);
    QD_ASSERT(q);
    return q;
}

static int cores_of(const qd_cost_job *j)
{
    const int nodes = j->nodes > 0 ? j->nodes : 1, cores = j->cores > 0 ? j->cores : 1;
    const int ranks = j->ranks > 0 ? j->ranks : 1;
    return ranks < nodes * cores ? ranks : nodes * cores;
}

static double log2_ceil(int p)
{
    double l = 0;
    for (int v = 1; v < p; v *= 2) l += 1;
    return l;
}

/* The work multiplying each of a phase's coefficients. */
static void phase_terms(const qd_cost_job *j, int phase, double x[2])
{
    const double P = j->ranks > 0 ? j->ranks : 1, cores = cores_of(j);
    /* work every rank repeats (its reads, dequantizing every block) takes P / cores times as
     * long when the ranks outnumber the cores */
    const double over = P / cores;
    switch (phase) {
    case QD_COST_READ: x[0] = j->bytes_in * over; break;
    case QD_COST_FORWARD:
        x[0] = j->fwd_work / cores;
        x[1] = j->reductions / 2; /* per block: its load, agreements, advancing the samples */
        break;
    case QD_COST_REDUCE:
        x[0] = j->reduce_bytes * 2 * (P - 1) / P;
        x[1] = j->reductions * log2_ceil((int)P);
        break;
    case QD_COST_QUANTIZE: x[0] = fmax(j->quant_span, j->quant_total / cores); break;
    case QD_COST_GATHER:
        x[0] = j->qparams * over;
        x[1] = j->qparams * (P - 1) / P;
        break;
    default:
        x[0] = 1;
        x[1] = j->out_bytes;
        break;
    }
}

double qd_cost_predict(const qd_cost_model *m, const qd_cost_job *j, const qd_cost_env *env, double t[QD_COST_NPHASES])
{
    qd_cost_model e = *m;
    const int nodes = j->nodes > 0 ? j->nodes : 1;
    if (env && nodes > 1 && env->net_gbps > 0) { /* across nodes: at the network's speed */
        e.c[3] = 1.0 / (env->net_gbps * 1e9);
        e.c[7] = 1.0 / (env->net_gbps * 1e9);
    }
    if (env && nodes > 1 && env->net_latency_us > 0) e.c[4] = fmax(e.c[4], env->net_latency_us * 1e-6);
    if (env && env->fs_mbps > 0) e.c[9] = 1.0 / (env->fs_mbps * 1e6);
    double wall = 0;
    for (int p = 0; p < QD_COST_NPHASES; p++) {
        double x[2] = {0, 0}, s = 0;
        phase_terms(j, p, x);
        for (int k = 0; k < phase_count[p]; k++) s += e.c[phase_first[p] + k] * x[k];
        /* each node reads the checkpoint from the shared file system once (then its page cache) */
        if (p == QD_COST_READ && env && env->fs_mbps > 0) s = fmax(s, nodes * j->bytes_in / (env->fs_mbps * 1e6));
        if (t) t[p] = s;
        wall += s;
    }
    return wall;
}

double qd_cost_block_span(const double *fixed, const double *share, const int *group, int n, int ranks, double *work)
{
    if (work) *work = 0;
    if (n <= 0) return 0;
    /* per input group: its fixed cost once (the first tensor's), its tensors' shares */
    double *F = qd_xcalloc((size_t)n, sizeof *F), *S = qd_xcalloc((size_t)n, sizeof *S);
    int *of = qd_xmalloc((size_t)n * sizeof *of), *nr = qd_xmalloc((size_t)n * sizeof *nr), ng = 0;
    double total = 0;
    for (int i = 0; i < n; i++) {
        int gi = 0;
        while (gi < ng && of[gi] != group[i]) gi++;
        if (gi == ng) {
            of[ng++] = group[i];
            F[gi] = fixed[i];
        }
        S[gi] += share[i];
    }
    for (int gi = 0; gi < ng; gi++) total += F[gi] + S[gi];
    if (work) *work = total;
    double mx = 0;
    if (ranks <= 1) {
        mx = total;
    } else if (ng < ranks) { /* each group a rank, the others one by one to the most work per rank */
        for (int gi = 0; gi < ng; gi++) nr[gi] = 1;
        for (int extra = ranks - ng; extra > 0; extra--) {
            int best = 0;
            for (int gi = 1; gi < ng; gi++)
                if (F[gi] + S[gi] / nr[gi] > F[best] + S[best] / nr[best]) best = gi;
            nr[best]++;
        }
        for (int gi = 0; gi < ng; gi++) mx = fmax(mx, F[gi] + S[gi] / nr[gi]);
    } else { /* whole groups, longest first, to the least loaded rank */
        double *load = qd_xcalloc((size_t)ranks, sizeof *load);
        for (int gi = 0; gi < ng; gi++) S[gi] += F[gi];
        for (int a = 1; a < ng; a++) /* descending, stable; a block has a few groups */
            for (int b = a; b > 0 && S[b] > S[b - 1]; b--) {
                const double t = S[b];
                S[b] = S[b - 1];
                S[b - 1] = t;
            }
        for (int gi = 0; gi < ng; gi++) {
            int lo = 0;
            for (int r = 1; r < ranks; r++)
                if (load[r] < load[lo]) lo = r;
            load[lo] += S[gi];
        }
        for (int r = 0; r < ranks; r++) mx = fmax(mx, load[r]);
        free(load);
    }
    free(F);
    free(S);
    free(of);
    free(nr);
    return mx;
}

/* One phase: y ≈ X·c over the active columns; columns scaled to unit max for the solver. */
static void fit_phase(const qd_cost_job *jobs, const double (*meas)[QD_COST_NPHASES], int n, int phase, double *coef,
                      double *rms)
{
    const int nc = phase_count[phase];
    int active[2] = {1, 1};
    double *X = qd_xmalloc((size_t)n * 2 * sizeof *X), *y = qd_xmalloc((size_t)n * sizeof *y);
    for (int k = 0; k < nc; k++) coef[k] = 0;
    for (int tries = 0; tries < nc; tries++) {
        int cols[2], na = 0;
        double scale[2];
        for (int k = 0; k < nc; k++) {
            double mx = 0;
            for (int r = 0; r < n; r++) {
                double x[2] = {0, 0};
                phase_terms(&jobs[r], phase, x);
                mx = fmax(mx, fabs(x[k]));
            }
            if (active[k] && mx > 0) {
                scale[na] = mx;
                cols[na++] = k;
            }
        }
        for (int k = 0; k < nc; k++) coef[k] = 0;
        if (na == 0 || n < na) break;
        for (int r = 0; r < n; r++) {
            double x[2] = {0, 0};
            phase_terms(&jobs[r], phase, x);
            for (int a = 0; a < na; a++) X[r * na + a] = x[cols[a]] / scale[a];
            y[r] = meas[r][phase];
        }
        if (LAPACKE_dgels(LAPACK_ROW_MAJOR, 'N', n, na, 1, X, na, y, 1) != 0) break;
        int neg = -1;
        for (int a = 0; a < na; a++) {
            coef[cols[a]] = y[a] / scale[a];
            if (coef[cols[a]] < 0 && (neg < 0 || coef[cols[a]] < coef[neg])) neg = cols[a];
        }
        if (neg < 0) break;
        active[neg] = 0; /* a negative cost: fit without that term */
        coef[neg] = 0;
    }
    double ss = 0;
    for (int r = 0; r < n; r++) {
        double x[2] = {0, 0}, s = 0;
        phase_terms(&jobs[r], phase, x);
        for (int k = 0; k < nc; k++) s += coef[k] * x[k];
        ss += (s - meas[r][phase]) * (s - meas[r][phase]);
    }
    if (coef[0] < 0) coef[0] = 0;
    if (nc > 1 && coef[1] < 0) coef[1] = 0;
    *rms = n ? sqrt(ss / n) : 0;
    free(X);
    free(y);
}

int qd_cost_fit(const qd_cost_job *jobs, const double (*measured)[QD_COST_NPHASES], int n, qd_cost_model *out,
                double rms[QD_COST_NPHASES])
{
    if (n <= 0) return qd_err_set(QD_EUSAGE, "time model fit: no runs to fit");
    memset(out, 0, sizeof *out);
    for (int p = 0; p < QD_COST_NPHASES; p++) {
        double r = 0;
        fit_phase(jobs, measured, n, p, &out->c[phase_first[p]], &r);
        if (rms) rms[p] = r;
    }
    return 0;
}

void qd_cost_model_default(qd_cost_model *m)
{
    /* `QD_FIT_SKIP_RUN=1 sh bench/scale_fit.sh`: GPTQ 4-bit g128 on the generated 1.3 B BERT at 1, 2
     * and 4 ranks on the 2-core development machine while it was quiet (load 0-2, --cores 2), the
     * statistics reduced to each group's first rank and the results streamed (docs/scaling.md,
     * "The time model") */
    static const double c[QD_COST_NCOEF] = {1.979e-10, 7.542e-12, 2.503,     0,     0.2772,
                                            9.955e-12, 1.616e-09, 3.148e-09, 9.263, 0};
    memcpy(m->c, c, sizeof c);
}

int qd_cost_model_read(const char *path, qd_cost_model *m)
{
    size_t len = 0;
    char *text = NULL;
    int rc = qd_read_file(path, 1 << 20, "a time model", &text, &len);
    if (rc) return rc;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *co = root ? cJSON_GetObjectItemCaseSensitive(root, "coefficients") : NULL;
    if (!cJSON_IsObject(co)) {
        cJSON_Delete(root);
        return qd_err_set(QD_EFORMAT, "%s: not a time model (no \"coefficients\" object)", path);
    }
    for (int k = 0; k < QD_COST_NCOEF; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(co, qd_cost_coef_names[k]);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0) {
            cJSON_Delete(root);
            return qd_err_set(QD_EFORMAT, "%s: coefficients.%s is missing or not a number >= 0", path,
                              qd_cost_coef_names[k]);
        }
        m->c[k] = v->valuedouble;
    }
    cJSON_Delete(root);
    return 0;
}

int qd_cost_model_write(const char *path, const qd_cost_model *m, int runs, const double rms[QD_COST_NPHASES])
{
    cJSON *o = cJSON_CreateObject(), *co = cJSON_AddObjectToObject(o, "coefficients");
    for (int k = 0; k < QD_COST_NCOEF; k++) cJSON_AddNumberToObject(co, qd_cost_coef_names[k], m->c[k]);
    cJSON_AddNumberToObject(o, "runs", runs);
    if (rms) {
        cJSON *r = cJSON_AddObjectToObject(o, "rms_residual_s");
        for (int p = 0; p < QD_COST_NPHASES; p++) cJSON_AddNumberToObject(r, qd_cost_phase_names[p], rms[p]);
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
    int rc = 0;
    if (!f || fprintf(f, "%s\n", s) < 0) rc = qd_err_set(QD_EIO, "%s: cannot write the time model", path);
    if (f && f != stdout && fclose(f)) rc = qd_err_set(QD_EIO, "%s: cannot write the time model", path);
    free(s);
    return rc;
}

static const char *const job_keys[] = {"bytes_in",    "fwd_work",   "reduce_bytes", "reductions",
                                       "quant_total", "quant_span", "qparams",      "out_bytes"};

static double *job_field(qd_cost_job *j, int k)
{
    double *f[] = {&j->bytes_in,    &j->fwd_work,   &j->reduce_bytes, &j->reductions,
                   &j->quant_total, &j->quant_span, &j->qparams,      &j->out_bytes};
    return f[k];
}

char *qd_cost_record_json(const qd_cost_job *j, const double measured[QD_COST_NPHASES], double wall)
{
    cJSON *o = cJSON_CreateObject();
    qd_cost_job c = *j;
    cJSON_AddNumberToObject(o, "ranks", c.ranks);
    cJSON_AddNumberToObject(o, "nodes", c.nodes);
    cJSON_AddNumberToObject(o, "cores", c.cores);
    for (int k = 0; k < (int)QD_ARRAY_LEN(job_keys); k++) cJSON_AddNumberToObject(o, job_keys[k], *job_field(&c, k));
    cJSON *s = cJSON_AddObjectToObject(o, "seconds");
    for (int p = 0; p < QD_COST_NPHASES; p++) cJSON_AddNumberToObject(s, qd_cost_phase_names[p], measured[p]);
    cJSON_AddNumberToObject(o, "wall_s", wall);
    char *out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static int record_from(const cJSON *o, const char *path, int line, qd_cost_job *j, double meas[QD_COST_NPHASES],
                       double *wall)
{
    memset(j, 0, sizeof *j);
    const char *ints[] = {"ranks", "nodes", "cores"};
    int *iv[] = {&j->ranks, &j->nodes, &j->cores};
    for (int k = 0; k < 3; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, ints[k]);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1)
            return qd_err_set(QD_EFORMAT, "%s:%d: record: \"%s\" missing or < 1", path, line, ints[k]);
        *iv[k] = (int)v->valuedouble;
    }
    for (int k = 0; k < (int)QD_ARRAY_LEN(job_keys); k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, job_keys[k]);
        if (!cJSON_IsNumber(v)) return qd_err_set(QD_EFORMAT, "%s:%d: record: \"%s\" missing", path, line, job_keys[k]);
        *job_field(j, k) = v->valuedouble;
    }
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seconds"), *w = cJSON_GetObjectItemCaseSensitive(o, "wall_s");
    for (int p = 0; p < QD_COST_NPHASES; p++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(s, qd_cost_phase_names[p]);
        if (!cJSON_IsNumber(v))
            return qd_err_set(QD_EFORMAT, "%s:%d: record: \"seconds.%s\" missing", path, line, qd_cost_phase_names[p]);
        meas[p] = v->valuedouble;
    }
    *wall = cJSON_IsNumber(w) ? w->valuedouble : 0;
    return 0;
}

int qd_cost_records_read(const char *path, qd_cost_job **jobs, double (**measured)[QD_COST_NPHASES], double **wall,
                         int *n)
{
    size_t len = 0;
    char *text = NULL;
    int rc = qd_read_file(path, 64 << 20, "a file of run records", &text, &len), line = 0;
    if (rc) return rc;
    for (char *p = text, *nl; p && *p && !rc; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        if (nl) *nl = 0;
        line++;
        while (*p == ' ' || *p == '\t' || *p == '\r') p++;
        if (!*p) continue;
        cJSON *o = cJSON_Parse(p);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            rc = qd_err_set(QD_EFORMAT, "%s:%d: not a JSON object (one run record per line)", path, line);
            break;
        }
        *jobs = grow(*jobs, *n + 1, sizeof **jobs);
        *measured = grow(*measured, *n + 1, sizeof **measured);
        *wall = grow(*wall, *n + 1, sizeof **wall);
        rc = record_from(o, path, line, &(*jobs)[*n], (*measured)[*n], &(*wall)[*n]);
        cJSON_Delete(o);
        if (!rc) (*n)++;
    }
    free(text);
    return rc;
}
