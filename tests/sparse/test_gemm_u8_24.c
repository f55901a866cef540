/* The engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h): the reference against int64 dot
 * products and against the dense qd_gemm_u8_f32 reference on the same weights (same bits), the
 * AVX-512 VNNI version (where the CPU has it) against the reference bit for bit (memcmp) over odd
 * shapes (M = 1 and not a multiple of the row block, N not a multiple of 16 or of the two-panel
 * block, K not a multiple of 8 or of 4, column ranges [n0, n1)), full-range data, groups keeping
 * 0, 1 or 2 weights, the largest accumulators (u = 255 and u = 0 against -128, K = QD_GEMM_MAX_K);
 * the outlier columns read back (qd_gemm_u24_column) against scale · w; the compact size; the
 * packer's refusal of a group with 3 nonzeros. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_u8_24.h"
#include "kernels/kernels.h"
#include "qd_test.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* w [N][K] 2:4: each group keeps 0, 1 or 2 random positions (mostly 2) */
static void make_w(int8_t *w, int64_t N, int64_t K)
{
    memset(w, 0, (size_t)(N * K));
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K; g += 4) {
            const int keep = rnd() % 8 == 0 ? (int)(rnd() % 2) : 2;
            const int a = (int)(rnd() % 4), b = (a + 1 + (int)(rnd() % 3)) % 4, pos[2] = {a, b};
            for (int j = 0; j < keep; j++)
                if (g + pos[j] < K) {
                    const int8_t v = (int8_t)(rnd() % 256 - 128);
                    w[n * K + g + pos[j]] = v ? v : 1;
                }
        }
}

static void one(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, const qd_gemm_u24_fns *ref,
                const qd_gemm_u24_fns *isa, const qd_kernel_table *dense)
{
    int8_t *w = malloc((size_t)(N * K));
    uint8_t *A = malloc((size_t)(M * K));
    float *ws = malloc((size_t)N * sizeof(float)), *as = malloc((size_t)M * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float)), *col = malloc((size_t)N * sizeof(float));
    make_w(w, N, K);
    for (int64_t i = 0; i < M * K; i++) A[i] = (uint8_t)(rnd() % 256);
    for (int64_t n = 0; n < N; n++) {
        ws[n] = (float)(rnd() % 1000 + 1) * 1e-4f;
        bias[n] = (float)((int)(rnd() % 200) - 100) * 0.01f;
    }
    for (int64_t m = 0; m < M; m++) as[m] = (float)(rnd() % 1000 + 1) * 1e-3f;
    qd_gemm_u24 *W24;
    qd_gemm_w8 *W8;
    CHECK_EQ(qd_gemm_u24_create(w, N, K, K, ws, bias, &W24), 0);
    CHECK_EQ(qd_gemm_w8_create(w, N, K, K, ws, bias, &W8), 0);
    CHECK_EQ((int64_t)qd_gemm_u24_bytes(W24), (N + 15) / 16 * ((K + 7) / 8 * 80 + 16 * 12));
    const size_t cb = (size_t)(M * N) * sizeof(float);
    float *f_ref = malloc(cb), *f_isa = malloc(cb), *f_dense = malloc(cb);
    for (size_t i = 0; i < cb / 4; i++) f_ref[i] = f_isa[i] = f_dense[i] = -7.0f; /* outside [n0, n1) stays */
    ref->f32(A, K, as, M, W24, n0, n1, f_ref, N);
    dense->gemm_u8_f32(A, K, as, M, W8, n0, n1, f_dense, N);
    int64_t bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = n0; n < n1; n++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += ((int64_t)A[m * K + k] - 128) * w[n * K + k];
            float v = (float)s * as[m] * ws[n];
            v = v + bias[n];
            bad += v != f_ref[m * N + n];
        }
    CHECK_MSG(bad == 0, "M=%lld N=%lld K=%lld: %lld reference outputs differ from the int64 dot", (long long)M,
              (long long)N, (long long)K, (long long)bad);
    CHECK_MSG(!memcmp(f_ref, f_dense, cb), "f32 vs dense M=%lld N=%lld K=%lld", (long long)M, (long long)N,
              (long long)K);
    if (isa) {
        isa->f32(A, K, as, M, W24, n0, n1, f_isa, N);
        CHECK_MSG(!memcmp(f_ref, f_isa, cb), "%s M=%lld N=%lld K=%lld [%lld, %lld)", isa->isa, (long long)M,
                  (long long)N, (long long)K, (long long)n0, (long long)n1);
    }
    for (int64_t k = 0; k < K; k += 1 + K / 7) {
        qd_gemm_u24_column(W24, k, col);
        for (int64_t n = 0; n < N; n++) bad += col[n] != ws[n] * (float)w[n * K + k];
    }
    CHECK_MSG(bad == 0, "column read-back M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    qd_gemm_u24_free(W24);
    qd_gemm_w8_free(W8);
    free(w);
    free(A);
    free(ws);
    free(as);
    free(bias);
    free(col);
    free(f_ref);
    free(f_isa);
    free(f_dense);
}

int main(void)
{
    const qd_gemm_u24_fns *ref = qd_gemm_u24_table("ref"), *isa = qd_gemm_u24_table("avx512vnni");
    const qd_kernel_table *dense = qd_kernels_table("ref");
    printf("vector version: %s\n", isa ? isa->isa : "none here (reference only)");
    const int64_t shapes[][5] = {{1, 1, 4, 0, 1},        {1, 16, 8, 0, 16},     {3, 17, 13, 0, 17},
                                 {4, 16, 64, 0, 16},     {5, 40, 12, 16, 40},   {17, 33, 385, 0, 32},
                                 {9, 48, 768, 16, 48},   {25, 64, 1540, 0, 64}, {7, 16, 1536, 0, 16},
                                 {130, 20, 3072, 0, 20}, {1, 768, 768, 0, 768}, {33, 50, 100, 32, 50}};
    for (size_t i = 0; i < QD_ARRAY_LEN(shapes); i++)
        one(shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4], ref, isa, dense);
    /* largest accumulators: two -128 weights per group against u = 0 (a = -128) and u = 255 */
    {
        const int64_t N = 16, K = QD_GEMM_MAX_K;
        int8_t *w = calloc((size_t)(N * K), 1);
        uint8_t *A = malloc((size_t)(2 * K));
        for (int64_t i = 0; i < N * K; i++)
            if (i % 4 < 2) w[i] = -128;
        memset(A, 0, (size_t)K);
        memset(A + K, 255, (size_t)K);
        float ws[16], as[2] = {1, 1}, c1[32], c2[32];
        for (int i = 0; i < 16; i++) ws[i] = 1;
        qd_gemm_u24 *W;
        CHECK_EQ(qd_gemm_u24_create(w, N, K, K, ws, NULL, &W), 0);
        ref->f32(A, K, as, 2, W, 0, N, c1, N);
        CHECK_EQ((int64_t)c1[0], (int64_t)1 << 29);
        CHECK_EQ((int64_t)c1[16], -(int64_t)127 * 128 * (K / 2));
        if (isa) {
            isa->f32(A, K, as, 2, W, 0, N, c2, N);
            CHECK(!memcmp(c1, c2, sizeof c1));
        }
        qd_gemm_u24_free(W);
        w[6] = 1; /* row 0, group 1: -128 -128 1 0, three nonzeros */
        CHECK_EQ(qd_gemm_u24_create(w, N, K, K, ws, NULL, &W), QD_EINVAL);
        CHECK(strstr(qd_errmsg(), "row 0, columns 4..7 hold 3 nonzeros") != NULL);
        free(w);
        free(A);
    }
    QD_TEST_MAIN_END();
}
