/* Scalar references of the integer GEMMs and the activation quantizer (kernels/gemm.h). These
 * define the results: every ISA version must give the same bits. Plain loops in the order the
 * header states; compiled without ISA flags and without FP contraction (ISO C mode), so fmaf is
 * the only fused operation and it is exactly rounded wherever it runs. */
#include <math.h>

#include "kernels/gemm_pack.h"
#include "kernels/kernels.h"

/* ---- activations --------------------------------------------------------------------------- */

/* clamp(rint(x / s), -127, 127), NaN -> 0; the selects are the vector max/min (a > b ? a : b) */
static inline int8_t quant_s8(float x, float s)
{
    float q = rintf(x / s);
    if (q != q) q = 0.0f;
    q = q > -127.0f ? q : -127.0f;
    q = q < 127.0f ? q : 127.0f;
    return (int8_t)(int)q;
}

static void ref_quantize_rows_s8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *static_scale,
                                 float *scales, int8_t *q, int64_t ldq)
{
    QD_ASSERT(M >= 0 && K >= 1 && ldx >= K && ldq >= K);
    if (static_scale) QD_ASSERT(*static_scale > 0.0f && isfinite(*static_scale));
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        int8_t *qr = q + m * ldq;
        float s;
        if (static_scale) {
            s = *static_scale;
        } else {
            float amax = 0.0f; /* NaN never compares greater: ignored */
            for (int64_t k = 0; k < K; k++) {
                const float a = fabsf(xr[k]);
                amax = a > amax ? a : amax;
            }
            s = amax / 127.0f;
        }
        scales[m] = s;
        if (s == 0.0f) {
            for (int64_t k = 0; k < K; k++) qr[k] = 0;
            continue;
        }
        for (int64_t k = 0; k < K; k++) qr[k] = quant_s8(xr[k], s);
    }
}

/* ---- int8 x int8 ------------------------------------------------------------------------------ */

static int32_t dot_s8(const int8_t *a, const qd_gemm_w8 *W, int64_t n)
{
    int32_t acc = 0; /* |acc| <= K * 2^14 <= 2^30 */
    for (int64_t k = 0; k < W->K; k++) acc += (int32_t)a[k] * qd_gemm_w8_at(W, n, k);
    return acc;
}

static void ref_gemm_s8_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                            float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) {
            float v = (float)dot_s8(A + m * lda, W, n) * a_scales[m] * W->scales[n];
            if (W->bias) v = v + W->bias[n];
            C[m * ldc + n] = v;
        }
}

static void ref_gemm_s8_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, int32_t *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) C[m * ldc + n] = dot_s8(A + m * lda, W, n);
}

/* quant/fixed.c's qd_requantize_s8, restated here (kernels/ sits below quant/); the tests check
 * the GEMM's int8 output against quant's function itself. */
static int32_t srdhm(int32_t a, int32_t b)
{ /* round(a * b / 2^31), b >= 0 so never MIN * MIN */
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1ll << 30) : (1 - (1ll << 30));
    return (int32_t)((ab + nudge) / (1ll << 31));
}
static int32_t rdbpot(int32_t x, int e)
{ /* x / 2^e rounded to nearest, ties away from zero */
    if (e <= 0) return x;
    const int32_t mask = (int32_t)((1ll << e) - 1), rem = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + (rem > threshold ? 1 : 0);
}
static int8_t requant_s8(int32_t acc, int32_t M0, int shift, int32_t zp)
{
    int32_t x = acc;
    if (shift > 0) {
        const int64_t l = (int64_t)acc * ((int64_t)1 << (shift > 31 ? 31 : shift));
        x = (int32_t)(l > INT32_MAX ? INT32_MAX : l < INT32_MIN ? INT32_MIN : l);
    }
    int32_t r = srdhm(x, M0);
    if (shift < 0) r = rdbpot(r, -shift > 31 ? 31 : -shift);
    const int64_t v = (int64_t)r + zp;
    return (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
}

static void check_requant(const qd_requant *rq, int64_t N)
{
    QD_ASSERT(rq && rq->mult && rq->shift);
    QD_ASSERT(rq->zero_point >= -32768 && rq->zero_point <= 32768);
    for (int64_t n = 0; n < N; n++) {
        QD_ASSERT(rq->mult[n] >= 0 && rq->shift[n] > -(1 << 30) && rq->shift[n] < (1 << 30));
        if (rq->bias) QD_ASSERT(rq->bias[n] > -(1 << 30) && rq->bias[n] < (1 << 30));
    }
}

static void ref_gemm_s8_s8(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, const qd_requant *rq,
                           int8_t *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    check_requant(rq, W->N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) {
            const int32_t acc = dot_s8(A + m * lda, W, n) + (rq->bias ? rq->bias[n] : 0);
            C[m * ldc + n] = requant_s8(acc, rq->mult[n], rq->shift[n], rq->zero_point);
        }
}

/* ---- 4-bit weights ---------------------------------------------------------------------------- */

static void ref_gemm_w4_s8(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                           float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++) {
        const int8_t *a = A + m * lda;
        for (int64_t n = 0; n < W->N; n++) {
            float acc = 0.0f;
            for (int64_t g = 0, k0 = 0; k0 < W->K; g++, k0 += W->G) {
                const int64_t k1 = QD_MIN(k0 + W->G, W->K);
                const int32_t z = qd_gemm_w4_zero(W, n, g);
                int32_t isum = 0; /* |isum| <= G * 15 * 128 < 2^31 */
                for (int64_t k = k0; k < k1; k++) isum += (int32_t)a[k] * (qd_gemm_w4_at(W, n, k) - z);
                acc = fmaf(qd_gemm_w4_scale(W, n, g), (float)isum, acc);
            }
            float v = acc * a_scales[m];
            if (W->bias) v = v + W->bias[n];
            C[m * ldc + n] = v;
        }
    }
}

static void ref_gemm_w4_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_w4 *W, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        for (int64_t n = 0; n < W->N; n++) {
            float acc = 0.0f;
            for (int64_t g = 0, k0 = 0; k0 < W->K; g++, k0 += W->G) {
                const int64_t k1 = QD_MIN(k0 + W->G, W->K);
                const float s = qd_gemm_w4_scale(W, n, g);
                const int32_t z = qd_gemm_w4_zero(W, n, g);
                for (int64_t k = k0; k < k1; k++) acc = fmaf(a[k], s * (float)(qd_gemm_w4_at(W, n, k) - z), acc);
            }
            if (W->bias) acc = acc + W->bias[n];
            C[m * ldc + n] = acc;
        }
    }
}

/* ---- the inference path: u8-coded activations, column ranges -------------------------------- */

static void ref_quantize_rows_u8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *col_mul, float *scales,
                                 uint8_t *q, int64_t ldq)
{
    QD_ASSERT(M >= 0 && K >= 1 && ldx >= K && ldq >= K);
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        uint8_t *qr = q + m * ldq;
        float amax = 0.0f;
        for (int64_t k = 0; k < K; k++) {
            const float a = fabsf(col_mul ? xr[k] * col_mul[k] : xr[k]);
            amax = a > amax ? a : amax;
        }
        const float s = amax / 127.0f;
        scales[m] = s;
        for (int64_t k = 0; k < K; k++)
            qr[k] = (uint8_t)(128 + (s == 0.0f ? 0 : quant_s8(col_mul ? xr[k] * col_mul[k] : xr[k], s)));
    }
}

/* column ranges start on a panel and end on one or at N (threads never share a panel) */
static void check_cols(int64_t N, int64_t n0, int64_t n1)
{
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= N && (n1 % 16 == 0 || n1 == N));
}

void qd_ref_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                        int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    check_cols(W->N, n0, n1);
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * lda;
        for (int64_t n = n0; n < n1; n++) {
            int32_t acc = 0;
            for (int64_t k = 0; k < W->K; k++) acc += ((int32_t)a[k] - 128) * qd_gemm_w8_at(W, n, k);
            float v = (float)acc * a_scales[m] * W->scales[n];
            if (W->bias) v = v + W->bias[n];
            C[m * ldc + n] = v;
        }
    }
}

void qd_ref_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                          int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    check_cols(W->N, n0, n1);
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * lda;
        for (int64_t n = n0; n < n1; n++) {
            float acc = 0.0f;
            for (int64_t g = 0, k0 = 0; k0 < W->K; g++, k0 += W->G) {
                const int64_t k1 = QD_MIN(k0 + W->G, W->K);
                const int32_t z = qd_gemm_w4_zero(W, n, g);
                int32_t isum = 0;
                for (int64_t k = k0; k < k1; k++) isum += ((int32_t)a[k] - 128) * (qd_gemm_w4_at(W, n, k) - z);
                acc = fmaf(qd_gemm_w4_scale(W, n, g), (float)isum, acc);
            }
            float v = acc * a_scales[m];
            if (W->bias) v = v + W->bias[n];
            C[m * ldc + n] = v;
        }
    }
}

static void ref_gemm_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_wf *W, int64_t n0, int64_t n1, float *C,
                         int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    check_cols(W->N, n0, n1);
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        for (int64_t n = n0; n < n1; n++) {
            const float *w = W->w + (n / 16) * W->K * 16 + n % 16;
            float acc = 0.0f;
            for (int64_t k = 0; k < W->K; k++) acc = fmaf(a[k], w[k * 16], acc);
            if (W->bias) acc = acc + W->bias[n];
            C[m * ldc + n] = acc;
        }
    }
}

void qd_kernels_fill_ref_gemm(qd_kernel_table *t)
{
    t->layout = QD_GEMM_LAYOUT_VNNI;
    t->quantize_rows_u8 = ref_quantize_rows_u8;
    t->gemm_u8_f32 = qd_ref_gemm_u8_f32;
    t->gemm_u8w4_f32 = qd_ref_gemm_u8w4_f32;
    t->gemm_f32 = ref_gemm_f32;
    t->quantize_rows_s8 = ref_quantize_rows_s8;
    t->gemm_s8_f32 = ref_gemm_s8_f32;
    t->gemm_s8_s32 = ref_gemm_s8_s32;
    t->gemm_s8_s8 = ref_gemm_s8_s8;
    t->gemm_w4_s8 = ref_gemm_w4_s8;
    t->gemm_w4_f32 = ref_gemm_w4_f32;
}
