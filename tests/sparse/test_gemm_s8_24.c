/* 2:4 sparse int8 GEMM (kernels/gemm_s8_24.h): the reference against int64 dot products of the
 * row-major codes and against the dense int8 GEMM's reference on the same weights (same bits:
 * f32 and s32), and the AVX2 version against the reference bit for bit (memcmp) over odd shapes
 * (M = 1 and not a multiple of the 4-row tile or of the row block, N not a multiple of 16, K not a
 * multiple of 4 or of the K block), random full-range int8 data, groups keeping 0, 1 or 2 weights,
 * and the largest accumulators (every value -128, K = QD_GEMM_MAX_K); the packer's refusal of a
 * group with 3 nonzeros.
 * The engine's 2:4 kernel (kernels/gemm_u8_24.h, u8-coded activations, compact weights) likewise:
 * the reference against int64 dots and the dense qd_gemm_u8_f32 reference (same bits), the
 * AVX-512 VNNI version (where the CPU has it) against the reference by memcmp over odd shapes and
 * column ranges [n0, n1), K not a multiple of 8 or 4, the largest accumulators (u = 0 and 255
 * against -128, K = QD_GEMM_MAX_K); the outlier columns read back; the compact size; refusal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_s8_24.h"
#include "kernels/gemm_u8_24.h"
#include "kernels/kernels.h"
#include "qd_test.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* w [N][K] 2:4: each group keeps 0, 1 or 2 random positions (mostly 2) */
static void make_w(int8_t *w, int64_t N, int64_t K, int extreme)
{
    memset(w, 0, (size_t)(N * K));
    for (int64_t n = 0; n < N; n++)
        for (int64_t g = 0; g < K; g += 4) {
            int keep = rnd() % 8 == 0 ? (int)(rnd() % 2) : 2;
            int a = (int)(rnd() % 4), b = (a + 1 + (int)(rnd() % 3)) % 4;
            int pos[2] = {a, b};
            for (int j = 0; j < keep; j++)
                if (g + pos[j] < K) {
                    int8_t v = extreme ? -128 : (int8_t)(rnd() % 256 - 128);
                    w[n * K + g + pos[j]] = v ? v : 1;
                }
        }
}

static void one(int64_t M, int64_t N, int64_t K, int extreme, const qd_gemm24_fns *ref, const qd_gemm24_fns *isa,
                const qd_kernel_table *dense)
{
    int8_t *w = malloc((size_t)(N * K)), *A = malloc((size_t)(M * K) + 1);
    float *ws = malloc((size_t)N * sizeof(float)), *as = malloc((size_t)M * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float));
    make_w(w, N, K, extreme);
    for (int64_t i = 0; i < M * K; i++) A[i] = extreme ? -128 : (int8_t)(rnd() % 256 - 128);
    for (int64_t n = 0; n < N; n++) {
        ws[n] = (float)(rnd() % 1000 + 1) * 1e-4f;
        bias[n] = (float)((int)(rnd() % 200) - 100) * 0.01f;
    }
    for (int64_t m = 0; m < M; m++) as[m] = (float)(rnd() % 1000 + 1) * 1e-3f;
    qd_gemm_w24 *W24;
    qd_gemm_w8 *W8;
    CHECK_EQ(qd_gemm_w24_create(w, N, K, K, ws, bias, &W24), 0);
    CHECK_EQ(qd_gemm_w8_create(w, N, K, K, ws, bias, &W8), 0);
    int32_t *c_ref = malloc((size_t)(M * N) * sizeof(int32_t)), *c_isa = malloc((size_t)(M * N) * sizeof(int32_t)),
            *c_dense = malloc((size_t)(M * N) * sizeof(int32_t));
    float *f_ref = malloc((size_t)(M * N) * sizeof(float)), *f_isa = malloc((size_t)(M * N) * sizeof(float)),
          *f_dense = malloc((size_t)(M * N) * sizeof(float));
    ref->s32(A, K, M, W24, c_ref, N);
    ref->f32(A, K, as, M, W24, f_ref, N);
    dense->gemm_s8_s32(A, K, M, W8, c_dense, N);
    dense->gemm_s8_f32(A, K, as, M, W8, f_dense, N);
    int64_t bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int64_t)A[m * K + k] * w[n * K + k];
            bad += s != c_ref[m * N + n];
        }
    CHECK_MSG(bad == 0, "M=%lld N=%lld K=%lld: %lld reference outputs differ from the int64 dot", (long long)M,
              (long long)N, (long long)K, (long long)bad);
    CHECK_MSG(!memcmp(c_ref, c_dense, (size_t)(M * N) * sizeof(int32_t)), "s32 vs dense M=%lld N=%lld K=%lld",
              (long long)M, (long long)N, (long long)K);
    CHECK_MSG(!memcmp(f_ref, f_dense, (size_t)(M * N) * sizeof(float)), "f32 vs dense M=%lld N=%lld K=%lld",
              (long long)M, (long long)N, (long long)K);
    if (isa) {
        isa->s32(A, K, M, W24, c_isa, N);
        isa->f32(A, K, as, M, W24, f_isa, N);
        CHECK_MSG(!memcmp(c_ref, c_isa, (size_t)(M * N) * sizeof(int32_t)), "avx2 s32 M=%lld N=%lld K=%lld",
                  (long long)M, (long long)N, (long long)K);
        CHECK_MSG(!memcmp(f_ref, f_isa, (size_t)(M * N) * sizeof(float)), "avx2 f32 M=%lld N=%lld K=%lld", (long long)M,
                  (long long)N, (long long)K);
    }
    if (extreme) CHECK_EQ(c_ref[0], (int64_t)16384 * (K / 2)); /* every group keeps 2 or fewer */
    qd_gemm_w24_free(W24);
    qd_gemm_w8_free(W8);
    free(w);
    free(A);
    free(ws);
    free(as);
    free(bias);
    free(c_ref);
    free(c_isa);
    free(c_dense);
    free(f_ref);
    free(f_isa);
    free(f_dense);
}

static void one_u8(int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, const qd_gemm_u24_fns *ref,
                   const qd_gemm_u24_fns *isa, const qd_kernel_table *dense)
{
    int8_t *w = malloc((size_t)(N * K));
    uint8_t *A = malloc((size_t)(M * K));
    float *ws = malloc((size_t)N * sizeof(float)), *as = malloc((size_t)M * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float)), *col = malloc((size_t)N * sizeof(float));
    make_w(w, N, K, 0);
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
    const qd_gemm24_fns *ref = qd_gemm24_table("ref"), *isa = qd_gemm24_table("avx2");
    const qd_kernel_table *dense = qd_kernels_table("ref");
    if (!isa) printf("no AVX2 here: reference only\n");
    const int64_t shapes[][3] = {{1, 1, 4},     {1, 16, 8},    {3, 17, 13},   {4, 16, 64},     {5, 40, 12},
                                 {17, 33, 385}, {64, 48, 768}, {7, 16, 1536}, {130, 20, 3072}, {1, 768, 768}};
    for (size_t i = 0; i < QD_ARRAY_LEN(shapes); i++) one(shapes[i][0], shapes[i][1], shapes[i][2], 0, ref, isa, dense);
    /* largest accumulators: two -128 weights per group against -128 activations, K = QD_GEMM_MAX_K */
    {
        const int64_t N = 16, K = QD_GEMM_MAX_K;
        int8_t *w = malloc((size_t)(N * K)), *A = malloc((size_t)(2 * K));
        memset(w, 0, (size_t)(N * K));
        for (int64_t i = 0; i < N * K; i++)
            if (i % 4 < 2) w[i] = -128;
        memset(A, 0x80, (size_t)(2 * K));
        float ws[16];
        for (int i = 0; i < 16; i++) ws[i] = 1;
        qd_gemm_w24 *W;
        CHECK_EQ(qd_gemm_w24_create(w, N, K, K, ws, NULL, &W), 0);
        int32_t c1[32], c2[32];
        ref->s32(A, K, 2, W, c1, N);
        CHECK_EQ(c1[0], (int64_t)1 << 29);
        if (isa) {
            isa->s32(A, K, 2, W, c2, N);
            CHECK(!memcmp(c1, c2, sizeof c1));
        }
        qd_gemm_w24_free(W);
        w[6] = 1; /* row 0, group 1: -128 -128 1 0, three nonzeros */
        CHECK_EQ(qd_gemm_w24_create(w, N, K, K, ws, NULL, &W), QD_EINVAL);
        CHECK(strstr(qd_errmsg(), "row 0, columns 4..7 hold 3 nonzeros") != NULL);
        free(w);
        free(A);
    }
    const qd_gemm_u24_fns *uref = qd_gemm_u24_table("ref");
    const qd_gemm_u24_fns *uisas[3] = {qd_gemm_u24_table("avx512vnni"), qd_gemm_u24_table("avxvnni"),
                                       qd_gemm_u24_table("avx2")};
    const int64_t ushapes[][5] = {{1, 1, 4, 0, 1},        {1, 16, 8, 0, 16},     {3, 17, 13, 0, 17},
                                  {4, 16, 64, 0, 16},     {5, 40, 12, 16, 40},   {17, 33, 385, 0, 32},
                                  {9, 48, 768, 16, 48},   {25, 64, 1540, 0, 64}, {7, 16, 1536, 0, 16},
                                  {130, 20, 3072, 0, 20}, {1, 768, 768, 0, 768}, {33, 50, 100, 32, 50},
                                  {6, 24, 9, 0, 24},      {2, 200, 16, 0, 200}};
    for (int v = 0; v < 3; v++) {
        printf("engine 2:4 kernel, vector version %d: %s\n", v, uisas[v] ? uisas[v]->isa : "none here");
        for (size_t i = 0; i < QD_ARRAY_LEN(ushapes); i++)
            one_u8(ushapes[i][0], ushapes[i][1], ushapes[i][2], ushapes[i][3], ushapes[i][4], uref, uisas[v], dense);
    }
    /* engine kernel, largest accumulators: two -128 weights per group against u = 0 and u = 255 */
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
        uref->f32(A, K, as, 2, W, 0, N, c1, N);
        CHECK_EQ((int64_t)c1[0], (int64_t)1 << 29);
        CHECK_EQ((int64_t)c1[16], -(int64_t)127 * 128 * (K / 2));
        for (int v = 0; v < 3; v++)
            if (uisas[v]) {
                uisas[v]->f32(A, K, as, 2, W, 0, N, c2, N);
                CHECK_MSG(!memcmp(c1, c2, sizeof c1), "%s: largest accumulators", uisas[v]->isa);
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
