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
    p->w = qd_gemm_alloc64((size_t)(p->np * p->kp2 * 32) * sizeof(int16_t));
    p->scales = qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->w || !p->scales || (bias && !p->bias)) {
        qd_gemm_w8_free(p);
        return qd_err_set(QD_ENOMEM, "int8 GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        int16_t *dst = p->w + (n / 16) * p->kp2 * 32 + 2 * (n % 16);
        const int8_t *src = w + n * ldw;
        for (int64_t k = 0; k < K; k++) dst[(k / 2) * 32 + (k & 1)] = src[k];
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
    free(w->scales);
    free(w->bias);
    free(w);
}

int qd_gemm_w4_create(const uint8_t *packed, int64_t N, int64_t K, int64_t ldw, int64_t G, const float *scales,
                      const int32_t *zeros, const float *bias, qd_gemm_w4 **out)
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
    const int64_t steps = ng * (p->gp / 4); /* 4-k steps per panel */
    p->q = qd_gemm_alloc64((size_t)(p->np * steps * 32));
    p->scales = qd_gemm_alloc64((size_t)(p->np * ng * 16) * sizeof(float));
    p->zeros = qd_gemm_alloc64((size_t)(p->np * ng * 16) * sizeof(int32_t));
    p->bias = bias ? qd_gemm_alloc64((size_t)(p->np * 16) * sizeof(float)) : NULL;
    if (!p->q || !p->scales || !p->zeros || (bias && !p->bias)) {
        qd_gemm_w4_free(p);
        return qd_err_set(QD_ENOMEM, "4-bit GEMM weights %lldx%lld: out of memory", (long long)N, (long long)K);
    }
    for (int64_t n = 0; n < N; n++) {
        const int64_t pan = n / 16, c = n % 16;
        const uint8_t *src = packed + n * ldw;
        uint8_t *dst = p->q + pan * steps * 32 + 4 * (c & 7);
        const int sh = c < 8 ? 0 : 4;
        for (int64_t k = 0; k < K; k++) {
            const int64_t g = k / G, kk = k - g * G, s = g * (p->gp / 4) + kk / 4;
            const uint8_t q = (k & 1) ? src[k / 2] >> 4 : src[k / 2] & 15;
            dst[s * 32 + (kk & 3)] |= (uint8_t)(q << sh);
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
    free(w->bias);
    free(w);
}

int64_t qd_gemm_w8_n(const qd_gemm_w8 *w) { return w->N; }
int64_t qd_gemm_w8_k(const qd_gemm_w8 *w) { return w->K; }
size_t qd_gemm_w8_bytes(const qd_gemm_w8 *w)
{
    return (size_t)(w->np * w->kp2 * 32) * sizeof(int16_t) + (size_t)(w->np * 16) * sizeof(float) * (w->bias ? 2 : 1);
}
int64_t qd_gemm_w4_n(const qd_gemm_w4 *w) { return w->N; }
int64_t qd_gemm_w4_k(const qd_gemm_w4 *w) { return w->K; }
size_t qd_gemm_w4_bytes(const qd_gemm_w4 *w)
{
    return (size_t)(w->np * w->ng * (w->gp / 4) * 32) + (size_t)(w->np * w->ng * 16) * 8 +
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
