/* kernels/avx2/intops.c — AVX2 versions of the integer-only kernels (kernels/intops.h), bit for
 * bit equal to kernels/ref/intops.c. The int8 GEMM is kernels/gemm.h's exact int8 × int8 → int32
 * product (packed once; its own dispatch picks the ISA). */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"

struct qd_igemm {
    qd_gemm_w8 *w8;
};

static qd_igemm *x_pack(const int8_t *w, int64_t N, int64_t K, int64_t ldw)
{
    if (N < 1 || K < 1 || K > QD_GEMM_MAX_K) return NULL;
    float *ones = malloc((size_t)N * sizeof(float));
    qd_igemm *g = malloc(sizeof *g);
    if (!ones || !g) {
        free(ones);
        free(g);
        return NULL;
    }
    for (int64_t n = 0; n < N; n++) ones[n] = 1.0f;
    int rc = qd_gemm_w8_create(w, N, K, ldw, ones, NULL, &g->w8);
    free(ones);
    if (rc) {
        free(g);
        return NULL;
    }
    return g;
}

static void x_free(qd_igemm *g)
{
    if (!g) return;
    qd_gemm_w8_free(g->w8);
    free(g);
}

static void x_gemm(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc)
{
    qd_gemm_s8_s32(A, lda, M, W->w8, C, ldc);
}

void qd_intops_fill_avx2(qd_intops_table *t)
{
    t->isa = "avx2";
    t->igemm_pack = x_pack;
    t->igemm_free = x_free;
    t->igemm_s32 = x_gemm;
}
