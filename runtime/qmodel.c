/* runtime/qmodel.c — integer inference of a qdist model file (see qmodel.h). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5model.h"
#include "runtime/qmodel.h"
#include "kernels/gemm.h"
#include "quant/quant.h"

typedef struct {
    qd_ql_kind kind;
    qd_gemm_w8 *w8;
    qd_gemm_w4 *w4;
    float *wdq; /* dequantized [out, in] */
    uint64_t bytes;
    /* for the outlier columns: codes [out, in] unpacked, and the parameters */
    uint8_t *codes;
    float *sc;
    int32_t *zr;
    int64_t G, ng;
} qlin;

struct qd_qmodel {
    const qd_model *m;
    qlin *l;
    int n;
    float outlier; /* activation columns with |x| above this run in float (0: none) */
    double outlier_cols, outlier_calls;
    double file_bytes[2]; /* the file's tensor data: quantized records, the others */
    float *xs, *wo, *xo;  /* scratch: X without outliers, outlier weight columns, outlier inputs */
    size_t xs_cap, wo_cap, xo_cap;
    int *cols;
    float *colmax;
    size_t cols_cap;
    /* scratch for activation quantization */
    int8_t *aq;
    float *ascale;
    size_t aq_cap, as_cap;
};

const char *qd_ql_kind_name(qd_ql_kind k)
{
    static const char *n[] = {"float", "int8", "int4 x int8", "int4 x float", "dequantized float"};
    return k < QD_QL_KINDS_ ? n[k] : "?";
}

/* Linear li from record ri of the file (validated by qd_h5m_open): the best kernel its scheme
 * allows. */
static int load_linear(qd_qmodel *q, qd_h5m *f, int li, int fake, int w4f)
{
    const qd_linear *L = qd_model_linear(q->m, li);
    qlin *ql = &q->l[li];
    const char *path = qd_h5m_path(f);
    char name[200];
    snprintf(name, sizeof name, "%s.weight", L->name);
    const int ri = qd_h5m_find(f, name);
    if (ri < 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' of the model is not in the file (another model?)", path, name);
    const qd_h5m_record *r = qd_h5m_tensor(f, ri);
    const int64_t N = L->out, K = L->in;
    if (qd_h5m_numel(r) != N * K || (r->kind == QD_H5M_QUANTIZED && (qd_h5m_rows(r) != N || qd_h5m_cols(r) != K)))
        return qd_err_set(QD_ESHAPE, "%s: tensor '%s' has %lld values; the model's is [%lld, %lld] (another model?)",
                          path, name, (long long)qd_h5m_numel(r), (long long)N, (long long)K);
    if (r->kind != QD_H5M_QUANTIZED) {
        ql->kind = QD_QL_FLOAT;
        ql->bytes = (uint64_t)(N * K) * 4;
        return QD_OK;
    }
    qd_h5m_values v;
    int rc = qd_h5m_read(f, ri, &v);
    if (rc) return rc;
    const int bits = r->bits, sym = r->sym;
    const int64_t G = qd_h5m_group_cols(r), ng = r->ngroups, rb = qd_packed_row_bytes(K, bits);
    int natural = 1; /* g_idx absent or equal to c / G */
    for (int64_t c = 0; v.g_idx && c < K; c++) natural &= v.g_idx[c] == (int32_t)(c / G);
    if (!fake && bits == 8 && sym && ng == 1 && natural) {
        int8_t *w = qd_xmalloc((size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)((int)v.qweight[i] - 128);
        rc = qd_gemm_w8_create(w, N, K, K, v.scales, L->b, &ql->w8);
        free(w);
        ql->kind = QD_QL_INT8;
        if (!rc) ql->bytes = qd_gemm_w8_bytes(ql->w8);
    } else if (!fake && bits == 4 && natural) {
        int zok = 1;
        for (int64_t i = 0; i < N * ng; i++) zok &= v.zeros[i] >= 0 && v.zeros[i] <= 15;
        if (zok) {
            rc = qd_gemm_w4_create(v.qweight, N, K, rb, G, v.scales, v.zeros, L->b, &ql->w4);
            ql->kind = w4f ? QD_QL_INT4_F32 : QD_QL_INT4_S8;
            if (!rc) ql->bytes = qd_gemm_w4_bytes(ql->w4);
        }
    }
    if (!rc && (ql->kind == QD_QL_INT8 || ql->kind == QD_QL_INT4_S8) && q->outlier > 0) {
        /* what the outlier columns need: the codes and parameters (dequantized a column at a time) */
        ql->codes = qd_xmalloc((size_t)(N * K));
        qd_unpack_matrix(v.qweight, N, K, bits, ql->codes);
        ql->sc = v.scales;
        ql->zr = v.zeros;
        ql->G = G;
        ql->ng = ng;
        v.scales = NULL;
        v.zeros = NULL;
    }
    if (rc)
        rc = qd_err_wrap(rc, "%s: tensor '%s': ", path, name);
    else if (!ql->w8 && !ql->w4) {
        ql->wdq = qd_xmalloc((size_t)(N * K) * sizeof(float));
        qd_h5m_dequantize(r, &v, ql->wdq);
        ql->kind = QD_QL_DEQUANT;
        ql->bytes = (uint64_t)(N * K) * 4;
    }
    qd_h5m_values_free(&v);
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
    q->outlier = outlier > 0 ? outlier : 0;
    q->n = qd_model_num_linears(m);
    q->l = qd_xcalloc((size_t)q->n, sizeof *q->l);
    for (int li = 0; li < q->n && !rc; li++) rc = load_linear(q, f, li, fake, w4f);
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

void qd_qmodel_free(qd_qmodel *q)
{
    if (!q) return;
    for (int i = 0; i < q->n; i++) {
        qd_gemm_w8_free(q->l[i].w8);
        qd_gemm_w4_free(q->l[i].w4);
        free(q->l[i].wdq);
        free(q->l[i].codes);
        free(q->l[i].sc);
        free(q->l[i].zr);
    }
    free(q->l);
    free(q->xs);
    free(q->wo);
    free(q->xo);
    free(q->cols);
    free(q->colmax);
    free(q->aq);
    free(q->ascale);
    free(q);
}

static int grow(qd_qmodel *q, int64_t rows, int64_t K)
{
    size_t need = (size_t)(rows * K);
    if (need > q->aq_cap) {
        free(q->aq);
        q->aq = malloc(need);
        q->aq_cap = q->aq ? need : 0;
    }
    if ((size_t)rows > q->as_cap) {
        free(q->ascale);
        q->ascale = malloc((size_t)rows * sizeof(float));
        q->as_cap = q->ascale ? (size_t)rows : 0;
    }
    return q->aq && q->ascale ? QD_OK : qd_err_set(QD_ENOMEM, "eval: out of memory for activations");
}

static int apply(void *user, const qd_model *m, int li, const float *X, int64_t rows, float *Y)
{
    qd_qmodel *q = user;
    const qd_linear *L = qd_model_linear(m, li);
    qlin *ql = &q->l[li];
    const int64_t K = L->in, N = L->out;
    switch (ql->kind) {
    case QD_QL_FLOAT: return 0;
    case QD_QL_DEQUANT: qd_linear_f32(X, rows, L->in, ql->wdq, L->b, L->out, Y); return 1;
    case QD_QL_INT4_F32: qd_gemm_w4_f32(X, K, rows, ql->w4, Y, N); return 1;
    case QD_QL_INT8:
    case QD_QL_INT4_S8: {
        int rc = grow(q, rows, K);
        if (rc) return rc;
        int no = 0;
        if (q->outlier > 0 && ql->codes) {
            /* mixed-precision decomposition (as LLM.int8()): input columns holding a value above the
             * threshold are taken out of the int8 product and multiplied in float */
            if ((size_t)K > q->cols_cap) {
                free(q->cols);
                free(q->colmax);
                q->cols = qd_xmalloc((size_t)K * sizeof *q->cols);
                q->colmax = qd_xmalloc((size_t)K * sizeof *q->colmax);
                q->cols_cap = (size_t)K;
            }
            float *cm = q->colmax;
            for (int64_t k = 0; k < K; k++) cm[k] = 0.0f;
            for (int64_t r = 0; r < rows; r++) { /* row order: contiguous, vectorizable */
                const float *x = X + r * K;
                for (int64_t k = 0; k < K; k++) {
                    float a = fabsf(x[k]);
                    cm[k] = a > cm[k] ? a : cm[k];
                }
            }
            for (int64_t k = 0; k < K; k++)
                if (cm[k] > q->outlier) q->cols[no++] = (int)k;
            q->outlier_cols += no;
            q->outlier_calls += 1;
        }
        if (no > 0) {
            size_t need = (size_t)(rows * K), nw = (size_t)(N * no), nx = (size_t)(rows * no);
            if (need > q->xs_cap) {
                free(q->xs);
                q->xs = qd_xmalloc(need * sizeof(float));
                q->xs_cap = need;
            }
            if (nw > q->wo_cap) {
                free(q->wo);
                q->wo = qd_xmalloc(nw * sizeof(float));
                q->wo_cap = nw;
            }
            if (nx > q->xo_cap) {
                free(q->xo);
                q->xo = qd_xmalloc(nx * sizeof(float));
                q->xo_cap = nx;
            }
            memcpy(q->xs, X, need * sizeof(float));
            for (int j = 0; j < no; j++) {
                int k = q->cols[j];
                int64_t g = k / ql->G;
                for (int64_t r = 0; r < rows; r++) {
                    q->xo[r * no + j] = X[r * K + k];
                    q->xs[r * K + k] = 0.0f;
                }
                for (int64_t n = 0; n < N; n++)
                    q->wo[n * no + j] =
                        qd_dequantize1(ql->codes[n * K + k], ql->sc[n * ql->ng + g], ql->zr[n * ql->ng + g]);
            }
            X = q->xs;
        }
        qd_quantize_rows_s8(X, rows, K, K, NULL, q->ascale, q->aq, K);
        if (ql->kind == QD_QL_INT8)
            qd_gemm_s8_f32(q->aq, K, q->ascale, rows, ql->w8, Y, N);
        else
            qd_gemm_w4_s8(q->aq, K, q->ascale, rows, ql->w4, Y, N);
        if (no > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)N, no, 1.0f, q->xo, no, q->wo, no,
                        1.0f, Y, (int)N);
        return 1;
    }
    default: return 0;
    }
}

qd_model_hooks qd_qmodel_hooks(qd_qmodel *q)
{
    qd_model_hooks h = {.user = q, .linear_apply = apply};
    return h;
}

void qd_qmodel_counts(const qd_qmodel *q, int counts[QD_QL_KINDS_])
{
    memset(counts, 0, sizeof(int) * QD_QL_KINDS_);
    for (int i = 0; i < q->n; i++) counts[q->l[i].kind]++;
}

uint64_t qd_qmodel_weight_bytes(const qd_qmodel *q)
{
    uint64_t b = 0;
    for (int i = 0; i < q->n; i++) b += q->l[i].bytes;
    return b;
}

double qd_qmodel_outlier_cols(const qd_qmodel *q)
{
    return q->outlier_calls > 0 ? q->outlier_cols / q->outlier_calls : 0;
}
