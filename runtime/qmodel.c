/* runtime/qmodel.c — the Linears (and quantized embeddings) of a qdist model file, packed once
 * for the inference engine (see qmodel.h). */
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5_read.h"
#include "kernels/kernels.h"
#include "quant/quant.h"
#include "runtime/engine.h"
#include "runtime/qmodel.h"

struct qd_qmodel {
    const qd_model *m;
    float outlier;
    qd_engine *eng; /* the one-thread engine behind qd_qmodel_hooks, made on first use */
    int eng_rc;
    qd_qlinear *l;
    int n;
    qd_qembed *emb;
    float *pos, *type; /* dequantized small tables, or NULL */
    uint64_t small_bytes;
};

const char *qd_ql_kind_name(qd_ql_kind k)
{
    static const char *n[] = {"float", "int8", "int4 x int8", "int4 x float", "dequantized float"};
    return k < QD_QL_KINDS_ ? n[k] : "?";
}

/* The whole dataset, checked to hold `want` elements. */
static void *read_ds(hid_t g, const char *name, hid_t memtype, size_t elsize, int64_t want)
{
    size_t n = 0;
    void *buf = qd_h5_read_ds(g, name, memtype, elsize, &n);
    if (buf && (int64_t)n != want) {
        free(buf);
        buf = NULL;
    }
    return buf;
}

/* What a quantized tensor group holds, read and checked. */
typedef struct {
    int bits, sym;
    int64_t N, K, G, ng, rb;
    uint8_t *packed;
    float *sc;
    int32_t *zr;
    int32_t *gi;
    float *smooth;
} qtensor;

static void qtensor_free(qtensor *t)
{
    free(t->packed);
    free(t->sc);
    free(t->zr);
    free(t->gi);
    free(t->smooth);
    memset(t, 0, sizeof *t);
}

/* 1: a quantized tensor read into t; 0: the file keeps it in float; negative: an error */
static int read_qtensor(hid_t tg, const char *path, const char *name, int64_t N, int64_t K, qtensor *t)
{
    memset(t, 0, sizeof *t);
    if (H5Lexists(tg, name, H5P_DEFAULT) <= 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' of the model is not in the file (another model?)", path, name);
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return qd_err_set(QD_EFORMAT, "%s: tensor '%s' cannot be opened", path, name);
    char *kind = qd_h5_attr_text(g, "kind");
    const int quantized = kind && !strcmp(kind, "quantized");
    free(kind);
    if (!quantized) {
        H5Gclose(g);
        return 0;
    }
    t->N = N;
    t->K = K;
    t->bits = (int)qd_h5_attr_int(g, "bits", 0);
    t->sym = (int)qd_h5_attr_int(g, "sym", 1);
    const int64_t gs = qd_h5_attr_int(g, "group_size", -1);
    t->G = gs > 0 && gs < K ? gs : K;
    t->ng = (K + t->G - 1) / t->G;
    t->rb = qd_packed_row_bytes(K, t->bits);
    t->packed = qd_valid_bits(t->bits) ? read_ds(g, "qweight", H5T_NATIVE_UINT8, 1, N * t->rb) : NULL;
    t->sc = read_ds(g, "scales", H5T_NATIVE_FLOAT, 4, N * t->ng);
    t->zr = t->sym ? NULL : read_ds(g, "zeros", H5T_NATIVE_INT32, 4, N * t->ng);
    t->gi = read_ds(g, "g_idx", H5T_NATIVE_INT32, 4, K);
    const int has_smooth = H5Lexists(g, "smooth", H5P_DEFAULT) > 0;
    t->smooth = has_smooth ? read_ds(g, "smooth", H5T_NATIVE_FLOAT, 4, K) : NULL;
    H5Gclose(g);
    if (!t->packed || !t->sc || (!t->sym && !t->zr) || (has_smooth && !t->smooth)) {
        const int rc = qd_err_set(QD_EFORMAT,
                                  "%s: tensor '%s': quantized datasets missing or of the wrong size for [%lld, %lld] "
                                  "with %d bits and groups of %lld",
                                  path, name, (long long)N, (long long)K, t->bits, (long long)t->G);
        qtensor_free(t);
        return rc;
    }
    if (!t->zr) {
        t->zr = qd_xmalloc((size_t)(N * t->ng) * sizeof *t->zr);
        for (int64_t i = 0; i < N * t->ng; i++) t->zr[i] = 1 << (t->bits - 1);
    }
    for (int64_t i = 0; i < N * t->ng; i++)
        if (!(t->sc[i] >= 0 && t->sc[i] < 3.4e38f)) {
            const int rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': scale %lld is not a finite non-negative number",
                                      path, name, (long long)i);
            qtensor_free(t);
            return rc;
        }
    for (int64_t k = 0; t->smooth && k < K; k++)
        if (!(t->smooth[k] > 0 && t->smooth[k] < 3.4e38f)) {
            const int rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': smoothing factor %lld is not a positive number",
                                      path, name, (long long)k);
            qtensor_free(t);
            return rc;
        }
    return 1;
}

static int load_linear(qd_qmodel *q, hid_t tg, const char *path, int li, int fake, int w4f)
{
    const qd_linear *L = qd_model_linear(q->m, li);
    qd_qlinear *ql = &q->l[li];
    char name[200];
    snprintf(name, sizeof name, "%s.weight", L->name);
    const int64_t N = L->out, K = L->in;
    qtensor t;
    int rc = read_qtensor(tg, path, name, N, K, &t);
    if (rc <= 0) {
        ql->kind = QD_QL_FLOAT;
        ql->bytes = (uint64_t)(N * K) * 4;
        return rc;
    }
    rc = QD_OK;
    int natural = 1; /* g_idx absent or equal to c / G */
    for (int64_t c = 0; t.gi && c < K; c++) natural &= t.gi[c] == (int32_t)(c / t.G);
    const int layout = qd_kernels()->layout;
    if (!fake && t.bits == 8 && t.sym && t.ng == 1 && natural) {
        int8_t *w = qd_xmalloc((size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)((int)t.packed[i] - 128);
        rc = qd_gemm_w8_create_layout(layout, w, N, K, K, t.sc, L->b, &ql->w8);
        free(w);
        ql->kind = QD_QL_INT8;
        if (!rc) ql->bytes = qd_gemm_w8_bytes(ql->w8);
    } else if (!fake && t.bits == 4 && natural) {
        int zok = 1;
        for (int64_t i = 0; i < N * t.ng; i++) zok &= t.zr[i] >= 0 && t.zr[i] <= 15;
        if (zok) {
            rc = qd_gemm_w4_create_layout(w4f ? QD_GEMM_LAYOUT_I16 : layout, t.packed, N, K, t.rb, t.G, t.sc, t.zr,
                                          L->b, &ql->w4);
            ql->kind = w4f ? QD_QL_INT4_F32 : QD_QL_INT4_S8;
            if (!rc) ql->bytes = qd_gemm_w4_bytes(ql->w4);
        }
    }
    if (!rc && !ql->w8 && !ql->w4) {
        uint8_t *codes = qd_xmalloc((size_t)(N * K));
        float *wdq = qd_xmalloc((size_t)(N * K) * sizeof(float));
        qd_unpack_matrix(t.packed, N, K, t.bits, codes);
        qd_qparams p = {.rows = N,
                        .cols = K,
                        .ngroups = t.ng,
                        .group_size = t.G,
                        .bits = t.bits,
                        .sym = t.sym,
                        .gran = t.G < K ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                        .scales = t.sc,
                        .zeros = t.zr};
        qd_dequantize(codes, &p, t.gi, wdq);
        if (t.smooth) /* the file holds W diag(s); the float path multiplies unsmoothed inputs */
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = 0; k < K; k++) wdq[n * K + k] /= t.smooth[k];
        rc = qd_gemm_wf_create(wdq, N, K, K, L->b, &ql->wf);
        free(codes);
        free(wdq);
        ql->kind = QD_QL_DEQUANT;
        if (!rc) ql->bytes = qd_gemm_wf_bytes(ql->wf);
    } else if (!rc && t.smooth) {
        ql->smooth = t.smooth;
        t.smooth = NULL;
    }
    qtensor_free(&t);
    return rc ? qd_err_wrap(rc, "%s: tensor '%s': ", path, name) : QD_OK;
}

/* the word embeddings, when the file quantized them (per row, 8 or 4 bits) */
static int load_embedding(qd_qmodel *q, hid_t tg, const char *path)
{
    const qd_model_config *c = qd_model_cfg(q->m);
    qd_model_tensors mt;
    qd_model_get_tensors(q->m, &mt);
    if (c->arch != QD_ARCH_BERT || !mt.word_emb_name[0] || H5Lexists(tg, mt.word_emb_name, H5P_DEFAULT) <= 0)
        return QD_OK;
    qtensor t;
    int rc = read_qtensor(tg, path, mt.word_emb_name, c->vocab_size, c->embed_size, &t);
    if (rc <= 0) return rc;
    if ((t.bits != 8 && t.bits != 4) || t.ng != 1 || t.gi || t.smooth) {
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: tensor '%s': quantized embeddings must be 8 or 4 bits per row (found %d bits, %lld "
                        "groups per row)",
                        path, mt.word_emb_name, t.bits, (long long)t.ng);
        qtensor_free(&t);
        return rc;
    }
    qd_qembed *e = qd_xcalloc(1, sizeof *e);
    e->bits = t.bits;
    e->rows = t.N;
    e->cols = t.K;
    e->row_bytes = t.rb;
    e->codes = t.packed;
    e->scales = t.sc;
    e->zeros = t.zr;
    e->bytes = (uint64_t)(t.N * t.rb) + (uint64_t)t.N * 8;
    t.packed = NULL, t.sc = NULL, t.zr = NULL;
    qtensor_free(&t);
    q->emb = e;
    return QD_OK;
}

/* a small quantized table of the file (position, token type), dequantized; *out NULL when the
 * file keeps it in float or does not have it */
static int load_small_table(hid_t tg, const char *path, const char *name, int64_t rows, int64_t cols, float **out)
{
    *out = NULL;
    if (H5Lexists(tg, name, H5P_DEFAULT) <= 0) return QD_OK;
    qtensor t;
    int rc = read_qtensor(tg, path, name, rows, cols, &t);
    if (rc <= 0) return rc;
    uint8_t *codes = qd_xmalloc((size_t)(rows * cols));
    qd_unpack_matrix(t.packed, rows, cols, t.bits, codes);
    qd_qparams p = {.rows = rows,
                    .cols = cols,
                    .ngroups = t.ng,
                    .group_size = t.G,
                    .bits = t.bits,
                    .sym = t.sym,
                    .gran = t.G < cols ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                    .scales = t.sc,
                    .zeros = t.zr};
    *out = qd_xmalloc((size_t)(rows * cols) * sizeof(float));
    qd_dequantize(codes, &p, t.gi, *out);
    free(codes);
    qtensor_free(&t);
    return QD_OK;
}

static int load_small_tables(qd_qmodel *q, hid_t tg, const char *path)
{
    const qd_model_config *c = qd_model_cfg(q->m);
    qd_model_tensors mt;
    qd_model_get_tensors(q->m, &mt);
    if (c->arch != QD_ARCH_BERT || !mt.word_emb_name[0]) return QD_OK;
    char name[160];
    const size_t pre = strlen(mt.word_emb_name) - strlen("embeddings.word_embeddings.weight");
    snprintf(name, sizeof name, "%.*sembeddings.position_embeddings.weight", (int)pre, mt.word_emb_name);
    int rc = load_small_table(tg, path, name, c->max_position, c->embed_size, &q->pos);
    snprintf(name, sizeof name, "%.*sembeddings.token_type_embeddings.weight", (int)pre, mt.word_emb_name);
    if (!rc && mt.type_emb) rc = load_small_table(tg, path, name, c->type_vocab, c->embed_size, &q->type);
    q->small_bytes = ((q->pos ? (uint64_t)c->max_position : 0) + (q->type ? (uint64_t)c->type_vocab : 0)) *
                     (uint64_t)c->embed_size * 4;
    return rc;
}

int qd_qmodel_load(const char *path, const qd_model *m, int fake, int w4f, float outlier, qd_qmodel **out)
{
    *out = NULL;
    H5E_auto2_t efn;
    void *edata;
    H5Eget_auto2(H5E_DEFAULT, &efn, &edata);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = QD_OK;
    if (f < 0) {
        H5Eset_auto2(H5E_DEFAULT, efn, edata);
        return qd_err_set(QD_EFORMAT, "%s: not an HDF5 file (or unreadable)", path);
    }
    char *fmt = qd_h5_attr_text(f, "format");
    hid_t tg = H5Lexists(f, "tensors", H5P_DEFAULT) > 0 ? H5Gopen2(f, "tensors", H5P_DEFAULT) : -1;
    if (!fmt || strcmp(fmt, "qdist") || tg < 0)
        rc = qd_err_set(QD_EFORMAT, "%s: not a qdist model (format attribute or /tensors missing)", path);
    free(fmt);
    qd_qmodel *q = qd_xcalloc(1, sizeof *q);
    q->m = m;
    q->outlier = outlier;
    q->n = qd_model_num_linears(m);
    q->l = qd_xcalloc((size_t)q->n, sizeof *q->l);
    for (int li = 0; li < q->n && !rc; li++) rc = load_linear(q, tg, path, li, fake, w4f);
    if (!rc) rc = load_embedding(q, tg, path);
    if (!rc) rc = load_small_tables(q, tg, path);
    if (tg >= 0) H5Gclose(tg);
    H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, efn, edata);
    if (rc) {
        qd_qmodel_free(q);
        return rc;
    }
    *out = q;
    return QD_OK;
}

static int failed_hook(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    (void)m, (void)li, (void)X, (void)rows, (void)Y;
    return ((qd_qmodel *)user)->eng_rc;
}

qd_model_hooks qd_qmodel_hooks(qd_qmodel *q)
{
    if (!q->eng && !q->eng_rc) {
        const qd_engine_opts o = {.threads = 1, .outlier = q->outlier, .profile = 0};
        q->eng_rc = qd_engine_create(q->m, q, &o, &q->eng);
    }
    if (q->eng_rc) return (qd_model_hooks){.user = q, .linear_apply = failed_hook};
    return qd_engine_hooks(q->eng);
}

double qd_qmodel_outlier_cols(const qd_qmodel *q) { return q->eng ? qd_engine_outlier_cols(q->eng) : 0.0; }

void qd_qmodel_free(qd_qmodel *q)
{
    if (!q) return;
    qd_engine_free(q->eng);
    for (int i = 0; i < q->n; i++) {
        qd_gemm_w8_free(q->l[i].w8);
        qd_gemm_w4_free(q->l[i].w4);
        qd_gemm_wf_free(q->l[i].wf);
        free(q->l[i].smooth);
    }
    if (q->emb) {
        free(q->emb->codes);
        free(q->emb->scales);
        free(q->emb->zeros);
        free(q->emb);
    }
    free(q->pos);
    free(q->type);
    free(q->l);
    free(q);
}

const qd_qlinear *qd_qmodel_linear(const qd_qmodel *q, int li)
{
    QD_ASSERT(li >= 0 && li < q->n);
    return &q->l[li];
}

const qd_qembed *qd_qmodel_embedding(const qd_qmodel *q) { return q->emb; }
const float *qd_qmodel_position_embedding(const qd_qmodel *q) { return q->pos; }
const float *qd_qmodel_type_embedding(const qd_qmodel *q) { return q->type; }

void qd_qmodel_counts(const qd_qmodel *q, int counts[QD_QL_KINDS_])
{
    memset(counts, 0, sizeof(int) * QD_QL_KINDS_);
    for (int i = 0; i < q->n; i++) counts[q->l[i].kind]++;
}

uint64_t qd_qmodel_weight_bytes(const qd_qmodel *q)
{
    uint64_t b = q->emb ? q->emb->bytes : 0;
    for (int i = 0; i < q->n; i++) b += q->l[i].bytes;
    return b;
}
