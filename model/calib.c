/* model/calib.c — exact, order-free calibration statistics (see calib.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/calib.h"

struct qd_calib {
    const qd_model *m;
    qd_calib_phase phase;
    qd_calib_group *g;
    int ng;
    int *by_group; /* model group -> index in g, or -1 */
    int nmodel_groups;
    int max_in;
    double *chunk;   /* [QD_CALIB_CHUNK, max_in] grid values */
    double *scratch; /* [QD_CALIB_PANEL, max_in] one row panel of a chunk's products */
    double *mul;     /* [max_in] grid multipliers of the group being fed */
};

int qd_calib_new(const qd_model *m, const uint8_t *selected, qd_calib **out)
{
    *out = NULL;
    qd_calib *c = qd_xcalloc(1, sizeof *c);
    c->m = m;
    c->phase = QD_CALIB_ABSMAX;
    c->nmodel_groups = qd_model_num_groups(m);
    c->by_group = qd_xmalloc((size_t)c->nmodel_groups * sizeof *c->by_group);
    c->g = qd_xcalloc((size_t)c->nmodel_groups, sizeof *c->g);
    for (int mg = 0; mg < c->nmodel_groups; mg++) {
        c->by_group[mg] = -1;
        if (selected && !selected[mg]) continue;
        qd_calib_group *g = &c->g[c->ng];
        g->group = mg;
        g->first_linear = qd_model_group_first(m, mg);
        g->in = qd_model_linear(m, g->first_linear)->in;
        g->absmax = calloc((size_t)g->in, sizeof *g->absmax);
        g->exp = calloc((size_t)g->in, sizeof *g->exp);
        g->acc = calloc((size_t)qd_calib_acc_len(g->in), sizeof *g->acc);
        if (!g->absmax || !g->exp || !g->acc) {
            c->ng++;
            qd_calib_free(c);
            return qd_err_set(QD_ENOMEM, "calibration: out of memory for the statistics of '%s' (%d inputs)",
                              qd_model_linear(m, g->first_linear)->name, g->in);
        }
        if (g->in > c->max_in) c->max_in = g->in;
        c->by_group[mg] = c->ng++;
    }
    if (c->ng) {
        c->chunk = malloc((size_t)QD_CALIB_CHUNK * (size_t)c->max_in * sizeof *c->chunk);
        c->scratch = malloc((size_t)QD_MIN(QD_CALIB_PANEL, c->max_in) * (size_t)c->max_in * sizeof *c->scratch);
        c->mul = malloc((size_t)c->max_in * sizeof *c->mul);
        if (!c->chunk || !c->scratch || !c->mul) {
            qd_calib_free(c);
            return qd_err_set(QD_ENOMEM, "calibration: out of memory for the accumulation buffers");
        }
    }
    *out = c;
    return QD_OK;
}

void qd_calib_free(qd_calib *c)
{
    if (!c) return;
    for (int i = 0; i < c->ng; i++) {
        free(c->g[i].absmax);
        free(c->g[i].exp);
        free(c->g[i].acc);
    }
    free(c->g);
    free(c->by_group);
    free(c->chunk);
    free(c->scratch);
    free(c->mul);
    free(c);
}

qd_calib_phase qd_calib_get_phase(const qd_calib *c) { return c->phase; }
int qd_calib_num_groups(const qd_calib *c) { return c->ng; }
qd_calib_group *qd_calib_group_at(qd_calib *c, int i)
{
    QD_ASSERT(i >= 0 && i < c->ng);
    return &c->g[i];
}
qd_calib_group *qd_calib_find(qd_calib *c, int mg)
{
    if (mg < 0 || mg >= c->nmodel_groups || c->by_group[mg] < 0) return NULL;
    return &c->g[c->by_group[mg]];
}

uint64_t qd_calib_bytes(const qd_calib *c)
{
    uint64_t b = 0;
    for (int i = 0; i < c->ng; i++)
        b += (c->g[i].acc ? (uint64_t)qd_calib_acc_len(c->g[i].in) * 8 : 0) + (uint64_t)c->g[i].in * 8;
    return b + (uint64_t)c->max_in * (uint64_t)c->max_in * 8 + (uint64_t)QD_CALIB_CHUNK * (uint64_t)c->max_in * 8;
}

void qd_calib_begin_accumulate(qd_calib *c)
{
    for (int i = 0; i < c->ng; i++) {
        qd_calib_group *g = &c->g[i];
        for (int k = 0; k < g->in; k++) {
            int e = 0;
            if (g->absmax[k] > 0) {
                (void)frexpf(g->absmax[k], &e); /* absmax = f 2^e, f in [0.5, 1): 2^e > absmax */
            }
            g->exp[k] = e;
        }
        memset(g->acc, 0, (size_t)qd_calib_acc_len(g->in) * sizeof *g->acc);
        g->rows = 0;
    }
    c->phase = QD_CALIB_ACCUMULATE;
}

/* Add the products of the first n rows of the chunk buffer to the group's integer sums (the
 * upper triangle), one panel of QD_CALIB_PANEL rows at a time: the scratch is a panel, not
 * in x in doubles (537 MB at 8192 inputs). Every entry is a sum of at most QD_CALIB_CHUNK exact
 * integer products below 2^53, so the panels give the bits one dsyrk gives. */
static void flush_chunk(qd_calib *c, qd_calib_group *g, int n)
{
    if (n == 0) return;
    const int in = g->in;
    for (int i0 = 0; i0 < in; i0 += QD_CALIB_PANEL) {
        const int p = QD_MIN(QD_CALIB_PANEL, in - i0), w = in - i0;
        cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p, w, n, 1.0, c->chunk + i0, in, c->chunk + i0, in, 0.0,
                    c->scratch, w);
        for (int i = 0; i < p; i++) {
            const double *s = c->scratch + (int64_t)i * w;
            int64_t *a = g->acc + qd_calib_acc_index(in, i0 + i, i0); /* row i0 + i, shifted to column i0 */
            for (int j = i; j < w; j++) a[j] += (int64_t)s[j];        /* (i0 + i, i0 + j) */
        }
    }
}

static int on_input(void *user, const qd_model *m, int li, const float *X, int64_t rows, const uint8_t *valid)
{
    qd_calib *c = user;
    const qd_linear *L = qd_model_linear(m, li);
    qd_calib_group *g = qd_calib_find(c, L->input_group);
    if (!g) return QD_OK;
    const int in = g->in;
    if (c->phase == QD_CALIB_ABSMAX) {
        for (int64_t r = 0; r < rows; r++) {
            if (valid && !valid[r]) continue;
            const float *x = X + r * in;
            for (int k = 0; k < in; k++) {
                float a = fabsf(x[k]);
                if (!(a <= 3.4e38f))
                    return qd_err_set(QD_ENONFINITE,
                                      "calibration: the input of '%s' holds a non-finite value (channel %d)", L->name,
                                      k);
                if (a > g->absmax[k]) g->absmax[k] = a;
            }
            g->rows++;
        }
        return QD_OK;
    }
    /* accumulate: put rows on the grid, dsyrk per chunk */
    double *mul = c->mul;
    for (int k = 0; k < in; k++) mul[k] = ldexp(1.0, QD_CALIB_BITS - g->exp[k]);
    const double lim = ldexp(1.0, QD_CALIB_BITS);
    int n = 0;
    for (int64_t r = 0; r < rows; r++) {
        if (valid && !valid[r]) continue;
        const float *x = X + r * in;
        double *q = c->chunk + (int64_t)n * in;
        for (int k = 0; k < in; k++) {
            double v = rint((double)x[k] * mul[k]); /* exact scaling by a power of two, then round */
            if (!(fabs(v) <= lim))
                return qd_err_set(QD_EMISMATCH,
                                  "calibration: the input of '%s' (channel %d) exceeds the range of the "
                                  "first pass; the two passes saw different data",
                                  L->name, k);
            q[k] = v;
        }
        g->rows++;
        if (++n == QD_CALIB_CHUNK) {
            flush_chunk(c, g, n);
            n = 0;
        }
    }
    flush_chunk(c, g, n);
    return QD_OK;
}

qd_model_hooks qd_calib_hooks(qd_calib *c)
{
    qd_model_hooks h = {.user = c, .linear_input = on_input, .linear_apply = NULL};
    return h;
}

/* Entry (i, j >= i) of H in double. */
static inline double h_entry(const qd_calib_group *g, double f, int i, int j)
{
    return f * ldexp((double)g->acc[qd_calib_acc_index(g->in, i, j)], g->exp[i] + g->exp[j] - 2 * QD_CALIB_BITS);
}

static int hessian_check(const qd_calib_group *g)
{
    QD_ASSERT(g->acc);
    if (g->rows <= 0) return qd_err_set(QD_EINVAL, "calibration: no token reached input group %d", g->group);
    return QD_OK;
}

int qd_calib_hessian(const qd_calib_group *g, double *H)
{
    int rc = hessian_check(g);
    if (rc) return rc;
    const int in = g->in;
    const double f = 2.0 / (double)g->rows;
    for (int i = 0; i < in; i++)
        for (int j = i; j < in; j++) H[(int64_t)i * in + j] = H[(int64_t)j * in + i] = h_entry(g, f, i, j);
    return QD_OK;
}

int qd_calib_hessian_f32(const qd_calib_group *g, float *H)
{
    int rc = hessian_check(g);
    if (rc) return rc;
    const int in = g->in;
    const double f = 2.0 / (double)g->rows;
    for (int i = 0; i < in; i++)
        for (int j = i; j < in; j++) H[(int64_t)i * in + j] = H[(int64_t)j * in + i] = (float)h_entry(g, f, i, j);
    return QD_OK;
}

void qd_calib_release(qd_calib_group *g)
{
    free(g->acc);
    g->acc = NULL;
}
