/* INT8 GEMM (kernels/gemm.h) and the per-row activation quantizer.
 *
 * The reference against formulas written out here (int64 dot products of the original row-major
 * codes, the float epilogue, quant/fixed.h's qd_requantize_s8 for the int8 output), and every ISA
 * version against the reference bit for bit (memcmp), over odd shapes (M = 1, M, N, K not multiples
 * of the 6 x 16 tile, the K block or the row block), random full-range int8 data and adversarial
 * data (every value -128: the largest accumulator, K = 3072 and K = QD_GEMM_MAX_K; -128 against
 * 127; alternating signs), a hand-computed case, output strides with guard columns that must stay
 * untouched, and the quantizer on ties, zero rows, NaN, infinities and underflowing scales. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/kernels.h"
#include "qd_test.h"
#include "quant/fixed.h"

#define GUARD_BYTE 0xA5
#define GUARD_COLS 5

static uint64_t rng = 0x9E3779B97F4A7C15ull;
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

/* memcmp with the first differing element named */
static int same_bytes(const void *a, const void *b, size_t n, const char *what, int64_t M, int64_t N, int64_t K)
{
    if (memcmp(a, b, n) == 0) return 1;
    size_t i = 0;
    while (((const uint8_t *)a)[i] == ((const uint8_t *)b)[i]) i++;
    fprintf(stderr, "%s: M=%lld N=%lld K=%lld: first difference at byte %zu\n", what, (long long)M, (long long)N,
            (long long)K, i);
    return 0;
}

/* ---- data ------------------------------------------------------------------------------------ */

enum { D_RANDOM, D_ALL_MIN, D_MIN_MAX, D_ALTERNATE, D_SMALL, ND };
static const char *dname[ND] = {"random", "all -128", "-128 x 127", "alternating", "small"};

static void fill(int kind, int8_t *a, int64_t n, int is_w)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case D_RANDOM: a[i] = (int8_t)irand(-128, 127); break;
        case D_ALL_MIN: a[i] = -128; break;
        case D_MIN_MAX: a[i] = is_w ? 127 : -128; break;
        case D_ALTERNATE: a[i] = (i & 1) ? 127 : -128; break;
        default: a[i] = (int8_t)irand(-3, 3); break;
        }
    }
}

/* ---- one GEMM case --------------------------------------------------------------------------- */

static void gemm_case(int kind, int64_t M, int64_t N, int64_t K, int with_bias)
{
    const int64_t lda = K + irand(0, 3), ldw = K + irand(0, 2), ldc = N + GUARD_COLS;
    int8_t *A = malloc((size_t)(M * lda)), *Wc = malloc((size_t)(N * ldw));
    float *as = malloc((size_t)M * sizeof(float)), *ws = malloc((size_t)N * sizeof(float));
    float *bias = malloc((size_t)N * sizeof(float));
    int64_t *acc = malloc((size_t)(M * N) * sizeof(int64_t));
    fill(kind, A, M * lda, 0);
    fill(kind, Wc, N * ldw, 1);
    for (int64_t m = 0; m < M; m++) as[m] = (float)(unif() * 0.1 + 1e-4);
    for (int64_t n = 0; n < N; n++) ws[n] = (float)(unif() * 0.01 + 1e-5), bias[n] = gauss();
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += (int64_t)A[m * lda + k] * Wc[n * ldw + k];
            acc[m * N + n] = s;
        }
    qd_gemm_w8 *W = NULL;
    CHECK_EQ(qd_gemm_w8_create(Wc, N, K, ldw, ws, with_bias ? bias : NULL, &W), 0);
    if (!W) return;
    CHECK_EQ(qd_gemm_w8_n(W), N);
    CHECK_EQ(qd_gemm_w8_k(W), K);

    /* requantization: per-channel multipliers spread over [2^-40, 2^12] (negative, zero and
     * positive shifts, some saturating) or exactly 2^(shift-1) (ties), int32 biases up to the
     * bound, zero points to +-2^15 */
    int32_t *mult = malloc((size_t)N * sizeof(int32_t)), *shift = malloc((size_t)N * sizeof(int32_t));
    int32_t *b32 = malloc((size_t)N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) {
        int sh = 0;
        const int64_t pick = irand(0, 9);
        if (pick < 3) { /* M0 = 2^30: halves, so both roundings meet exact ties */
            mult[n] = 1 << 30;
            sh = (int)irand(-12, 3);
        } else if (pick == 3) { /* shifts past ±31 act as ±31; M0 = 0 */
            static const int far[] = {-100, -40, -32, -31, 31, 32, 40, 100};
            mult[n] = irand(0, 4) ? (int32_t)irand(1 << 30, INT32_MAX) : 0;
            sh = far[irand(0, 7)];
        } else {
            const double real = ldexp(1.0 + unif(), (int)irand(-40, 12));
            CHECK_EQ(qd_quantize_multiplier(real, &mult[n], &sh), 0);
        }
        shift[n] = sh;
        const int64_t r = irand(0, 9);
        b32[n] = r == 0 ? (1 << 30) - 1 : r == 1 ? -(1 << 30) + 1 : (int32_t)irand(-(1 << 20), 1 << 20);
    }
    const int32_t zps[] = {0, -128, 127, 17, 32768, -32768};
    const qd_requant rq = {with_bias ? b32 : NULL, mult, shift, zps[irand(0, 5)]};

    const size_t cf = (size_t)(M * ldc) * sizeof(float), c32 = (size_t)(M * ldc) * sizeof(int32_t),
                 c8 = (size_t)(M * ldc);
    float *fexp = malloc(cf), *fref = malloc(cf), *fisa = malloc(cf);
    int32_t *iexp = malloc(c32), *iref = malloc(c32), *iisa = malloc(c32);
    int8_t *bexp = malloc(c8), *bref = malloc(c8), *bisa = malloc(c8);
    memset(fexp, GUARD_BYTE, cf), memset(fref, GUARD_BYTE, cf), memset(fisa, GUARD_BYTE, cf);
    memset(iexp, GUARD_BYTE, c32), memset(iref, GUARD_BYTE, c32), memset(iisa, GUARD_BYTE, c32);
    memset(bexp, GUARD_BYTE, c8), memset(bref, GUARD_BYTE, c8), memset(bisa, GUARD_BYTE, c8);
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            const int64_t s = acc[m * N + n];
            iexp[m * ldc + n] = (int32_t)s;
            float v = (float)s * as[m] * ws[n];
            if (with_bias) v = v + bias[n];
            fexp[m * ldc + n] = v;
            bexp[m * ldc + n] =
                qd_requantize_s8((int32_t)(s + (with_bias ? b32[n] : 0)), mult[n], shift[n], rq.zero_point);
        }

    char what[160];
    snprintf(what, sizeof what, "%s%s", dname[kind], with_bias ? " +bias" : "");
    g_ref->gemm_s8_s32(A, lda, M, W, iref, ldc);
    g_ref->gemm_s8_f32(A, lda, as, M, W, fref, ldc);
    g_ref->gemm_s8_s8(A, lda, M, W, &rq, bref, ldc);
    CHECK_MSG(same_bytes(iref, iexp, c32, "ref s32 vs int64 formula", M, N, K), "%s", what);
    CHECK_MSG(same_bytes(fref, fexp, cf, "ref f32 vs formula", M, N, K), "%s", what);
    CHECK_MSG(same_bytes(bref, bexp, c8, "ref s8 vs qd_requantize_s8", M, N, K), "%s", what);
    if (g_isa) {
        g_isa->gemm_s8_s32(A, lda, M, W, iisa, ldc);
        g_isa->gemm_s8_f32(A, lda, as, M, W, fisa, ldc);
        g_isa->gemm_s8_s8(A, lda, M, W, &rq, bisa, ldc);
        CHECK_MSG(same_bytes(iisa, iref, c32, "isa s32 vs ref", M, N, K), "%s", what);
        CHECK_MSG(same_bytes(fisa, fref, cf, "isa f32 vs ref", M, N, K), "%s", what);
        CHECK_MSG(same_bytes(bisa, bref, c8, "isa s8 vs ref", M, N, K), "%s", what);
    }
    /* the selected table through the public calls */
    memset(fisa, GUARD_BYTE, cf);
    qd_gemm_s8_f32(A, lda, as, M, W, fisa, ldc);
    CHECK_MSG(same_bytes(fisa, fref, cf, "selected f32 vs ref", M, N, K), "%s", what);

    qd_gemm_w8_free(W);
    free(A), free(Wc), free(as), free(ws), free(bias), free(acc), free(mult), free(shift), free(b32);
    free(fexp), free(fref), free(fisa), free(iexp), free(iref), free(iisa), free(bexp), free(bref), free(bisa);
}

/* ---- hand-computed ---------------------------------------------------------------------------- */

static void tiny_case(const qd_kernel_table *k)
{
    const int8_t A[2 * 3] = {1, -2, 3, -128, 127, 0};
    const int8_t Wc[2 * 3] = {4, 5, -6, -128, -128, 127};
    const float as[2] = {0.5f, 0.25f}, ws[2] = {2.0f, 0.125f}, bias[2] = {1.0f, -1.0f};
    qd_gemm_w8 *W = NULL;
    CHECK_EQ(qd_gemm_w8_create(Wc, 2, 3, 3, ws, bias, &W), 0);
    if (!W) return;
    int32_t c32[4];
    float cf[4];
    int8_t c8[4];
    k->gemm_s8_s32(A, 3, 2, W, c32, 2);
    CHECK_EQ(c32[0], -24);
    CHECK_EQ(c32[1], 509);
    CHECK_EQ(c32[2], 123);
    CHECK_EQ(c32[3], 128);
    k->gemm_s8_f32(A, 3, as, 2, W, cf, 2);
    CHECK_NEAR(cf[0], -23.0, 0);
    CHECK_NEAR(cf[1], 30.8125, 0);
    CHECK_NEAR(cf[2], 62.5, 0);
    CHECK_NEAR(cf[3], 3.0, 0);
    /* multiplier 0.5 (M0 = 2^30, shift 0), zero point 3: round half up in the high multiply */
    const int32_t mult[2] = {1 << 30, 1 << 30}, shift[2] = {0, 0};
    const qd_requant rq = {NULL, mult, shift, 3};
    k->gemm_s8_s8(A, 3, 2, W, &rq, c8, 2);
    CHECK_EQ(c8[0], -9);  /* -12 + 3 */
    CHECK_EQ(c8[1], 127); /* 254.5 -> 255, + 3, saturated */
    CHECK_EQ(c8[2], 65);  /* 61.5 -> 62, + 3 */
    CHECK_EQ(c8[3], 67);  /* 64 + 3 */
    qd_gemm_w8_free(W);
}

/* ---- activation quantizer -------------------------------------------------------------------- */

static int8_t formula_q(float x, float s)
{
    if (s == 0.0f) return 0;
    float r = rintf(x / s);
    if (isnan(r)) return 0;
    return (int8_t)(r < -127.0f ? -127 : r > 127.0f ? 127 : (int)r);
}

static long n_ties = 0;

static void quant_case(int mode, int64_t M, int64_t K)
{
    const int64_t ldx = K + irand(0, 3), ldq = K + irand(0, 3);
    float *x = malloc((size_t)(M * ldx) * sizeof(float));
    float *se = malloc((size_t)M * sizeof(float)), *sr = malloc((size_t)M * sizeof(float));
    float *si = malloc((size_t)M * sizeof(float));
    int8_t *qe = malloc((size_t)(M * ldq)), *qr = malloc((size_t)(M * ldq)), *qi = malloc((size_t)(M * ldq));
    for (int64_t m = 0; m < M; m++) {
        float *r = x + m * ldx;
        const int64_t kind = mode == 0 ? irand(0, 7) : 8;
        const float sigma = (float)pow(10.0, (double)irand(-6, 3));
        for (int64_t k = 0; k < ldx; k++) r[k] = sigma * gauss();
        if (kind == 1) { /* exact ties: absmax 127·2^e gives the scale 2^e, x = (j + 1/2)·2^e */
            const int e = (int)irand(-20, 5);
            for (int64_t k = 0; k < K; k++) r[k] = ldexpf((float)irand(-127, 126) + 0.5f, e);
            r[irand(0, K - 1)] = ldexpf(irand(0, 1) ? 127.0f : -127.0f, e);
            n_ties += K - 1;
        } else if (kind == 2) {
            for (int64_t k = 0; k < K; k++) r[k] = irand(0, 1) ? 0.0f : -0.0f;
        } else if (kind == 3) {
            r[irand(0, K - 1)] = NAN;
        } else if (kind == 4) {
            r[irand(0, K - 1)] = irand(0, 1) ? INFINITY : -INFINITY;
        } else if (kind == 5) { /* absmax / 127 underflows to 0 */
            for (int64_t k = 0; k < K; k++) r[k] = irand(0, 1) ? 1e-45f : -1e-45f;
        } else if (kind == 6) {
            for (int64_t k = 0; k < K; k++) r[k] = irand(0, 3) ? FLT_MAX * (float)unif() : -FLT_MAX;
        } else if (kind == 8) { /* static scale: values beyond the range clamp */
            for (int64_t k = 0; k < K; k++) r[k] = 3.0f * sigma * gauss();
        }
    }
    const float st = 0.731f * (float)pow(10.0, (double)irand(-6, 3)) / 127.0f;
    const float *sp = mode == 0 ? NULL : &st;
    for (int64_t m = 0; m < M; m++) {
        const float *r = x + m * ldx;
        float s = st;
        if (!sp) {
            float amax = 0.0f;
            for (int64_t k = 0; k < K; k++) amax = fmaxf(amax, fabsf(r[k])); /* fmaxf ignores NaN */
            s = amax / 127.0f;
        }
        se[m] = s;
        for (int64_t k = 0; k < K; k++) qe[m * ldq + k] = formula_q(r[k], s);
    }
    memset(qr, GUARD_BYTE, (size_t)(M * ldq)), memset(qi, GUARD_BYTE, (size_t)(M * ldq));
    g_ref->quantize_rows_s8(x, M, K, ldx, sp, sr, qr, ldq);
    int ok = 1;
    for (int64_t m = 0; m < M && ok; m++) {
        ok = memcmp(&sr[m], &se[m], sizeof(float)) == 0 && memcmp(qr + m * ldq, qe + m * ldq, (size_t)K) == 0;
        for (int64_t k = K; k < ldq && ok; k++) ok = (uint8_t)qr[m * ldq + k] == GUARD_BYTE;
        CHECK_MSG(ok, "ref quantizer vs formula: mode %d M=%lld K=%lld row %lld", mode, (long long)M, (long long)K,
                  (long long)m);
    }
    if (g_isa) {
        g_isa->quantize_rows_s8(x, M, K, ldx, sp, si, qi, ldq);
        CHECK(same_bytes(si, sr, (size_t)M * sizeof(float), "isa scales vs ref", M, 0, K));
        CHECK(same_bytes(qi, qr, (size_t)(M * ldq), "isa codes vs ref", M, 0, K));
    }
    free(x), free(se), free(sr), free(si), free(qe), free(qr), free(qi);
}

static void quant_known(const qd_kernel_table *k)
{
    const float x[8] = {127.0f, 0.5f, 1.5f, -2.5f, -127.0f, 63.49f, NAN, -0.0f};
    const int8_t want[8] = {127, 0, 2, -2, -127, 63, 0, 0};
    float s = -1;
    int8_t q[8];
    k->quantize_rows_s8(x, 1, 8, 8, NULL, &s, q, 8);
    CHECK_NEAR(s, 1.0, 0);
    for (int i = 0; i < 8; i++) CHECK_EQ(q[i], want[i]);
    const float st = 0.5f;
    k->quantize_rows_s8(x, 1, 8, 8, &st, &s, q, 8);
    CHECK_NEAR(s, 0.5, 0);
    CHECK_EQ(q[0], 127); /* 254 clamps */
    CHECK_EQ(q[1], 1);
    CHECK_EQ(q[3], -5);
    CHECK_EQ(q[4], -127);
}

/* ---- bad shapes -------------------------------------------------------------------------------- */

static void create_errors(void)
{
    int8_t w[4] = {0};
    float s[2] = {1, 1};
    qd_gemm_w8 *W = (qd_gemm_w8 *)&w; /* must be reset to NULL */
    CHECK_EQ(qd_gemm_w8_create(w, 0, 2, 2, s, NULL, &W), QD_EINVAL);
    CHECK(W == NULL);
    CHECK_EQ(qd_gemm_w8_create(w, 2, 2, 1, s, NULL, &W), QD_EINVAL);
    CHECK_EQ(qd_gemm_w8_create(w, 2, QD_GEMM_MAX_K + 1, QD_GEMM_MAX_K + 1, s, NULL, &W), QD_EINVAL);
    CHECK_CONTAINS(qd_errmsg(), "K=65537");
    qd_gemm_w8_free(NULL);
}

int main(void)
{
    g_ref = qd_kernels_table("ref");
    g_isa = qd_kernels_table("avx2");
    printf("selected kernels: %s\n", qd_kernels_isa());
    if (!g_isa) printf("SKIP: this CPU lacks AVX2/FMA/F16C; only the reference is checked\n");
    CHECK(g_ref->gemm_s8_f32 && g_ref->gemm_s8_s32 && g_ref->gemm_s8_s8 && g_ref->quantize_rows_s8);
    if (g_isa) CHECK(g_isa->gemm_s8_f32 != g_ref->gemm_s8_f32 && g_isa->quantize_rows_s8 != g_ref->quantize_rows_s8);

    tiny_case(g_ref);
    if (g_isa) tiny_case(g_isa);
    quant_known(g_ref);
    if (g_isa) quant_known(g_isa);
    create_errors();

    /* small shapes: every M, N, K up to a few tiles */
    for (int64_t M = 1; M <= 13; M += 3)
        for (int64_t N = 1; N <= 35; N += 5)
            for (int64_t K = 1; K <= 40; K += 3) gemm_case((int)irand(0, ND - 1), M, N, K, (int)irand(0, 1));
    /* shapes across the K block (384), the row block and the 16-channel panels */
    static const int64_t shapes[][3] = {{1, 1, 3072},    {1, 768, 768},  {7, 33, 3072}, {13, 21, 3071}, {50, 47, 385},
                                        {100, 40, 3072}, {61, 130, 777}, {6, 16, 384},  {12, 32, 386},  {5, 17, 1}};
    for (size_t i = 0; i < QD_ARRAY_LEN(shapes); i++)
        for (int kind = 0; kind < ND; kind++) gemm_case(kind, shapes[i][0], shapes[i][1], shapes[i][2], kind & 1);
    /* the largest K: every product -128·-128, acc = 2^30 */
    gemm_case(D_ALL_MIN, 2, 17, QD_GEMM_MAX_K, 1);
    gemm_case(D_MIN_MAX, 3, 5, QD_GEMM_MAX_K, 0);

    for (int mode = 0; mode < 2; mode++)
        for (int64_t K = 1; K <= 70; K++) quant_case(mode, (int)irand(1, 4), K);
    quant_case(0, 64, 768);
    quant_case(1, 9, 3072);
    printf("%ld exact .5 ties quantized\n", n_ties);
    CHECK_GT(n_ties, 1000);
    QD_TEST_MAIN_END();
}
