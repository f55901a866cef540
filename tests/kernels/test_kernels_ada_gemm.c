/* AdaRound's gradient products: the sparse update (kernels.h ada_sparse_update) of the AVX2
 * table gives the reference's bits (column counts around the 96-wide strips, empty rows), and
 * the reference equals its definition (fmaf in term order); the AMX bfloat16 GEMM
 * (kernels/gemm_bf16.h), where this CPU has it, is within its stated precision of a
 * double-precision product: |error| <= 4e-5 (~2^-15) of the sum of |terms| (bf16 splits of both
 * operands keep about 16 bits), rows past a multiple of 32, padded K and N, and a strided output;
 * and a row's result is the same whatever rows share the call (padded to 64-row tiles). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_bf16.h"
#include "kernels/kernels.h"
#include "qd_test.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

static void check_sparse(int64_t R, int64_t C)
{
    float *H = malloc((size_t)(C * C) * sizeof(float));
    for (int64_t i = 0; i < C * C; i++) H[i] = (float)(urand() - 0.5);
    int64_t *ptr = malloc((size_t)(R + 1) * sizeof(int64_t));
    int32_t *idx = malloc((size_t)(R * C) * sizeof(int32_t));
    float *val = malloc((size_t)(R * C) * sizeof(float));
    int64_t k = 0;
    for (int64_t r = 0; r < R; r++) {
        ptr[r] = k;
        if (r % 5 == 2) continue; /* empty rows */
        for (int64_t c = 0; c < C; c++)
            if (urand() < 0.2) {
                idx[k] = (int32_t)c;
                val[k++] = (float)((urand() - 0.5) * 1e-3);
            }
    }
    ptr[R] = k;
    const int64_t ld = C + 3;
    float *y0 = malloc((size_t)(R * ld) * sizeof(float)), *y1 = malloc((size_t)(R * ld) * sizeof(float)),
          *yd = malloc((size_t)(R * ld) * sizeof(float));
    for (int64_t i = 0; i < R * ld; i++) y0[i] = y1[i] = yd[i] = (float)(urand() - 0.5);
    /* the definition */
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            float a = yd[r * ld + c];
            for (int64_t t = ptr[r]; t < ptr[r + 1]; t++) a = fmaf(val[t], H[idx[t] * C + c], a);
            yd[r * ld + c] = a;
        }
    qd_kernels_table("ref")->ada_sparse_update(ptr, idx, val, R, H, C, y0, ld);
    CHECK(memcmp(y0, yd, (size_t)(R * ld) * sizeof(float)) == 0);
    const qd_kernel_table *avx2 = qd_kernels_table("avx2");
    if (avx2) {
        avx2->ada_sparse_update(ptr, idx, val, R, H, C, y1, ld);
        CHECK(memcmp(y0, y1, (size_t)(R * ld) * sizeof(float)) == 0);
    }
    free(H), free(ptr), free(idx), free(val), free(y0), free(y1), free(yd);
}

static void check_bf16(int64_t M, int64_t K, int64_t N)
{
    float *A = malloc((size_t)(M * K) * sizeof(float)), *B = malloc((size_t)(K * N) * sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)((urand() - 0.5) * (i % 13 ? 1e-2 : 3.0));
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)((urand() - 0.5) * (i % 7 ? 1.0 : 50.0));
    qd_gemm_bf16 *g = qd_gemm_bf16_create(B, K, N);
    CHECK(g != NULL);
    const int64_t ldy = N + 5;
    float *Y = malloc((size_t)(M * ldy) * sizeof(float));
    for (int64_t i = 0; i < M * ldy; i++) Y[i] = 12345.0f;
    for (int rep = 0; rep < 2; rep++) { /* the workspace is reused */
        CHECK_EQ(qd_gemm_bf16_run(g, A, M, K, -1.0f, Y, ldy), 0);
        double worst = 0;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0, sa = 0;
                for (int64_t k = 0; k < K; k++) {
                    double t = (double)A[i * K + k] * B[k * N + j];
                    s += t;
                    sa += fabs(t);
                }
                double e = fabs(-s - Y[i * ldy + j]) / (sa > 0 ? sa : 1);
                if (e > worst) worst = e;
            }
        CHECK_DBL_LE(worst, 4e-5);
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = N; j < ldy; j++) CHECK_EQ(Y[i * ldy + j], 12345.0f); /* past N untouched */
    }
    qd_gemm_bf16_free(g);
    free(A), free(B), free(Y);
}

/* a row's result does not depend on the rows beside it or on the padding of M to 64 */
static void check_bf16_rows(void)
{
    const int64_t M = 64, K = 96, N = 80;
    float *A = malloc((size_t)(M * K) * sizeof(float)), *B = malloc((size_t)(K * N) * sizeof(float));
    for (int64_t i = 0; i < M * K; i++) A[i] = (float)(urand() - 0.5);
    for (int64_t i = 0; i < K * N; i++) B[i] = (float)(urand() - 0.5);
    qd_gemm_bf16 *g = qd_gemm_bf16_create(B, K, N);
    float *Y = malloc((size_t)(M * N) * sizeof(float)), *Z = malloc((size_t)(M * N) * sizeof(float));
    CHECK_EQ(qd_gemm_bf16_run(g, A, M, K, 1.0f, Y, N), 0);
    for (int64_t r0 = 0; r0 < M; r0 += 17) {
        const int64_t m = r0 + 17 <= M ? 17 : M - r0;
        CHECK_EQ(qd_gemm_bf16_run(g, A + r0 * K, m, K, 1.0f, Z, N), 0);
        CHECK(memcmp(Y + r0 * N, Z, (size_t)(m * N) * sizeof(float)) == 0);
    }
    qd_gemm_bf16_free(g);
    free(A), free(B), free(Y), free(Z);
}

int main(void)
{
    check_sparse(1, 1);
    check_sparse(7, 95);
    check_sparse(9, 96);
    check_sparse(13, 200);
    check_sparse(64, 384);
    if (qd_gemm_bf16_available()) {
        check_bf16(1, 1, 1);
        check_bf16(33, 70, 45);
        check_bf16(64, 384, 384);
        check_bf16(17, 256, 64);
        check_bf16(128, 64, 33);
        check_bf16_rows();
        printf("AMX bfloat16 GEMM checked\n");
    } else
        printf("no AMX-BF16 on this CPU (or QD_KERNELS set): the bfloat16 GEMM is not checked\n");
    QD_TEST_MAIN_END();
}
