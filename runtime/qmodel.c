/* runtime/qmodel.c — integer inference of a qdist model file (see qmodel.h). */
#include <cblas.h>
#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "collective/h5_read.h"
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
    float *xs, *wo, *xo; /* scratch: X without outliers, outlier weight columns, outlier inputs */
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

static int load_linear(qd_qmodel *q, hid_t tg, const char *path, int li, int fake, int w4f)
{
    const qd_linear *L = qd_model_linear(q->m, li);
    qlin *ql = &q->l[li];
    char name[200];
    snprintf(name, sizeof name, "%s.weight", L->name);
    if (H5Lexists(tg, name, H5P_DEFAULT) <= 0)
        return qd_err_set(QD_ENOTFOUND, "%s: tensor '%s' of the model is not in the file (another model?)", path, name);
    hid_t g = H5Gopen2(tg, name, H5P_DEFAULT);
    if (g < 0) return qd_err_set(QD_EFORMAT, "%s: tensor '%s' cannot be opened", path, name);
    char *kind = qd_h5_attr_text(g, "kind");
    int rc = QD_OK;
    const int64_t N = L->out, K = L->in;
    if (!kind || strcmp(kind, "quantized")) {
        ql->kind = QD_QL_FLOAT;
        ql->bytes = (uint64_t)(N * K) * 4;
        free(kind);
        H5Gclose(g);
        return QD_OK;
    }
    free(kind);
    int bits = (int)qd_h5_attr_int(g, "bits", 0), sym = (int)qd_h5_attr_int(g, "sym", 1);
    int64_t gs = qd_h5_attr_int(g, "group_size", -1), G = gs > 0 && gs < K ? gs : K, ng = (K + G - 1) / G;
    int64_t rb = qd_packed_row_bytes(K, bits);
    uint8_t *packed = qd_valid_bits(bits) ? read_ds(g, "qweight", H5T_NATIVE_UINT8, 1, N * rb) : NULL;
    float *sc = read_ds(g, "scales", H5T_NATIVE_FLOAT, 4, N * ng);
    int32_t *zr = sym ? NULL : read_ds(g, "zeros", H5T_NATIVE_INT32, 4, N * ng);
    int32_t *gi = read_ds(g, "g_idx", H5T_NATIVE_INT32, 4, K);
    H5Gclose(g);
    if (!packed || !sc || (!sym && !zr)) {
        rc = qd_err_set(QD_EFORMAT,
                        "%s: tensor '%s': quantized datasets missing or of the wrong size for [%lld, %lld] "
                        "with %d bits and groups of %lld",
                        path, name, (long long)N, (long long)K, bits, (long long)G);
        goto out;
    }
    if (!zr) {
        zr = qd_xmalloc((size_t)(N * ng) * sizeof *zr);
        for (int64_t i = 0; i < N * ng; i++) zr[i] = 1 << (bits - 1);
    }
    int natural = 1; /* g_idx absent or equal to c / G */
    for (int64_t c = 0; gi && c < K; c++) natural &= gi[c] == (int32_t)(c / G);
    for (int64_t i = 0; i < N * ng; i++)
        if (!(sc[i] >= 0 && sc[i] < 3.4e38f)) {
            rc = qd_err_set(QD_ENONFINITE, "%s: tensor '%s': scale %lld is not a finite non-negative number", path,
                            name, (long long)i);
            goto out;
        }
    if (!fake && bits == 8 && sym && ng == 1 && natural) {
        int8_t *w = qd_xmalloc((size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++) w[i] = (int8_t)((int)packed[i] - 128);
        rc = qd_gemm_w8_create(w, N, K, K, sc, L->b, &ql->w8);
        free(w);
        ql->kind = QD_QL_INT8;
        if (!rc) ql->bytes = qd_gemm_w8_bytes(ql->w8);
    } else if (!fake && bits == 4 && natural) {
        int zok = 1;
        for (int64_t i = 0; i < N * ng; i++) zok &= zr[i] >= 0 && zr[i] <= 15;
        if (zok) {
            rc = qd_gemm_w4_create(packed, N, K, rb, G, sc, zr, L->b, &ql->w4);
            ql->kind = w4f ? QD_QL_INT4_F32 : QD_QL_INT4_S8;
            if (!rc) ql->bytes = qd_gemm_w4_bytes(ql->w4);
        }
    }
    if (!rc && (ql->kind == QD_QL_INT8 || ql->kind == QD_QL_INT4_S8) && q->outlier > 0) {
        /* what the outlier columns need: the codes and parameters (dequantized a column at a time) */
        ql->codes = qd_xmalloc((size_t)(N * K));
        qd_unpack_matrix(packed, N, K, bits, ql->codes);
        ql->sc = sc;
        ql->zr = zr;
        ql->G = G;
        ql->ng = ng;
        sc = NULL;
        zr = NULL;
    }
    if (rc) {
        rc = qd_err_wrap(rc, "%s: tensor '%s': ", path, name);
        goto out;
    }
    if (!ql->w8 && !ql->w4) {
        uint8_t *codes = qd_xmalloc((size_t)(N * K));
        qd_unpack_matrix(packed, N, K, bits, codes);
        qd_qparams p = {.rows = N,
                        .cols = K,
                        .ngroups = ng,
                        .group_size = G,
                        .bits = bits,
                        .sym = sym,
                        .gran = G < K ? QD_GRAN_GROUP : QD_GRAN_CHANNEL,
                        .scales = sc,
                        .zeros = zr};
        ql->wdq = qd_xmalloc((size_t)(N * K) * sizeof(float));
        qd_dequantize(codes, &p, gi, ql->wdq);
        free(codes);
        ql->kind = QD_QL_DEQUANT;
        ql->bytes = (uint64_t)(N * K) * 4;
    }
out:
    free(packed);
    free(sc);
    free(zr);
    free(gi);
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
    q->outlier = outlier > 0 ? outlier : 0;
    q->n = qd_model_num_linears(m);
    q->l = qd_xcalloc((size_t)q->n, sizeof *q->l);
    for (int li = 0; li < q->n && !rc; li++) rc = load_linear(q, tg, path, li, fake, w4f);
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
