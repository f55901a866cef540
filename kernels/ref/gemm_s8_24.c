/* Scalar reference of the 2:4 sparse int8 GEMM (kernels/gemm_s8_24.h): defines the results. The
 * two kept values of a group are read back through their selectors, so the reference also checks
 * the packing the vector version relies on. */
#include "kernels/gemm_s8_24.h"

#include "kernels/kernels.h"

static int32_t dot24(const int8_t *a, const qd_gemm_w24 *W, int64_t n)
{
    const int64_t pan = n / 16, c = n % 16;
    int32_t acc = 0; /* |acc| <= K * 2^14 <= 2^30 */
    for (int64_t g = 0; 4 * g < W->K; g++) {
        const int64_t at = pan * W->ngp + g;
        const uint8_t *s = W->sel + at * 64 + 4 * c;
        for (int j = 0; j < 2; j++) {
            const int64_t k = 4 * g + (s[2 * j] & 7) / 2;
            const int32_t v = W->val[at * 32 + 2 * c + j];
            if (v) acc += (int32_t)a[k] * v; /* a stored 0 may sit past K */
        }
    }
    return acc;
}

static void ref_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, float *C,
                    int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) {
            float v = (float)dot24(A + m * lda, W, n) * a_scales[m] * W->scales[n];
            if (W->bias) v = v + W->bias[n];
            C[m * ldc + n] = v;
        }
}

static void ref_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w24 *W, int32_t *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < W->N; n++) C[m * ldc + n] = dot24(A + m * lda, W, n);
}

void qd_gemm24_fill_ref(qd_gemm24_fns *t)
{
    t->isa = "ref";
    t->f32 = ref_f32;
    t->s32 = ref_s32;
}
