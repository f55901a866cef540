/* runtime/qmodel.c — the Linears (and quantized embeddings) of a qdist model file, packed once
 * for the inference engine (see qmodel.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
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
    double file_bytes[2]; /* the file's tensor data: quantized records, the others */
};

const char *qd_ql_kind_name(qd_ql_kind k)
{
    static const char *n[] = {"float",
                              "int8",
                              "int4 x int8",
                              "int4 x float",
                              "dequantized float",
                              "codebook lookup",
                              "codebook on an int8 grid x int8",
                              "int8 2:4 sparse"};
    return k < QD_QL_KINDS_ ? n[k] : "?";
}

/* What a quantized tensor group holds, read. */
typedef struct {
    int bits, sym;
    int64_t N, K, G, ng, rb;
    uint8_t *packed;
    float *sc;
    int32_t *zr;
    int32_t *gi;
    float *smooth;
    float *codebook; /* K-means records: levels [N][ng][2^bits]; scales and zeros are NULL */
    int sparse24;    /* pruned 2:4 (nm_n 2, nm_m 4) */
} qtensor;

static void qtensor_free(qtensor *t)
{
    free(t->packed);
    free(t->sc);
    free(t->zr);
    free(t->gi);
    free(t->smooth);
    free(t->codebook);
    memset(t, 0, sizeof *t);
}

/* 1: a quantized tensor read into t; 0: the file keeps it in float; negative: an error. The
 * file was validated by qd_h5m_open (datasets, shapes, scales, zeros, g_idx, smooth). */
static int read_qtensor(qd_h5m *f, const char *name, int64_t N, int64_t K, qtensor *t)
{
    memset(t, 0, sizeof *t);
    const char *path = qd_h5m_path(f);
    const int ri = qd_h5m_find(f, name);
    if (ri < 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' of the model is not in the file (another model?)", path, name);
    const qd_h5m_record *r = qd_h5m_tensor(f, ri);
    if (qd_h5m_numel(r) != N * K || (r->kind == QD_H5M_QUANTIZED && (qd_h5m_rows(r) != N || qd_h5m_cols(r) != K)))
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has %lld values; the model's is [%lld, %lld] (another model?)",
                          path, name, (long long)qd_h5m_numel(r), (long long)N, (long long)K);
    if (r->kind != QD_H5M_QUANTIZED) return 0;
    qd_h5m_values v;
    int rc = qd_h5m_read(f, ri, &v);
    if (rc) return rc;
    t->N = N;
    t->K = K;
    t->bits = r->bits;
    t->sym = r->sym;
    t->G = qd_h5m_group_cols(r);
    t->ng = r->ngroups;
    t->rb = qd_packed_row_bytes(K, t->bits);
    t->packed = v.qweight;
    t->sc = v.scales;
    t->zr = v.zeros; /* symmetric records: 2^(bits-1) */
    t->gi = v.g_idx;
    t->codebook = v.codebook;
    t->sparse24 = r->nm_n == 2 && r->nm_m == 4;
    v.qweight = NULL, v.scales = NULL, v.zeros = NULL, v.g_idx = NULL, v.codebook = NULL;
    qd_h5m_values_free(&v);
    if (qd_h5m_record_has(r, QD_H5M_SMOOTH)) {
        int64_t n = 0;
        if ((rc = qd_h5m_read_field(f, ri, QD_H5M_SMOOTH, (void **)&t->smooth, &n))) {
            qtensor_free(t);
            return rc;
        }
    }
    return 1;
}

/* The float weights of a quantized tensor: scales and zeros, or looked up in its codebook
 * (kernels.h lut_row). */
static void qtensor_dequantize(const qtensor *t, float *out)
{
    const int64_t N = t->N, K = t->K, L = (int64_t)1 << t->bits;
    uint8_t *codes = qd_xmalloc((size_t)(N * K > 0 ? N * K : 1));
    qd_unpack_matrix(t->packed, N, K, t->bits, codes);
    if (t->codebook) {
        for (int64_t n = 0; n < N; n++)
            qd_kernels()->lut_row(codes + n * K, K, t->G, (int)L, t->codebook + n * t->ng * L, out + n * K);
    } else {
        qd_qparams p = {.rows = N,
                        .cols = K,
                        .ngroups = t->ng,
                        .group_size = t->G,
                        .bits = t->bits,
                        .sym = t->sym,
                        .gran = t->G < K ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                        .scales = t->sc,
                        .zeros = t->zr};
        qd_dequantize(codes, &p, t->gi, out);
    }
    free(codes);
}

/* Which kernel runs codebook records: QD_CODEBOOK_KERNEL=int8 or lut (the default, see qmodel.h). */
static qd_ql_kind codebook_kind(void)
{
    const char *k = getenv("QD_CODEBOOK_KERNEL");
    return k && !strcmp(k, "int8") ? QD_QL_CB_INT8 : QD_QL_LUT;
}

/* A codebook record packed once for the engine. LUT: every weight looked up from its row's
 * levels (kernels.h lut_row, a row at a time) into the float GEMM's packing, so the product is
 * the float GEMM of the looked-up weights; CB_INT8: each row's levels snapped to an int8 grid
 * (scale max|level| / 127) and the codes expanded into int8 weights for the integer GEMM. */
static int load_codebook(qd_qlinear *ql, const qtensor *t, const float *bias, int layout)
{
    const int64_t N = t->N, K = t->K, L = (int64_t)1 << t->bits, per_row = t->ng * L;
    uint8_t *codes = qd_xmalloc((size_t)(N * K > 0 ? N * K : 1));
    qd_unpack_matrix(t->packed, N, K, t->bits, codes);
    int rc;
    ql->kind = codebook_kind();
    if (ql->kind == QD_QL_LUT) {
        float *w = qd_xmalloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(float));
        qtensor_dequantize(t, w);
        rc = qd_gemm_wf_create(w, N, K, K, bias, &ql->wf);
        free(w);
        if (!rc) ql->bytes = qd_gemm_wf_bytes(ql->wf);
    } else {
        float *sc = qd_xmalloc((size_t)(N > 0 ? N : 1) * sizeof(float));
        int8_t *w = qd_xmalloc((size_t)(N * K > 0 ? N * K : 1));
        int8_t *lv = qd_xmalloc((size_t)per_row);
        for (int64_t n = 0; n < N; n++) {
            const float *c = t->codebook + n * per_row;
            float mx = 0;
            for (int64_t k = 0; k < per_row; k++) mx = fabsf(c[k]) > mx ? fabsf(c[k]) : mx;
            sc[n] = mx > 0 ? mx / 127.0f : 1.0f;
            for (int64_t k = 0; k < per_row; k++) lv[k] = (int8_t)fmaxf(-127.0f, fminf(127.0f, rintf(c[k] / sc[n])));
            for (int64_t k = 0; k < K; k++) w[n * K + k] = lv[(k / t->G) * L + codes[n * K + k]];
        }
        rc = qd_gemm_w8_create_layout(layout, w, N, K, K, sc, bias, &ql->w8);
        free(lv);
        free(w);
        free(sc);
        if (!rc) ql->bytes = qd_gemm_w8_bytes(ql->w8);
    }
    free(codes);
    return rc;
}

static int load_linear(qd_qmodel *q, qd_h5m *f, int li, int fake, int w4f)
{
    const qd_linear *L = qd_model_linear(q->m, li);
    qd_qlinear *ql = &q->l[li];
    char name[200];
    snprintf(name, sizeof name, "%s.weight", L->name);
    const int64_t N = L->out, K = L->in;
    qtensor t;
    const char *path = qd_h5m_path(f);
    int rc = read_qtensor(f, name, N, K, &t);
    if (rc < 0) return rc;
    if (rc == 0) { /* the file's float values, not the checkpoint's: a pruned float record
                    * (--prune-only) differs from the source weights */
        qd_h5m_values v;
        ql->kind = QD_QL_FLOAT;
        if ((rc = qd_h5m_read(f, qd_h5m_find(f, name), &v))) return rc;
        rc = qd_gemm_wf_create(v.data, N, K, K, L->b, &ql->wf);
        qd_h5m_values_free(&v);
        if (!rc) ql->bytes = qd_gemm_wf_bytes(ql->wf);
        return rc ? qd_err_wrap(rc, "%s: tensor '%s': ", path, name) : QD_OK;
    }
    rc = QD_OK;
    int natural = 1; /* g_idx absent or equal to c / G */
    for (int64_t c = 0; t.gi && c < K; c++) natural &= t.gi[c] == (int32_t)(c / t.G);
    const int layout = qd_kernels()->layout;
    if (t.codebook && !fake) {
        rc = load_codebook(ql, &t, L->b, layout);
    } else if (!t.codebook && !fake && t.bits == 8 && t.sym && t.ng == 1 && natural) {
        int8_t *w = qd_xmalloc((size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)((int)t.packed[i] - 128);
        rc = qd_gemm_w8_create_layout(layout, w, N, K, K, t.sc, L->b, &ql->w8);
        /* 2:4 records: also the compact form for the 2:4 kernel, where this CPU has its vector
         * version (the engine picks per call; without it they run the dense GEMM with their zeros) */
        if (!rc && t.sparse24 && qd_gemm_u24_isa()) rc = qd_gemm_u24_create(w, N, K, K, t.sc, L->b, &ql->w24);
        free(w);
        ql->kind = t.sparse24 ? QD_QL_INT8_24 : QD_QL_INT8;
        if (!rc) ql->bytes = qd_gemm_w8_bytes(ql->w8) + (ql->w24 ? qd_gemm_u24_bytes(ql->w24) : 0);
    } else if (!t.codebook && !fake && t.bits == 4 && natural) {
        int zok = 1;
        for (int64_t i = 0; i < N * t.ng; i++) zok &= t.zr[i] >= 0 && t.zr[i] <= 15;
        if (zok) {
            rc = qd_gemm_w4_create_layout(w4f ? QD_GEMM_LAYOUT_I16 : layout, t.packed, N, K, t.rb, t.G, t.sc, t.zr,
                                          L->b, &ql->w4);
            ql->kind = w4f ? QD_QL_INT4_F32 : QD_QL_INT4_S8;
            if (!rc) ql->bytes = qd_gemm_w4_bytes(ql->w4);
        }
    }
    if (!rc && !ql->w8 && !ql->w4 && !ql->wf) {
        float *wdq = qd_xmalloc((size_t)(N * K > 0 ? N * K : 1) * sizeof(float));
        qtensor_dequantize(&t, wdq);
        if (t.smooth) /* the file holds W diag(s); the float path multiplies unsmoothed inputs */
            for (int64_t n = 0; n < N; n++)
                for (int64_t k = 0; k < K; k++) wdq[n * K + k] /= t.smooth[k];
        rc = qd_gemm_wf_create(wdq, N, K, K, L->b, &ql->wf);
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
static int load_embedding(qd_qmodel *q, qd_h5m *f)
{
    const qd_model_config *c = qd_model_cfg(q->m);
    qd_model_tensors mt;
    qd_model_get_tensors(q->m, &mt);
    if (c->arch != QD_ARCH_BERT || !mt.word_emb_name[0] || qd_h5m_find(f, mt.word_emb_name) < 0) return QD_OK;
    qtensor t;
    const char *path = qd_h5m_path(f);
    int rc = read_qtensor(f, mt.word_emb_name, c->vocab_size, c->embed_size, &t);
    if (rc <= 0) return rc;
    if ((t.bits != 8 && t.bits != 4) || t.ng != 1 || t.gi || t.smooth || t.codebook) {
        rc = qd_err_set(QD_EUNSUPPORTED,
                        "%s: tensor '%s': quantized embeddings must be 8 or 4 bits per row with scales (found %d "
                        "bits, %lld groups per row%s)",
                        path, mt.word_emb_name, t.bits, (long long)t.ng, t.codebook ? ", a codebook" : "");
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
static int load_small_table(qd_h5m *f, const char *name, int64_t rows, int64_t cols, float **out)
{
    *out = NULL;
    if (qd_h5m_find(f, name) < 0) return QD_OK;
    qtensor t;
    int rc = read_qtensor(f, name, rows, cols, &t);
    if (rc <= 0) return rc;
    *out = qd_xmalloc((size_t)(rows * cols) * sizeof(float));
    qtensor_dequantize(&t, *out);
    qtensor_free(&t);
    return QD_OK;
}

static int load_small_tables(qd_qmodel *q, qd_h5m *f)
{
    const qd_model_config *c = qd_model_cfg(q->m);
    qd_model_tensors mt;
    qd_model_get_tensors(q->m, &mt);
    if (c->arch != QD_ARCH_BERT || !mt.word_emb_name[0]) return QD_OK;
    char name[160];
    const size_t pre = strlen(mt.word_emb_name) - strlen("embeddings.word_embeddings.weight");
    snprintf(name, sizeof name, "%.*sembeddings.position_embeddings.weight", (int)pre, mt.word_emb_name);
    int rc = load_small_table(f, name, c->max_position, c->embed_size, &q->pos);
    snprintf(name, sizeof name, "%.*sembeddings.token_type_embeddings.weight", (int)pre, mt.word_emb_name);
    if (!rc && mt.type_emb) rc = load_small_table(f, name, c->type_vocab, c->embed_size, &q->type);
    q->small_bytes = ((q->pos ? (uint64_t)c->max_position : 0) + (q->type ? (uint64_t)c->type_vocab : 0)) *
                     (uint64_t)c->embed_size * 4;
    return rc;
}

int qd_qmodel_load(const char *path, const qd_model *m, int fake, int w4f, float outlier, qd_qmodel **out)
{
    *out = NULL;
    qd_h5m *f = NULL;
    const qd_h5m_open_opts o = {.arch_known = qd_model_type_known};
    int rc = qd_h5m_open(path, &o, &f);
    if (rc) return rc;
    const char *arch = qd_h5m_info_of(f)->arch, *mine = qd_model_cfg(m)->model_type;
    if (strcmp(arch, mine)) {
        rc = qd_err_set(QD_EMISMATCH,
                        "%s: arch '%s': the file was quantized from another architecture than the "
                        "model's ('%s')",
                        path, arch, mine);
        qd_h5m_close(f);
        return rc;
    }
    qd_qmodel *q = qd_xcalloc(1, sizeof *q);
    q->m = m;
    q->outlier = outlier;
    q->n = qd_model_num_linears(m);
    q->l = qd_xcalloc((size_t)q->n, sizeof *q->l);
    for (int li = 0; li < q->n && !rc; li++) rc = load_linear(q, f, li, fake, w4f);
    if (!rc) rc = load_embedding(q, f);
    if (!rc) rc = load_small_tables(q, f);
    qd_h5m_tensor_bytes(f, &q->file_bytes[0], &q->file_bytes[1]);
    qd_h5m_close(f);
    if (rc) {
        qd_qmodel_free(q);
        return rc;
    }
    *out = q;
    return QD_OK;
}

void qd_qmodel_tensor_bytes(const qd_qmodel *q, double *quantized, double *kept)
{
    *quantized = q->file_bytes[0];
    *kept = q->file_bytes[1];
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
        qd_gemm_u24_free(q->l[i].w24);
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
