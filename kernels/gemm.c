/* Packed GEMM weights (kernels/gemm.h, layouts in kernels/gemm_pack.h) and the calls through the
 * selected table. Compiled without ISA flags: packing is plain C, done once per weight at load. */
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/kernels.h"

void *qd_gemm_alloc64(size_t bytes)
{
    size_t n = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, n ? n : 64);
    if (p) memset(p, 0, n ? n : 64);
    return p;
}

int qd_gemm_w8_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                      qd_gemm_w8 **out)
{
    return qd_gemm_w8_create_layout(QD_GEMM_LAYOUT_I16, w, N, K, ldw, scales, bias, out);
}

int qd_gemm_w8_create_layout(int layout, const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales,
                             const float *bias, qd_gemm_w8 **out)
{
    *out = NULL;
    if (N < 1 || K < 1 || K > QD_GEMM_MAX_K || ldw < K || !w || !scales)
        return qd_err_set(QD_EINVAL, "int8 GEMM weights: N=%lld K=%lld ldw=%lld (need N, K >= 1, K <= %d, ldw >= K)",
                          (long long)N, (long long)K, (long long)ldw, QD_GEMM_MAX_K);
    qd_gemm_w8 *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "int8 GEMM weights: out of memory");
    p->N = N;
    p->K = K;
    p->np = (N + 15) / 16;
    p->kp2 = (K + 1) / 2;
    p->layout = layout == QD_GEMM_LAYOUT_VNNI ? QD_GEMM_LAYOUT_VNNI : QD_GEMM_LAYOUT_I16;
    p->kq = (K + 63) / 64 * 16;
    if (p->layout == QD_GEMM_LAYOUT_VNNI) {
        p->v = qd_gemm_alloc64((size_t)(p->np * p->kq * 64));
        p->comp = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(int32_t));
    } else {
        p->w = qd_gemm_alloc64((size_t)(p->np * p->kp2 * 32) * sizeof(int16_t));
    }
    p->scales = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if ((!p->w && !p->v) || (p->v && !p->comp) || !p->scales || (bias && !p->bias)) {
        qd_gemm_w8_free(p);
        return qd_err_set(QD_ENOMEM, "int8 GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        const int8_t *src = w + n * ldw;
        if (p->v) {
            int8_t *dst = p->v + (n / 16) * p->kq * 64 + 4 * (n % 16);
            int32_t sum = 0;
            for (int64_t k = 0; k < K; k++) {
                dst[(k / 4) * 64 + (k & 3)] = src[k];
                sum += src[k];
            }
            p->comp[n] = 128 * sum; /* |sum| <= 128 K <= 2^23 */
        } else {
            int16_t *dst = p->w + (n / 16) * p->kp2 * 32 + 2 * (n % 16);
            for (int64_t k = 0; k < K; k++) dst[(k / 2) * 32 + (k & 1)] = src[k];
        }
        p->scales[n] = scales[n];
        if (bias) p->bias[n] = bias[n];
    }
    *out = p;
    return 0;
}

void qd_gemm_w8_free(qd_gemm_w8 *w)
{
    if (!w) return;
    free(w->w);
    free(w->v);
    free(w->comp);
    free(w->scales);
    free(w->bias);
    free(w);
}

int qd_gemm_w4_create(const uint8_t *packed, int64_t N, int64_t K, int64_t ldw, int64_t G, const float *scales,
                      const int32_t *zeros, const float *bias, qd_gemm_w4 **out)
{
    return qd_gemm_w4_create_layout(QD_GEMM_LAYOUT_I16, packed, N, K, ldw, G, scales, zeros, bias, out);
}

int qd_gemm_w4_create_layout(int layout, const uint8_t *packed, int64_t N, int64_t K, int64_t ldw, int64_t G,
                             const float *scales, const int32_t *zeros, const float *bias, qd_gemm_w4 **out)
{
    *out = NULL;
    if (N < 1 || K < 1 || K > (1 << 20) || G < 1 || ldw < (K + 1) / 2 || !packed || !scales || !zeros)
        return qd_err_set(QD_EINVAL,
                          "4-bit GEMM weights: N=%lld K=%lld G=%lld ldw=%lld (need N, K, G >= 1, K <= 2^20, "
                          "ldw >= ceil(K/2))",
                          (long long)N, (long long)K, (long long)G, (long long)ldw);
    const int64_t ng = (K + G - 1) / G;
    for (int64_t i = 0; i < N * ng; i++)
        if (zeros[i] < 0 || zeros[i] > 15)
            return qd_err_set(QD_EINVAL, "4-bit GEMM weights: zero point %d of row %lld group %lld not in [0, 15]",
                              (int)zeros[i], (long long)(i / ng), (long long)(i % ng));
    qd_gemm_w4 *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "4-bit GEMM weights: out of memory");
    p->N = N;
    p->K = K;
    p->G = G;
    p->np = (N + 15) / 16;
    p->ng = ng;
    p->gp = (G + 15) / 16 * 16;
    p->layout = layout == QD_GEMM_LAYOUT_VNNI && G % 8 == 0 && K % 8 == 0 ? QD_GEMM_LAYOUT_VNNI : QD_GEMM_LAYOUT_I16;
    const int vnni = p->layout == QD_GEMM_LAYOUT_VNNI;
    const int64_t steps = ng * (p->gp / 4); /* AVX2: 4-k steps per panel */
    p->q = qd_gemm_alloc64(vnni ? (size_t)(p->np * (K / 8) * 64) : (size_t)(p->np * steps * 32));
    p->scales = qd_gemm_alloc64((size_t)(p->np * ng * 16) * sizeof(float));
    p->zeros = qd_gemm_alloc64((size_t)(p->np * ng * 16) * sizeof(int32_t));
    p->comp = vnni ? qd_gemm_alloc64((size_t)(p->np * ng * 16) * sizeof(int32_t)) : NULL;
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->q || !p->scales || !p->zeros || (vnni && !p->comp) || (bias && !p->bias)) {
        qd_gemm_w4_free(p);
        return qd_err_set(QD_ENOMEM, "4-bit GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        const int64_t pan = n / 16, c = n % 16;
        const uint8_t *src = packed + n * ldw;
        if (vnni) {
            uint8_t *dst = p->q + pan * (K / 8) * 64 + 4 * c;
            for (int64_t k = 0; k < K; k++) {
                const uint8_t q = (k & 1) ? src[k / 2] >> 4 : src[k / 2] & 15;
                dst[(k / 8) * 64 + (k & 3)] |= (uint8_t)(q << ((k & 4) ? 4 : 0));
                p->comp[(pan * ng + k / G) * 16 + c] += 128 * (q - zeros[n * ng + k / G]);
            }
        } else {
            uint8_t *dst = p->q + pan * steps * 32 + 4 * (c & 7);
            const int sh = c < 8 ? 0 : 4;
            for (int64_t k = 0; k < K; k++) {
                const int64_t g = k / G, kk = k - g * G, s = g * (p->gp / 4) + kk / 4;
                const uint8_t q = (k & 1) ? src[k / 2] >> 4 : src[k / 2] & 15;
                dst[s * 32 + (kk & 3)] |= (uint8_t)(q << sh);
            }
        }
        for (int64_t g = 0; g < ng; g++) {
            p->scales[(pan * ng + g) * 16 + c] = scales[n * ng + g];
            p->zeros[(pan * ng + g) * 16 + c] = zeros[n * ng + g];
        }
        if (bias) p->bias[n] = bias[n];
    }
    *out = p;
    return 0;
}

void qd_gemm_w4_free(qd_gemm_w4 *w)
{
    if (!w) return;
    free(w->q);
    free(w->scales);
    free(w->zeros);
    free(w->comp);
    free(w->bias);
    free(w);
}

int qd_gemm_wf_create(const float *w, int64_t N, int64_t K, int64_t ldw, const float *bias, qd_gemm_wf **out)
{
    *out = NULL;
    if (N < 1 || K < 1 || ldw < K || !w)
        return qd_err_set(QD_EINVAL, "float GEMM weights: N=%lld K=%lld ldw=%lld (need N, K >= 1, ldw >= K)",
                          (long long)N, (long long)K, (long long)ldw);
    qd_gemm_wf *p = calloc(1, sizeof *p);
    if (!p) return qd_err_set(QD_ENOMEM, "float GEMM weights: out of memory");
    p->N = N;
    p->K = K;
    p->np = (N + 15) / 16;
    p->w = qd_gemm_alloc64((size_t)(p->np * K * 16) * sizeof(float));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->w || (bias && !p->bias)) {
        qd_gemm_wf_free(p);
        return qd_err_set(QD_ENOMEM, "float GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        float *dst = p->w + (n / 16) * K * 16 + n % 16;
        for (int64_t k = 0; k < K; k++) dst[k * 16] = w[n * ldw + k];
        if (bias) p->bias[n] = bias[n];
    }
    *out = p;
    return 0;
}

void qd_gemm_wf_free(qd_gemm_wf *w)
{
    if (!w) return;
    free(w->w);
    free(w->bias);
    free(w);
}

size_t qd_gemm_wf_bytes(const qd_gemm_wf *w)
{
    return (size_t)(w->np * w->K * 16) * sizeof(float) + (w->bias ? (size_t)(w->np * 16) * sizeof(float) : 0);
}

/* Both walk the panels in the layout's order (no division per weight): a column is a handful of
 * cache lines per panel, read once per outlier column and product. */
void qd_gemm_w8_column(const qd_gemm_w8 *W, int64_t k, float *out)
{
    QD_ASSERT(k >= 0 && k < W->K);
    for (int64_t p = 0; p < W->np; p++) {
        const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * p);
        const float *sc = W->scales + 16 * p;
        float *o = out + 16 * p;
        if (W->layout == QD_GEMM_LAYOUT_VNNI) {
            const int8_t *v = W->v + (p * W->kq + k / 4) * 64 + (k & 3);
            for (int64_t c = 0; c < nv; c++) o[c] = sc[c] * (float)v[4 * c];
        } else {
            const int16_t *v = W->w + (p * W->kp2 + k / 2) * 32 + (k & 1);
            for (int64_t c = 0; c < nv; c++) o[c] = sc[c] * (float)v[2 * c];
        }
    }
}

void qd_gemm_w4_column(const qd_gemm_w4 *W, int64_t k, float *out)
{
    QD_ASSERT(k >= 0 && k < W->K);
    const int64_t g = k / W->G;
    for (int64_t p = 0; p < W->np; p++) {
        const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * p), o0 = (p * W->ng + g) * 16;
        const float *sc = W->scales + o0;
        const int32_t *zr = W->zeros + o0;
        float *o = out + 16 * p;
        if (W->layout == QD_GEMM_LAYOUT_VNNI) {
            const uint8_t *b = W->q + (p * (W->K / 8) + k / 8) * 64 + (k & 3);
            const int sh = (k & 4) ? 4 : 0;
            for (int64_t c = 0; c < nv; c++) o[c] = sc[c] * (float)(((b[4 * c] >> sh) & 15) - zr[c]);
        } else {
            for (int64_t c = 0; c < nv; c++) o[c] = sc[c] * (float)(qd_gemm_w4_at(W, 16 * p + c, k) - zr[c]);
        }
    }
}

int64_t qd_gemm_w8_n(const qd_gemm_w8 *w) { return w->N; }
int64_t qd_gemm_w8_k(const qd_gemm_w8 *w) { return w->K; }
size_t qd_gemm_w8_bytes(const qd_gemm_w8 *w)
{
    const size_t codes = w->v ? (size_t)(w->np * w->kq * 64) + (size_t)(w->np * 16) * sizeof(int32_t)
                              : (size_t)(w->np * w->kp2 * 32) * sizeof(int16_t);
    return codes + (size_t)(w->np * 16) * sizeof(float) * (w->bias ? 2 : 1);
}
int64_t qd_gemm_w4_n(const qd_gemm_w4 *w) { return w->N; }
int64_t qd_gemm_w4_k(const qd_gemm_w4 *w) { return w->K; }
size_t qd_gemm_w4_bytes(const qd_gemm_w4 *w)
{
    const size_t codes = w->layout == QD_GEMM_LAYOUT_VNNI ? (size_t)(w->np * (w->K / 8) * 64)
                                                          : (size_t)(w->np * w->ng * (w->gp / 4) * 32);
    return codes + (size_t)(w->np * w->ng * 16) * (w->comp ? 12 : 8) +
           (w->bias ? (size_t)(w->np * 16) * sizeof(float) : 0);
}

void qd_quantize_rows_s8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *static_scale, float *scales,
                         int8_t *q, int64_t ldq)
{
    qd_kernels()->quantize_rows_s8(x, M, K, ldx, static_scale, scales, q, ldq);
}
void qd_gemm_s8_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W, float *C,
                    int64_t ldc)
{
    qd_kernels()->gemm_s8_f32(A, lda, a_scales, M, W, C, ldc);
}
void qd_gemm_s8_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, int32_t *C, int64_t ldc)
{
    qd_kernels()->gemm_s8_s32(A, lda, M, W, C, ldc);
}
void qd_gemm_s8_s8(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, const qd_requant *rq, int8_t *C,
                   int64_t ldc)
{
    qd_kernels()->gemm_s8_s8(A, lda, M, W, rq, C, ldc);
}
void qd_gemm_w4_s8(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W, float *C,
                   int64_t ldc)
{
    qd_kernels()->gemm_w4_s8(A, lda, a_scales, M, W, C, ldc);
}
void qd_gemm_w4_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_w4 *W, float *C, int64_t ldc)
{
    qd_kernels()->gemm_w4_f32(A, lda, M, W, C, ldc);
}
void qd_quantize_rows_u8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *col_mul, float *scales,
                         uint8_t *q, int64_t ldq)
{
    qd_kernels()->quantize_rows_u8(x, M, K, ldx, col_mul, scales, q, ldq);
}
void qd_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W, int64_t n0,
                    int64_t n1, float *C, int64_t ldc)
{
    qd_kernels()->gemm_u8_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
}
void qd_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W, int64_t n0,
                      int64_t n1, float *C, int64_t ldc)
{
    qd_kernels()->gemm_u8w4_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
}
void qd_gemm_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_wf *W, int64_t n0, int64_t n1, float *C,
                 int64_t ldc)
{
    qd_kernels()->gemm_f32(A, lda, M, W, n0, n1, C, ldc);
}
