/* export/source.c — the model file as the exporters read it (see source.h). Reads through
 * collective/h5model (qd_h5m_*), which validates the whole file when it opens it; nothing else in
 * export/ opens a model file. */
#include "export/source.h"

#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "common/qd_common.h"
#include "model/model.h"
#include "quant/quant.h"

struct qd_xs {
    qd_h5m *f;
    qd_xs_tensor *t;
    char (*unknown)[160];
    int n;
    qd_actrec act;
    int have_act;
};

/* The datasets of the file's table that the exporters know how to carry; any other one a record
 * holds (a method's codebook, say) is listed in `unknown`, so that an exporter refuses the record by
 * name instead of dropping what it does not understand. */
static const char *const known_datasets[] = {
    QD_H5M_QWEIGHT, QD_H5M_SCALES, QD_H5M_ZEROS,    QD_H5M_G_IDX,   QD_H5M_CODEBOOK,  QD_H5M_DATA,
    QD_H5M_RAW,     QD_H5M_MASK,   QD_H5M_NM_INDEX, QD_H5M_NZ_DATA, QD_H5M_NZ_QWEIGHT}; /* pruned: read dense */

static void list_unknown(const qd_h5m_record *r, char *out, size_t cap)
{
    int nf;
    const qd_h5m_field *fl = qd_h5m_fields(&nf);
    out[0] = 0;
    for (int i = 0; i < nf; i++) {
        if (fl[i].place != QD_H5M_TENSOR_DATASET || !qd_h5m_record_has(r, fl[i].name)) continue;
        int known = 0;
        for (size_t k = 0; k < QD_ARRAY_LEN(known_datasets); k++) known |= !strcmp(fl[i].name, known_datasets[k]);
        if (known) continue;
        size_t l = strlen(out);
        snprintf(out + l, cap - l, "%s%s", l ? ", " : "", fl[i].name);
    }
}

int qd_xs_open(const char *path, qd_xs **out)
{
    *out = NULL;
    qd_h5m *f;
    const qd_h5m_open_opts oo = {.arch_known = qd_model_type_known};
    int rc = qd_h5m_open(path, &oo, &f);
    if (rc) return rc;
    qd_xs *s = qd_xcalloc(1, sizeof *s);
    s->f = f;
    s->n = qd_h5m_num_tensors(f);
    s->t = qd_xcalloc((size_t)(s->n ? s->n : 1), sizeof *s->t);
    s->unknown = qd_xcalloc((size_t)(s->n ? s->n : 1), sizeof *s->unknown);
    for (int i = 0; i < s->n; i++) {
        const qd_h5m_record *r = qd_h5m_tensor(f, i);
        qd_xs_tensor *t = &s->t[i];
        t->name = r->name;
        t->kind = r->kind == QD_H5M_QUANTIZED ? QD_XS_QUANT : r->kind == QD_H5M_FLOAT ? QD_XS_FLOAT : QD_XS_RAW;
        t->ndim = r->zero_d ? 0 : r->ndim;
        memcpy(t->shape, r->shape, sizeof t->shape);
        t->orig_dtype = r->orig_dtype;
        t->method = r->method;
        t->bits = r->bits;
        t->sym = r->sym;
        t->act_order = r->act_order;
        t->pruned = r->sparsity[0] != 0;
        t->sparsity = r->sparsity;
        list_unknown(r, s->unknown[i], sizeof s->unknown[i]);
        t->unknown = s->unknown[i];
        if (t->kind == QD_XS_QUANT) {
            t->G = qd_h5m_group_cols(r);
            t->ngroups = r->ngroups;
            t->per_tensor = r->gran == QD_GRAN_TENSOR;
            t->codebook = qd_h5m_is_codebook(r);
        }
    }
    *out = s;
    return QD_OK;
}

void qd_xs_close(qd_xs *s)
{
    if (!s) return;
    qd_h5m_close(s->f);
    if (s->have_act) qd_actrec_free(&s->act);
    free(s->t);
    free(s->unknown);
    free(s);
}

const char *qd_xs_path(const qd_xs *s) { return qd_h5m_path(s->f); }
const char *qd_xs_model_config(const qd_xs *s) { return qd_h5m_info_of(s->f)->model_config; }
const char *qd_xs_quant_config(const qd_xs *s) { return qd_h5m_info_of(s->f)->quant_config; }
int qd_xs_count(const qd_xs *s) { return s->n; }
const qd_xs_tensor *qd_xs_tensor_at(const qd_xs *s, int i)
{
    QD_ASSERT(i >= 0 && i < s->n);
    return &s->t[i];
}
int qd_xs_find(const qd_xs *s, const char *name) { return qd_h5m_find(s->f, name); }

int64_t qd_xs_numel(const qd_xs_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

void qd_xs_quant_free(qd_xs_quant *q)
{
    free(q->codes);
    free(q->scales);
    free(q->zeros);
    free(q->g_idx);
    free(q->codebook);
    memset(q, 0, sizeof *q);
}

int qd_xs_read_quant(qd_xs *s, int i, qd_xs_quant *q)
{
    memset(q, 0, sizeof *q);
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    if (t->kind != QD_XS_QUANT)
        return qd_err_set(QD_EINVAL, "%s: tensor '%s' is not quantized", qd_xs_path(s), t->name);
    qd_h5m_values v;
    int rc = qd_h5m_read(s->f, i, &v); /* checked when the file was opened: sizes, scales, zeros, g_idx */
    if (rc) return rc;
    const int64_t R = t->shape[0], C = t->shape[1];
    q->scales = v.scales;
    q->zeros = v.zeros;
    q->g_idx = v.g_idx;
    q->codebook = v.codebook;
    v.scales = NULL;
    v.zeros = NULL;
    v.g_idx = NULL;
    v.codebook = NULL;
    if (q->codebook) { /* no zero points: h5model fills 2^(bits-1) for every symmetric record */
        free(q->zeros);
        q->zeros = NULL;
    }
    if (q->g_idx) {
        int natural = 1;
        for (int64_t c = 0; c < C; c++) natural &= q->g_idx[c] == (int32_t)(c / t->G);
        if (natural) {
            free(q->g_idx);
            q->g_idx = NULL;
        }
    }
    q->codes = qd_xmalloc((size_t)(R * C));
    qd_unpack_matrix(v.qweight, R, C, t->bits, q->codes);
    qd_h5m_values_free(&v);
    return QD_OK;
}

int qd_xs_read_float(qd_xs *s, int i, float **out)
{
    *out = NULL;
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    if (t->kind == QD_XS_RAW)
        return qd_err_set(QD_EDTYPE, "%s: tensor '%s' is not a float tensor", qd_xs_path(s), t->name);
    qd_h5m_values v;
    int rc = qd_h5m_read(s->f, i, &v);
    if (rc) return rc;
    if (t->kind == QD_XS_FLOAT) {
        *out = v.data;
        v.data = NULL;
    } else {
        const int64_t n = qd_xs_numel(t);
        *out = qd_xmalloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        qd_h5m_dequantize(qd_h5m_tensor(s->f, i), &v, *out);
    }
    qd_h5m_values_free(&v);
    return QD_OK;
}

int qd_xs_read_raw(qd_xs *s, int i, uint8_t **out, int64_t *n)
{
    const qd_xs_tensor *t = qd_xs_tensor_at(s, i);
    if (t->kind != QD_XS_RAW)
        return qd_err_set(QD_EINVAL, "%s: tensor '%s' is not a raw record", qd_xs_path(s), t->name);
    qd_h5m_values v;
    int rc = qd_h5m_read(s->f, i, &v);
    if (rc) return rc;
    *out = v.raw;
    *n = qd_h5m_tensor(s->f, i)->raw_bytes;
    v.raw = NULL;
    qd_h5m_values_free(&v);
    return QD_OK;
}

const qd_actrec *qd_xs_activations(qd_xs *s)
{
    if (!s->have_act) {
        int rc = qd_h5m_read_activations(s->f, &s->act);
        if (rc == QD_ENOTFOUND) {
            qd_err_set(QD_ENOTFOUND,
                       "%s: the file has no static activation scales (/activations): quantize it with --activations "
                       "static --calib DATA",
                       qd_xs_path(s));
            return NULL;
        }
        if (rc) return NULL;
        s->have_act = 1;
    }
    return &s->act;
}

int qd_xs_act_find(const qd_actrec *r, const char *name)
{
    for (int i = 0; i < r->n; i++)
        if (!strncmp(r->name[i], name, QD_ACTQ_NAME_LEN)) return i;
    return -1;
}
