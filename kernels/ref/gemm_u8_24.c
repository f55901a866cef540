/* The scalar reference of the engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h): reads the
 * compact layout directly and applies the dense reference's epilogue in its order. */
#include "kernels/gemm_u8_24.h"
#include "kernels/kernels.h"

static void ref_u8w24_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W,
                          int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    for (int64_t m = 0; m < M; m++) {
        const uint8_t *a = A + m * lda;
        for (int64_t n = n0; n < n1; n++) {
            const int64_t p = n / 16, c = n % 16;
            int32_t acc = 0;
            for (int64_t s = 0; s < W->ns; s++) {
                const int8_t *v = W->val + (p * W->ns + s) * 64 + 4 * c;
                const uint8_t sel = W->sel[(p * W->ns + s) * 16 + c];
                for (int j = 0; j < 4; j++) {
                    const int64_t k = 8 * s + 4 * (j >> 1) + ((sel >> (2 * j)) & 3);
                    if (k < W->K) acc += ((int32_t)a[k] - 128) * v[j];
                }
            }
            float r = (float)acc * a_scales[m] * W->scales[n];
            if (W->bias) r = r + W->bias[n];
            C[m * ldc + n] = r;
        }
    }
}

void qd_gemm_u24_fill_ref(qd_gemm_u24_fns *t)
{
    t->isa = "ref";
    t->f32 = ref_u8w24_f32;
}
