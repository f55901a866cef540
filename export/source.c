/* export/source.c — the model file as the exporters read it (see source.h). Reads through
 * collective/h5_records.h; nothing else in export/ opens a model file. */
#include "export/source.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5_records.h"
#include "common/qd_common.h"
#include "quant/quant.h"

struct qd_xs {
    qd_recfile *f;
    qd_xs_tensor *t;
    int n;
};

int qd_xs_open(const char *path, qd_xs **out)
{
    *out = NULL;
    qd_recfile *f;
    int rc = qd_recfile_open(path, &f);
    if (rc) return rc;
    qd_xs *s = qd_xcalloc(1, sizeof *s);
    s->f = f;
    s->n = qd_recfile_count(f);
    s->t = qd_xcalloc((size_t)(s->n ? s->n : 1), sizeof *s->t);
    for (int i = 0; i < s->n; i++) {
        const qd_rec *r = qd_recfile_rec(f, i);
        qd_xs_tensor *t = &s->t[i];
        t->name = r->name;
        t->kind = r->kind == QD_REC_QUANTIZED ? QD_XS_QUANT : r->kind == QD_REC_FLOAT ? QD_XS_FLOAT : QD_XS_RAW;
        t->ndim = r->ndim;
        memcpy(t->shape, r->shape, sizeof t->shape);
        t->orig_dtype = r->orig_dtype;
        t->method = r->method;
        t->bits = r->bits;
        t->sym = r->sym;
        t->act_order = r->act_order;
        t->pruned = r->has_mask;
        t->unknown = r->unknown;
        if (t->kind == QD_XS_QUANT) {
            if (t->ndim != 2 || t->shape[0] <= 0 || t->shape[1] <= 0 || !qd_valid_bits(t->bits)) {
                rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': a quantized record needs a 2-D shape and 2..8 bits", path,
                                t->name);
                break;
            }
            const int64_t cols = t->shape[1];
            t->G = r->group_size > 0 && r->group_size < cols ? r->group_size : cols;
            t->ngroups = (cols + t->G - 1) / t->G;
            t->per_tensor = !strcmp(r->granularity, "tensor");
            if (!t->sym && !r->has_zeros) {
                rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': an asymmetric record without 'zeros'", path, t->name);
                break;
            }
        }
    }
    if (rc) {
        qd_xs_close(s);
        return rc;
    }
    *out = s;
    return QD_OK;
}

void qd_xs_close(qd_xs *s)
{
    if (!s) return;
    qd_recfile_close(s->f);
    free(s->t);
    free(s);
}

const char *qd_xs_path(const qd_xs *s) { return qd_recfile_path(s->f); }
const char *qd_xs_model_config(const qd_xs *s) { return qd_recfile_attr(s->f, "model_config"); }
const char *qd_xs_quant_config(const qd_xs *s) { return qd_recfile_attr(s->f, "quant_config"); }
int qd_xs_count(const qd_xs *s) { return s->n; }
const qd_xs_tensor *qd_xs_tensor_at(const qd_xs *s, int i)
{
    QD_ASSERT(i >= 0 && i < s->n);
    return &s->t[i];
}
int qd_xs_find(const qd_xs *s, const char *name) { return qd_recfile_find(s->f, name); }

int64_t qd_xs_numel(const qd_xs_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* dataset ds of record i with exactly `want` elements */
static int read_exact(qd_xs *s, int i, const char *ds, qd_rec_type type, int64_t want, void **out)
{
    int64_t n = 0;
    int rc = qd_recfile_read(s->f, i, ds, type, out, &n);
    if (rc) return rc;
    if (n != want) {
        free(*out);
        *out = NULL;
        return qd_err_set(QD_EFORMAT, "%s: tensor '%s': dataset '%s' holds %lld values, the record implies %lld",
                          qd_xs_path(s), s->t[i].name, ds, (long long)n, (long long)want);
    }
    return QD_OK;
}

void qd_xs_quant_free(qd_xs_quant *q)
{
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    memset(q, 0, sizeof *q);
}

int qd_xs_read_quant(qd_xs *s, int i, qd_xs_quant *q)
{
    memset(q, 0, sizeof *q);
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    const char *path = qd_xs_path(s);
    if (t->kind != QD_XS_QUANT) return qd_err_set(QD_EINVAL, "%s: tensor '%s' is not quantized", path, t->name);
    const int64_t R = t->shape[0], C = t->shape[1], ng = t->ngroups, maxq = qd_maxq(t->bits);
    uint8_t *packed = NULL;
    int rc = read_exact(s, i, "qweight", QD_REC_U8, R * qd_packed_row_bytes(C, t->bits), (void **)&packed);
    if (!rc) rc = read_exact(s, i, "scales", QD_REC_F32, R * ng, (void **)&q->scales);
    if (!rc && !t->sym) rc = read_exact(s, i, "zeros", QD_REC_I32, R * ng, (void **)&q->zeros);
    const qd_rec *r = qd_recfile_rec(s->f, i);
    if (!rc && r->has_g_idx) rc = read_exact(s, i, "g_idx", QD_REC_I32, C, (void **)&q->g_idx);
    if (rc) goto fail;
    if (!q->zeros) {
        q->zeros = qd_xmalloc((size_t)(R * ng) * sizeof *q->zeros);
        for (int64_t k = 0; k < R * ng; k++) q->zeros[k] = 1 << (t->bits - 1);
    }
    for (int64_t k = 0; k < R * ng; k++) {
        if (!(isfinite(q->scales[k]) && q->scales[k] > 0)) {
            rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': scale [%lld, %lld] is %g, not a finite positive number",
                            path, t->name, (long long)(k / ng), (long long)(k % ng), (double)q->scales[k]);
            goto fail;
        }
        if (q->zeros[k] < 0 || q->zeros[k] > maxq) {
            rc = qd_err_set(QD_EFORMAT, "%s: tensor '%s': zero point [%lld, %lld] = %d is outside [0, %lld]", path,
                            t->name, (long long)(k / ng), (long long)(k % ng), (int)q->zeros[k], (long long)maxq);
            goto fail;
        }
    }
    if (q->g_idx) {
        char what[320];
        snprintf(what, sizeof what, "%s: tensor '%s': g_idx", path, t->name);
        if ((rc = qd_check_g_idx(q->g_idx, C, ng, what))) goto fail;
        int natural = 1;
        for (int64_t c = 0; c < C; c++) natural &= q->g_idx[c] == (int32_t)(c / t->G);
        if (natural) {
            free(q->g_idx);
            q->g_idx = NULL;
        }
    }
    q->codes = qd_xmalloc((size_t)(R * C));
    qd_unpack_matrix(packed, R, C, t->bits, q->codes);
    free(packed);
    return QD_OK;
fail:
    free(packed);
    qd_xs_quant_free(q);
    return rc;
}

int qd_xs_read_float(qd_xs *s, int i, float **out)
{
    *out = NULL;
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    const char *path = qd_xs_path(s);
    const int64_t n = qd_xs_numel(t);
    if (t->kind == QD_XS_RAW) return qd_err_set(QD_EDTYPE, "%s: tensor '%s' is not a float tensor", path, t->name);
    if (t->kind == QD_XS_FLOAT) {
        float *v = NULL;
        int rc = read_exact(s, i, "data", QD_REC_F32, n > 0 ? n : 1, (void **)&v);
        if (rc) return rc;
        for (int64_t k = 0; k < n; k++)
            if (!isfinite(v[k])) {
                free(v);
                return qd_err_set(QD_ENONFINITE, "%s: tensor '%s' holds a non-finite value at element %lld", path,
                                  t->name, (long long)k);
            }
        *out = v;
        return QD_OK;
    }
    qd_xs_quant q;
    int rc = qd_xs_read_quant(s, i, &q);
    if (rc) return rc;
    qd_qparams p = {.rows = t->shape[0],
                    .cols = t->shape[1],
                    .ngroups = t->ngroups,
                    .group_size = t->G,
                    .bits = t->bits,
                    .sym = t->sym,
                    .gran = t->G < t->shape[1] ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = q.scales,
                    .zeros = q.zeros};
    *out = qd_xmalloc((size_t)n * sizeof(float));
    qd_dequantize(q.codes, &p, q.g_idx, *out);
    qd_xs_quant_free(&q);
    return QD_OK;
}

int qd_xs_read_raw(qd_xs *s, int i, uint8_t **out, int64_t *n)
{
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    if (t->kind != QD_XS_RAW)
        return qd_err_set(QD_EINVAL, "%s: tensor '%s' is not a raw record", qd_xs_path(s), t->name);
    return qd_recfile_read(s->f, i, "raw", QD_REC_U8, (void **)out, n);
}
