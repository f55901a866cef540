/* 4-bit-weight GEMMs (kernels/gemm.h): int8 and float activations.
 *
 * The reference against the definitions written out here from the caller's packed bytes (integer
 * group sums in int64, then the fmaf chain over groups; for float activations the fmaf chain over
 * k of s·(float)(q − z)), and every ISA version against the reference bit for bit (memcmp). Shapes:
 * M = 1 and M, N, K off the 4/6 x 16 tiles, K not a multiple of G, G in {1, 3, 16, 32, 64, 128,
 * K, > K}, K across the float path's 256-k blocks and row blocks; data: random full-range int8
 * activations and codes 0..15, adversarial (all activations -128 against code 15 and zero 0 or 15,
 * the largest group sums), zero points 0..15, row strides, guard columns; a hand-computed case and
 * the creation errors. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "qd_test.h"

#define GUARD_BYTE 0xA5
#define GUARD_COLS 3

static uint64_t rng = 0xD1B54A32D192ED03ull;
static uint64_t rnd(void)
{ /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double unif(void) { return (double)(rnd() >> 11) * 0x1.0p-53; }
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float gauss(void)
{
    double u = unif(), v = unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

static const qd_kernel_table *g_ref, *g_isa;

static int same_bytes(const void *a, const void *b, size_t n, const char *what, int64_t M, int64_t N, int64_t K,
                      int64_t G)
{
    if (memcmp(a, b, n) == 0) return 1;
    size_t i = 0;
    while (((const uint8_t *)a)[i] == ((const uint8_t *)b)[i]) i++;
    fprintf(stderr, "%s: M=%lld N=%lld K=%lld G=%lld: first difference at byte %zu\n", what, (long long)M, (long long)N,
            (long long)K, (long long)G, i);
    return 0;
}

enum { D_RANDOM, D_EXTREME_LOW, D_EXTREME_HIGH, D_SPARSE, ND };
static const char *dname[ND] = {"random", "a=-128 q=15 z=0", "a=-128 q=0 z=15", "sparse"};

static void w4_case(int kind, int64_t M, int64_t N, int64_t K, int64_t G, int with_bias)
{
    const int64_t ng = (K + G - 1) / G, rb = (K + 1) / 2, ldw = rb + irand(0, 2);
    const int64_t lda = K + irand(0, 3), ldc = N + GUARD_COLS;
    int8_t *A = malloc((size_t)(M * lda));
    float *Af = malloc((size_t)(M * lda) * sizeof(float)), *as = malloc((size_t)M * sizeof(float));
    uint8_t *codes = malloc((size_t)(N * K)), *packed = malloc((size_t)(N * ldw));
    float *sc = malloc((size_t)(N * ng) * sizeof(float)), *bias = malloc((size_t)N * sizeof(float));
    int32_t *zr = malloc((size_t)(N * ng) * sizeof(int32_t));
    for (int64_t i = 0; i < M * lda; i++) {
        A[i] = kind == D_RANDOM   ? (int8_t)irand(-128, 127)
               : kind == D_SPARSE ? (int8_t)(irand(0, 7) ? 0 : irand(-128, 127))
                                  : -128;
        Af[i] = kind == D_RANDOM ? gauss() : kind == D_SPARSE ? (irand(0, 7) ? 0.0f : gauss() * 100.0f) : -1e3f;
    }
    for (int64_t m = 0; m < M; m++) as[m] = (float)(unif() * 0.05 + 1e-4);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t k = 0; k < K; k++)
            codes[n * K + k] = kind == D_EXTREME_LOW ? 15 : kind == D_EXTREME_HIGH ? 0 : (uint8_t)irand(0, 15);
        for (int64_t g = 0; g < ng; g++) {
            sc[n * ng + g] = (float)(unif() * 0.02 + 1e-4);
            zr[n * ng + g] = kind == D_EXTREME_LOW ? 0 : kind == D_EXTREME_HIGH ? 15 : (int32_t)irand(0, 15);
        }
        bias[n] = gauss();
        uint8_t *row = packed + n * ldw;
        for (int64_t b = 0; b < ldw; b++) row[b] = (uint8_t)irand(0, 255); /* padding bytes are ignored */
        for (int64_t k = 0; k < K; k += 2)
            row[k / 2] = (uint8_t)(codes[n * K + k] | (k + 1 < K ? codes[n * K + k + 1] << 4 : row[k / 2] & 0xF0));
    }
    qd_gemm_w4 *W = NULL;
    CHECK_EQ(qd_gemm_w4_create(packed, N, K, ldw, G, sc, zr, with_bias ? bias : NULL, &W), 0);
    if (!W) return;
    CHECK_EQ(qd_gemm_w4_n(W), N);
    CHECK_EQ(qd_gemm_w4_k(W), K);

    /* the definitions, from the caller's codes */
    const size_t cb = (size_t)(M * ldc) * sizeof(float);
    float *e8 = malloc(cb), *ef = malloc(cb), *r8 = malloc(cb), *rf = malloc(cb), *v8 = malloc(cb), *vf = malloc(cb);
    memset(e8, GUARD_BYTE, cb), memset(ef, GUARD_BYTE, cb), memset(r8, GUARD_BYTE, cb);
    memset(rf, GUARD_BYTE, cb), memset(v8, GUARD_BYTE, cb), memset(vf, GUARD_BYTE, cb);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc8 = 0.0f, accf = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                int64_t isum = 0;
                const float s = sc[n * ng + g];
                const int32_t z = zr[n * ng + g];
                for (int64_t k = g * G; k < QD_MIN((g + 1) * G, K); k++) {
                    const int32_t qz = (int32_t)codes[n * K + k] - z;
                    isum += (int64_t)A[m * lda + k] * qz;
                    accf = fmaf(Af[m * lda + k], s * (float)qz, accf);
                }
                acc8 = fmaf(s, (float)isum, acc8);
            }
            float v = acc8 * as[m];
            if (with_bias) v = v + bias[n], accf = accf + bias[n];
            e8[m * ldc + n] = v;
            ef[m * ldc + n] = accf;
        }
    g_ref->gemm_w4_s8(A, lda, as, M, W, r8, ldc);
    g_ref->gemm_w4_f32(Af, lda, M, W, rf, ldc);
    CHECK_MSG(same_bytes(r8, e8, cb, "ref w4 x s8 vs definition", M, N, K, G), "%s", dname[kind]);
    CHECK_MSG(same_bytes(rf, ef, cb, "ref w4 x f32 vs definition", M, N, K, G), "%s", dname[kind]);
    if (g_isa) {
        g_isa->gemm_w4_s8(A, lda, as, M, W, v8, ldc);
        g_isa->gemm_w4_f32(Af, lda, M, W, vf, ldc);
        CHECK_MSG(same_bytes(v8, r8, cb, "isa w4 x s8 vs ref", M, N, K, G), "%s", dname[kind]);
        CHECK_MSG(same_bytes(vf, rf, cb, "isa w4 x f32 vs ref", M, N, K, G), "%s", dname[kind]);
    }
    memset(v8, GUARD_BYTE, cb), memset(vf, GUARD_BYTE, cb);
    qd_gemm_w4_s8(A, lda, as, M, W, v8, ldc);
    qd_gemm_w4_f32(Af, lda, M, W, vf, ldc);
    CHECK(same_bytes(v8, r8, cb, "selected w4 x s8 vs ref", M, N, K, G));
    CHECK(same_bytes(vf, rf, cb, "selected w4 x f32 vs ref", M, N, K, G));
    qd_gemm_w4_free(W);
    free(A), free(Af), free(as), free(codes), free(packed), free(sc), free(bias), free(zr);
    free(e8), free(ef), free(r8), free(rf), free(v8), free(vf);
}

/* K = 5 in groups of 2 (the last group one column), one channel */
static void tiny_case(const qd_kernel_table *k)
{
    const uint8_t packed[3] = {0xF0, 0x87, 0x03}; /* codes 0 15 | 7 8 | 3 */
    const float sc[3] = {0.5f, 0.25f, 2.0f}, bias = 0.25f, as = 0.5f;
    const int32_t zr[3] = {8, 0, 3};
    const int8_t A[5] = {1, -1, 2, 3, -128};
    const float Af[5] = {1, -1, 2, 3, -128};
    qd_gemm_w4 *W = NULL, *Wb = NULL;
    CHECK_EQ(qd_gemm_w4_create(packed, 1, 5, 3, 2, sc, zr, NULL, &W), 0);
    CHECK_EQ(qd_gemm_w4_create(packed, 1, 5, 3, 2, sc, zr, &bias, &Wb), 0);
    if (!W || !Wb) return;
    float c = 0;
    /* isum: 1·(0−8) − 1·(15−8) = −15; 2·7 + 3·8 = 38; −128·0 = 0 → 0.5·−15 + 0.25·38 + 0 = 2 */
    k->gemm_w4_s8(A, 5, &as, 1, W, &c, 1);
    CHECK_NEAR(c, 1.0, 0);
    k->gemm_w4_s8(A, 5, &as, 1, Wb, &c, 1);
    CHECK_NEAR(c, 1.25, 0);
    /* w' = −4, 3.5, 1.75, 2, 0 → −4 − 3.5 + 3.5 + 6 = 2 */
    k->gemm_w4_f32(Af, 5, 1, W, &c, 1);
    CHECK_NEAR(c, 2.0, 0);
    k->gemm_w4_f32(Af, 5, 1, Wb, &c, 1);
    CHECK_NEAR(c, 2.25, 0);
    qd_gemm_w4_free(W);
    qd_gemm_w4_free(Wb);
}

static void create_errors(void)
{
    const uint8_t p[4] = {0};
    const float s[2] = {1, 1};
    int32_t z[2] = {0, 16};
    qd_gemm_w4 *W = NULL;
    CHECK_EQ(qd_gemm_w4_create(p, 1, 4, 2, 2, s, z, NULL, &W), QD_EINVAL);
    CHECK_CONTAINS(qd_errmsg(), "zero point 16");
    CHECK(W == NULL);
    z[1] = -1;
    CHECK_EQ(qd_gemm_w4_create(p, 1, 4, 2, 2, s, z, NULL, &W), QD_EINVAL);
    z[1] = 15;
    CHECK_EQ(qd_gemm_w4_create(p, 1, 4, 1, 2, s, z, NULL, &W), QD_EINVAL); /* ldw < ceil(K/2) */
    CHECK_EQ(qd_gemm_w4_create(p, 1, 4, 2, 0, s, z, NULL, &W), QD_EINVAL);
    CHECK_EQ(qd_gemm_w4_create(p, 1, 4, 2, 2, s, z, NULL, &W), 0);
    qd_gemm_w4_free(W);
    qd_gemm_w4_free(NULL);
}

int main(void)
{
    g_ref = qd_kernels_table("ref");
    g_isa = qd_kernels_table("avx2");
    printf("selected kernels: %s\n", qd_kernels_isa());
    if (!g_isa) printf("SKIP: this CPU lacks AVX2/FMA/F16C; only the reference is checked\n");
    CHECK(g_ref->gemm_w4_s8 && g_ref->gemm_w4_f32);
    if (g_isa) CHECK(g_isa->gemm_w4_s8 != g_ref->gemm_w4_s8 && g_isa->gemm_w4_f32 != g_ref->gemm_w4_f32);

    tiny_case(g_ref);
    if (g_isa) tiny_case(g_isa);
    create_errors();

    for (int64_t M = 1; M <= 9; M += 4)
        for (int64_t N = 1; N <= 34; N += 11)
            for (int64_t K = 1; K <= 70; K += 7) {
                const int64_t Gs[] = {1, 3, 16, 32, K, K + 5};
                for (size_t gi = 0; gi < QD_ARRAY_LEN(Gs); gi++)
                    w4_case((int)irand(0, ND - 1), M, N, K, Gs[gi], (int)irand(0, 1));
            }
    static const int64_t shapes[][4] = {
        {1, 768, 768, 128}, {7, 33, 3072, 128}, {13, 21, 3071, 64},  {100, 40, 768, 128}, {97, 290, 520, 32},
        {6, 16, 256, 256},  {5, 300, 1000, 3},  {3, 17, 3072, 3072}, {4, 16, 4096, 4096}, {11, 19, 100, 48},
    };
    for (size_t i = 0; i < QD_ARRAY_LEN(shapes); i++)
        for (int kind = 0; kind < ND; kind++)
            w4_case(kind, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][3], kind & 1);
    QD_TEST_MAIN_END();
}
