/* The inference runtime's kernels (kernels/gemm.h inference path, kernels/infer.h): the reference
 * against formulas written out here (int64 dot products of the row-major codes, double-precision
 * LayerNorm and attention within float tolerances, qd_quantize_rows_s8's codes + 128), and every
 * table this CPU offers (avx2, avxvnni, avx512, avx512vnni, amx) against the reference bit for bit
 * (memcmp), with weights packed in that table's layout and in the other one. Shapes: one row, rows
 * that do not fill a microkernel or an AMX tile (1..17, 25, 33), K not a multiple of 4, 8, 64;
 * column ranges split as threads split them; guard columns that must stay untouched. Data: random
 * full-range codes and the extremes (every activation -128 or 127 against every weight -128 or
 * 127, K up to QD_GEMM_MAX_K: the largest accumulators). Tables the CPU lacks are reported as
 * skipped; the reference checks always run. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/gemm_pack.h"
#include "kernels/infer.h"
#include "kernels/kernels.h"
#include "qd_test.h"

#define GUARD 7

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{ /* splitmix64 */
    uint64_t z = (rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int64_t irand(int64_t lo, int64_t hi) { return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 40) * 0x1.0p-24); }

static const char *isas[] = {"avx2", "avxvnni", "avx512", "avx512vnni", "amx"};
#define NISA 5
static const qd_kernel_table *g_ref;

static int same(const void *a, const void *b, size_t n, const char *what, const char *isa, int64_t M, int64_t N,
                int64_t K)
{
    if (memcmp(a, b, n) == 0) return 1;
    size_t i = 0;
    while (((const uint8_t *)a)[i] == ((const uint8_t *)b)[i]) i++;
    fprintf(stderr, "%s [%s]: M=%lld N=%lld K=%lld: first difference at byte %zu\n", what, isa, (long long)M,
            (long long)N, (long long)K, i);
    return 0;
}

/* ---- activation quantizer ------------------------------------------------------------------------ */

static void check_quantizer(void)
{
    const int64_t Ks[] = {1, 7, 16, 31, 33, 64, 100, 384};
    for (size_t ki = 0; ki < QD_ARRAY_LEN(Ks); ki++) {
        const int64_t K = Ks[ki], M = 9, ld = K + 3;
        float *x = malloc((size_t)(M * ld) * sizeof(float)), *cm = malloc((size_t)K * sizeof(float));
        for (int64_t i = 0; i < M * ld; i++) x[i] = frand(-8, 8);
        for (int64_t k = 0; k < K; k++) cm[k] = k % 5 == 0 ? 0.0f : frand(0.25f, 4.0f);
        for (int64_t k = 0; k < K; k++) x[k] = 0.0f;                        /* row 0: zero */
        x[ld] = NAN, x[ld + K - 1] = INFINITY;                              /* row 1 */
        for (int64_t k = 0; k < K; k++) x[2 * ld + k] = (float)(k % 3) - 1; /* row 2: ties at 127 */
        x[3 * ld] = 1e-44f;                                                 /* row 3: underflowing scale */
        for (int with_cm = 0; with_cm < 2; with_cm++) {
            const float *c = with_cm ? cm : NULL;
            uint8_t *qr = malloc((size_t)(M * ld)), *qi = malloc((size_t)(M * ld));
            float sr[9], si[9];
            memset(qr, 0xA5, (size_t)(M * ld));
            g_ref->quantize_rows_u8(x, M, K, ld, c, sr, qr, ld);
            /* the reference against the int8 quantizer (+ 128) of the multiplied rows */
            float *xm = malloc((size_t)(M * K) * sizeof(float));
            int8_t *qs = malloc((size_t)(M * K));
            float ss[9];
            for (int64_t m = 0; m < M; m++)
                for (int64_t k = 0; k < K; k++) xm[m * K + k] = c ? x[m * ld + k] * c[k] : x[m * ld + k];
            g_ref->quantize_rows_s8(xm, M, K, K, NULL, ss, qs, K);
            int ok = 1;
            for (int64_t m = 0; m < M; m++) {
                ok &= memcmp(&ss[m], &sr[m], 4) == 0;
                for (int64_t k = 0; k < K; k++) ok &= qr[m * ld + k] == (uint8_t)(qs[m * K + k] + 128);
                ok &= qr[m * ld + K] == 0xA5; /* stride padding untouched */
            }
            CHECK_MSG(ok, "u8 quantizer vs the int8 one, K=%lld col_mul=%d", (long long)K, with_cm);
            for (int ii = 0; ii < NISA; ii++) {
                const qd_kernel_table *t = qd_kernels_table(isas[ii]);
                if (!t) continue;
                memset(qi, 0xA5, (size_t)(M * ld));
                t->quantize_rows_u8(x, M, K, ld, c, si, qi, ld);
                CHECK(same(qr, qi, (size_t)(M * ld), "quantize_rows_u8 codes", isas[ii], M, 0, K));
                CHECK(same(sr, si, sizeof sr, "quantize_rows_u8 scales", isas[ii], M, 0, K));
            }
            free(qr), free(qi), free(xm), free(qs);
        }
        free(x), free(cm);
    }
}

static void check_col_absmax(void)
{
    const int64_t R = 7, K = 45, ld = 50;
    float *x = malloc((size_t)(R * ld) * sizeof(float)), s[45], mr[45], mi[45];
    for (int64_t i = 0; i < R * ld; i++) x[i] = frand(-9, 9);
    for (int64_t k = 0; k < K; k++) s[k] = frand(0.1f, 3.0f);
    x[3] = NAN, x[ld + 4] = -INFINITY;
    for (int with_s = 0; with_s < 2; with_s++) {
        for (int64_t k = 0; k < K; k++) mr[k] = 0.5f;
        g_ref->col_absmax(x, R, K, ld, with_s ? s : NULL, mr);
        int ok = 1;
        for (int64_t k = 0; k < K; k++) {
            float want = 0.5f;
            for (int64_t r = 0; r < R; r++) {
                const float a = fabsf(with_s ? x[r * ld + k] * s[k] : x[r * ld + k]);
                if (a > want) want = a;
            }
            ok &= want == mr[k];
        }
        CHECK_MSG(ok, "col_absmax reference vs formula (scaled %d)", with_s);
        for (int ii = 0; ii < NISA; ii++) {
            const qd_kernel_table *t = qd_kernels_table(isas[ii]);
            if (!t) continue;
            for (int64_t k = 0; k < K; k++) mi[k] = 0.5f;
            t->col_absmax(x, R, K, ld, with_s ? s : NULL, mi);
            CHECK(same(mr, mi, sizeof mr, "col_absmax", isas[ii], R, 0, K));
        }
    }
    free(x);
}

/* ---- int8 GEMM ---------------------------------------------------------------------------------- */

enum { D_RANDOM, D_MIN, D_MAXMIN, ND };

static void gemm_u8_case(int kind, int64_t M, int64_t N, int64_t K, int with_bias)
{
    const int64_t lda = K + irand(0, 3), ldc = N + GUARD;
    uint8_t *A = malloc((size_t)(M * lda));
    int8_t *W = malloc((size_t)(N * K));
    float *as = malloc((size_t)M * sizeof(float)), *ws = malloc((size_t)N * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float));
    for (int64_t i = 0; i < M * lda; i++)
        A[i] = kind == D_RANDOM ? (uint8_t)irand(0, 255) : kind == D_MIN ? 0 : (i & 1) ? 255 : 0;
    for (int64_t i = 0; i < N * K; i++) W[i] = kind == D_RANDOM ? (int8_t)irand(-128, 127) : (int8_t)-128;
    for (int64_t m = 0; m < M; m++) as[m] = frand(1e-3f, 0.1f);
    for (int64_t n = 0; n < N; n++) ws[n] = frand(1e-3f, 0.1f), bias[n] = frand(-1, 1);
    const float *b = with_bias ? bias : NULL;
    qd_gemm_w8 *Wv = NULL, *Wi = NULL;
    CHECK_EQ(qd_gemm_w8_create_layout(QD_GEMM_LAYOUT_VNNI, W, N, K, K, ws, b, &Wv), 0);
    CHECK_EQ(qd_gemm_w8_create_layout(QD_GEMM_LAYOUT_I16, W, N, K, K, ws, b, &Wi), 0);
    float *Cr = malloc((size_t)(M * ldc) * sizeof(float)), *Ci = malloc((size_t)(M * ldc) * sizeof(float));
    memset(Cr, 0x5A, (size_t)(M * ldc) * sizeof(float));
    g_ref->gemm_u8_f32(A, lda, as, M, Wv, 0, N, Cr, ldc);
    /* the reference against the formula: int64 sums of the row-major codes */
    int ok = 1;
    for (int64_t m = 0; m < M; m++) {
        for (int64_t n = 0; n < N; n++) {
            int64_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += ((int64_t)A[m * lda + k] - 128) * W[n * K + k];
            float v = (float)acc * as[m] * ws[n];
            if (b) v = v + b[n];
            ok &= memcmp(&v, &Cr[m * ldc + n], 4) == 0;
        }
        for (int64_t n = N; n < ldc; n++) ok &= ((uint32_t *)Cr)[m * ldc + n] == 0x5A5A5A5Au;
    }
    CHECK_MSG(ok, "reference u8 GEMM vs formula: M=%lld N=%lld K=%lld data %d", (long long)M, (long long)N,
              (long long)K, kind);
    /* both layouts through every table, whole and in column ranges */
    for (int ii = -1; ii < NISA; ii++) {
        const qd_kernel_table *t = ii < 0 ? g_ref : qd_kernels_table(isas[ii]);
        if (!t) continue;
        for (int lay = 0; lay < 2; lay++) {
            const qd_gemm_w8 *Wx = lay ? Wi : Wv;
            memset(Ci, 0x5A, (size_t)(M * ldc) * sizeof(float));
            const int64_t cut = N > 16 ? 16 * irand(0, (N - 1) / 16) : 0;
            t->gemm_u8_f32(A, lda, as, M, Wx, 0, cut, Ci, ldc);
            t->gemm_u8_f32(A, lda, as, M, Wx, cut, N, Ci, ldc);
            CHECK(same(Cr, Ci, (size_t)(M * ldc) * sizeof(float), lay ? "gemm_u8_f32 (I16 layout)" : "gemm_u8_f32",
                       ii < 0 ? "ref" : isas[ii], M, N, K));
        }
    }
    /* a dequantized column read back out of either layout (the outlier columns' weights) */
    float *col = malloc((size_t)N * sizeof(float));
    int okc = 1;
    for (int lay = 0; lay < 2; lay++)
        for (int64_t k = 0; k < K; k += 1 + K / 5) {
            qd_gemm_w8_column(lay ? Wi : Wv, k, col);
            for (int64_t n = 0; n < N; n++) okc &= col[n] == ws[n] * (float)W[n * K + k];
        }
    CHECK_MSG(okc, "qd_gemm_w8_column: N=%lld K=%lld", (long long)N, (long long)K);
    free(col);
    qd_gemm_w8_free(Wv), qd_gemm_w8_free(Wi);
    free(A), free(W), free(as), free(ws), free(bias), free(Cr), free(Ci);
}

/* ---- 4-bit GEMM --------------------------------------------------------------------------------- */

static void gemm_u8w4_case(int64_t M, int64_t N, int64_t K, int64_t G, int with_bias, int extreme)
{
    const int64_t lda = K + irand(0, 2), ldc = N + GUARD, ng = (K + G - 1) / G, rb = (K + 1) / 2;
    uint8_t *A = malloc((size_t)(M * lda)), *q = malloc((size_t)N * K), *packed = calloc((size_t)(N * rb), 1);
    float *as = malloc((size_t)M * sizeof(float)), *sc = malloc((size_t)(N * ng) * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float));
    int32_t *z = malloc((size_t)(N * ng) * sizeof(int32_t));
    for (int64_t i = 0; i < M * lda; i++) A[i] = extreme ? 0 : (uint8_t)irand(0, 255);
    for (int64_t i = 0; i < N * K; i++) q[i] = extreme ? 15 : (uint8_t)irand(0, 15);
    for (int64_t n = 0; n < N; n++)
        for (int64_t k = 0; k < K; k++) packed[n * rb + k / 2] |= (uint8_t)(q[n * K + k] << ((k & 1) * 4));
    for (int64_t i = 0; i < N * ng; i++) sc[i] = frand(1e-3f, 0.1f), z[i] = extreme ? 0 : (int32_t)irand(0, 15);
    for (int64_t m = 0; m < M; m++) as[m] = frand(1e-3f, 0.1f);
    for (int64_t n = 0; n < N; n++) bias[n] = frand(-1, 1);
    const float *b = with_bias ? bias : NULL;
    qd_gemm_w4 *Wv = NULL, *Wi = NULL;
    CHECK_EQ(qd_gemm_w4_create_layout(QD_GEMM_LAYOUT_VNNI, packed, N, K, rb, G, sc, z, b, &Wv), 0);
    CHECK_EQ(qd_gemm_w4_create_layout(QD_GEMM_LAYOUT_I16, packed, N, K, rb, G, sc, z, b, &Wi), 0);
    CHECK_EQ(Wv->layout, G % 8 == 0 && K % 8 == 0 ? QD_GEMM_LAYOUT_VNNI : QD_GEMM_LAYOUT_I16);
    float *Cr = malloc((size_t)(M * ldc) * sizeof(float)), *Ci = malloc((size_t)(M * ldc) * sizeof(float));
    memset(Cr, 0x5A, (size_t)(M * ldc) * sizeof(float));
    g_ref->gemm_u8w4_f32(A, lda, as, M, Wv, 0, N, Cr, ldc);
    int ok = 1;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t g = 0; g < ng; g++) {
                int64_t isum = 0;
                for (int64_t k = g * G; k < QD_MIN(K, (g + 1) * G); k++)
                    isum += ((int64_t)A[m * lda + k] - 128) * (q[n * K + k] - z[n * ng + g]);
                acc = fmaf(sc[n * ng + g], (float)isum, acc);
            }
            float v = acc * as[m];
            if (b) v = v + b[n];
            ok &= memcmp(&v, &Cr[m * ldc + n], 4) == 0;
        }
    CHECK_MSG(ok, "reference u8 x 4-bit GEMM vs formula: M=%lld N=%lld K=%lld G=%lld", (long long)M, (long long)N,
              (long long)K, (long long)G);
    for (int ii = -1; ii < NISA; ii++) {
        const qd_kernel_table *t = ii < 0 ? g_ref : qd_kernels_table(isas[ii]);
        if (!t) continue;
        for (int lay = 0; lay < 2; lay++) {
            memset(Ci, 0x5A, (size_t)(M * ldc) * sizeof(float));
            const int64_t cut = N > 16 ? 16 * irand(0, (N - 1) / 16) : 0;
            t->gemm_u8w4_f32(A, lda, as, M, lay ? Wi : Wv, 0, cut, Ci, ldc);
            t->gemm_u8w4_f32(A, lda, as, M, lay ? Wi : Wv, cut, N, Ci, ldc);
            CHECK(same(Cr, Ci, (size_t)(M * ldc) * sizeof(float), lay ? "gemm_u8w4_f32 (I16)" : "gemm_u8w4_f32",
                       ii < 0 ? "ref" : isas[ii], M, N, K));
        }
    }
    float *col = malloc((size_t)N * sizeof(float));
    int okc = 1;
    for (int lay = 0; lay < 2; lay++)
        for (int64_t k = 0; k < K; k += 1 + K / 7) {
            qd_gemm_w4_column(lay ? Wi : Wv, k, col);
            for (int64_t n = 0; n < N; n++)
                okc &= col[n] == sc[n * ng + k / G] * (float)(q[n * K + k] - z[n * ng + k / G]);
        }
    CHECK_MSG(okc, "qd_gemm_w4_column: N=%lld K=%lld G=%lld", (long long)N, (long long)K, (long long)G);
    free(col);
    qd_gemm_w4_free(Wv), qd_gemm_w4_free(Wi);
    free(A), free(q), free(packed), free(as), free(sc), free(bias), free(z), free(Cr), free(Ci);
}

/* ---- FP32 GEMM ---------------------------------------------------------------------------------- */

static void gemm_f32_case(int64_t M, int64_t N, int64_t K, int with_bias)
{
    const int64_t lda = K + irand(0, 3), ldc = N + GUARD;
    float *A = malloc((size_t)(M * lda) * sizeof(float)), *W = malloc((size_t)(N * K) * sizeof(float)),
          *bias = malloc((size_t)N * sizeof(float));
    for (int64_t i = 0; i < M * lda; i++) A[i] = frand(-2, 2);
    for (int64_t i = 0; i < N * K; i++) W[i] = frand(-0.2f, 0.2f);
    for (int64_t n = 0; n < N; n++) bias[n] = frand(-1, 1);
    qd_gemm_wf *P = NULL;
    CHECK_EQ(qd_gemm_wf_create(W, N, K, K, with_bias ? bias : NULL, &P), 0);
    float *Cr = malloc((size_t)(M * ldc) * sizeof(float)), *Ci = malloc((size_t)(M * ldc) * sizeof(float));
    memset(Cr, 0x5A, (size_t)(M * ldc) * sizeof(float));
    g_ref->gemm_f32(A, lda, M, P, 0, N, Cr, ldc);
    int ok = 1;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc = fmaf(A[m * lda + k], W[n * K + k], acc);
            if (with_bias) acc = acc + bias[n];
            ok &= memcmp(&acc, &Cr[m * ldc + n], 4) == 0;
        }
    CHECK_MSG(ok, "reference FP32 GEMM vs formula: M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    for (int ii = 0; ii < NISA; ii++) {
        const qd_kernel_table *t = qd_kernels_table(isas[ii]);
        if (!t) continue;
        memset(Ci, 0x5A, (size_t)(M * ldc) * sizeof(float));
        const int64_t cut = N > 16 ? 16 * irand(0, (N - 1) / 16) : 0;
        t->gemm_f32(A, lda, M, P, 0, cut, Ci, ldc);
        t->gemm_f32(A, lda, M, P, cut, N, Ci, ldc);
        CHECK(same(Cr, Ci, (size_t)(M * ldc) * sizeof(float), "gemm_f32", isas[ii], M, N, K));
    }
    qd_gemm_wf_free(P);
    free(A), free(W), free(bias), free(Cr), free(Ci);
}

/* ---- LayerNorm and attention ---------------------------------------------------------------------- */

static void layernorm_case(int64_t rows, int64_t n, int resid, int want_sum, int alias)
{
    const int64_t ld = n + 5;
    float *x = malloc((size_t)(rows * ld) * sizeof(float)), *r = malloc((size_t)(rows * ld) * sizeof(float));
    float *g = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < rows * ld; i++) x[i] = frand(-3, 3) + 5.0f, r[i] = frand(-1, 1);
    for (int64_t i = 0; i < n; i++) g[i] = frand(0.5f, 1.5f), b[i] = frand(-0.5f, 0.5f);
    float *yr = malloc((size_t)(rows * ld) * sizeof(float)), *sr = malloc((size_t)(rows * ld) * sizeof(float));
    float *yi = malloc((size_t)(rows * ld) * sizeof(float)), *si = malloc((size_t)(rows * ld) * sizeof(float));
    memcpy(yr, x, (size_t)(rows * ld) * sizeof(float));
    memset(sr, 0, (size_t)(rows * ld) * sizeof(float));
    g_ref->layernorm(alias ? yr : x, resid ? r : NULL, rows, n, ld, g, b, 1e-12f, yr, want_sum ? sr : NULL);
    /* against double precision */
    double worst = 0;
    for (int64_t m = 0; m < rows; m++) {
        double s = 0, v = 0;
        for (int64_t i = 0; i < n; i++) s += (double)x[m * ld + i] + (resid ? r[m * ld + i] : 0);
        const double mean = s / n;
        for (int64_t i = 0; i < n; i++) {
            const double d = (double)x[m * ld + i] + (resid ? r[m * ld + i] : 0) - mean;
            v += d * d;
        }
        for (int64_t i = 0; i < n; i++) {
            const double d = (double)x[m * ld + i] + (resid ? r[m * ld + i] : 0) - mean;
            const double y = d / sqrt(v / n + 1e-12) * g[i] + b[i];
            worst = fmax(worst, fabs(y - yr[m * ld + i]));
        }
    }
    CHECK_MSG(worst < 2e-5, "reference LayerNorm vs double: n=%lld worst %.3g", (long long)n, worst);
    for (int ii = 0; ii < NISA; ii++) {
        const qd_kernel_table *t = qd_kernels_table(isas[ii]);
        if (!t) continue;
        memcpy(yi, x, (size_t)(rows * ld) * sizeof(float));
        memset(si, 0, (size_t)(rows * ld) * sizeof(float));
        t->layernorm(alias ? yi : x, resid ? r : NULL, rows, n, ld, g, b, 1e-12f, yi, want_sum ? si : NULL);
        CHECK(same(yr, yi, (size_t)(rows * ld) * sizeof(float), "layernorm", isas[ii], rows, n, 0));
        CHECK(same(sr, si, (size_t)(rows * ld) * sizeof(float), "layernorm sum", isas[ii], rows, n, 0));
    }
    free(x), free(r), free(g), free(b), free(yr), free(sr), free(yi), free(si);
}

/* the three steps through table t into ctx; scores kept in S */
static void attention_run(const qd_kernel_table *t, const float *q, const float *k, const float *v, int64_t ld,
                          int64_t T, int64_t d, float scale, float *S, int64_t lds, float *kt, float *ctx, int64_t ldc)
{
    t->attn_scores(q, k, ld, T, d, scale, S, lds, kt);
    t->softmax_rows(S, T, T, lds);
    t->attn_context(S, lds, v, ld, T, d, ctx, ldc);
}

static void attention_case(int64_t T, int64_t d)
{
    const int64_t A = 3 * d, ld = 3 * A, ldc = A + 3, t16 = (T + 15) / 16 * 16, lds = t16 + 16;
    float *qkv = malloc((size_t)(T * ld) * sizeof(float));
    for (int64_t i = 0; i < T * ld; i++) qkv[i] = frand(-2, 2);
    const float *q = qkv + d, *k = qkv + A + d, *v = qkv + 2 * A + d, scale = 1.0f / sqrtf((float)d);
    float *kt = malloc((size_t)(d * t16) * sizeof(float));
    float *Sr = malloc((size_t)(T * lds) * sizeof(float)), *Si = malloc((size_t)(T * lds) * sizeof(float));
    float *cr = malloc((size_t)(T * ldc) * sizeof(float)), *ci = malloc((size_t)(T * ldc) * sizeof(float));
    memset(cr, 0x5A, (size_t)(T * ldc) * sizeof(float));
    memset(Sr, 0x5A, (size_t)(T * lds) * sizeof(float));
    g_ref->attn_scores(q, k, ld, T, d, scale, Sr, lds, kt);
    int zero_pad = 1;
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = T; j < t16; j++) zero_pad &= Sr[i * lds + j] == 0.0f;
    CHECK_MSG(zero_pad, "scores past T are not 0: T=%lld", (long long)T);
    g_ref->softmax_rows(Sr, T, T, lds);
    g_ref->attn_context(Sr, lds, v, ld, T, d, cr, ldc);
    double worst = 0;
    for (int64_t i = 0; i < T; i++) {
        double s[256], mx = -1e300, sum = 0;
        for (int64_t j = 0; j < T; j++) {
            double a = 0;
            for (int64_t c = 0; c < d; c++) a += (double)q[i * ld + c] * k[j * ld + c];
            s[j] = a * scale;
            mx = fmax(mx, s[j]);
        }
        for (int64_t j = 0; j < T; j++) sum += (s[j] = exp(s[j] - mx));
        for (int64_t c = 0; c < d; c++) {
            double o = 0;
            for (int64_t j = 0; j < T; j++) o += s[j] / sum * v[j * ld + c];
            worst = fmax(worst, fabs(o - cr[i * ldc + c]));
        }
    }
    CHECK_MSG(worst < 1e-5, "reference attention vs double: T=%lld d=%lld worst %.3g", (long long)T, (long long)d,
              worst);
    for (int ii = 0; ii < NISA; ii++) {
        const qd_kernel_table *t = qd_kernels_table(isas[ii]);
        if (!t) continue;
        memset(ci, 0x5A, (size_t)(T * ldc) * sizeof(float));
        memset(Si, 0x5A, (size_t)(T * lds) * sizeof(float));
        attention_run(t, q, k, v, ld, T, d, scale, Si, lds, kt, ci, ldc);
        int ok = 1;
        for (int64_t i = 0; i < T; i++) ok &= memcmp(Sr + i * lds, Si + i * lds, (size_t)t16 * sizeof(float)) == 0;
        CHECK_MSG(ok, "attention probabilities [%s] differ: T=%lld d=%lld", isas[ii], (long long)T, (long long)d);
        CHECK(same(cr, ci, (size_t)(T * ldc) * sizeof(float), "attention", isas[ii], T, d, 0));
    }
    free(qkv), free(kt), free(Sr), free(Si), free(cr), free(ci);
}

int main(void)
{
    g_ref = qd_kernels_table("ref");
    printf("selected kernels: %s\n", qd_kernels_isa());
    for (int ii = 0; ii < NISA; ii++)
        printf("%-11s %s\n", isas[ii],
               qd_kernels_table(isas[ii]) ? "checked against the reference" : "SKIPPED: not on this CPU");
    check_quantizer();
    check_col_absmax();

    const int64_t Ms[] = {1, 3, 9, 16, 17, 25, 33};
    const int64_t shapes[][2] = {{16, 64}, {48, 128}, {50, 100}, {64, 3}, {96, 384}, {40, 130}, {33, 192}};
    for (size_t mi = 0; mi < QD_ARRAY_LEN(Ms); mi++)
        for (size_t si = 0; si < QD_ARRAY_LEN(shapes); si++)
            gemm_u8_case(D_RANDOM, Ms[mi], shapes[si][0], shapes[si][1], (int)((mi + si) & 1));
    gemm_u8_case(D_RANDOM, 40, 1152, 384, 1);
    gemm_u8_case(D_MIN, 17, 32, 3072, 0);             /* every a = -128 against every w = -128 */
    gemm_u8_case(D_MAXMIN, 20, 16, 3072, 1);          /* 127 and -128 alternating */
    gemm_u8_case(D_MIN, 17, 16, QD_GEMM_MAX_K, 0);    /* acc = 2^30 */
    gemm_u8_case(D_MAXMIN, 16, 16, QD_GEMM_MAX_K, 0); /* (a + 128) w sums near -2^31 */

    const int64_t gs[][3] = {{64, 32, 0},  {384, 32, 0}, {384, 64, 0}, {384, 384, 0}, {392, 8, 0},
                             {100, 32, 0}, {96, 24, 0},  {64, 16, 0},  {384, 128, 0}, {130, 13, 0}};
    for (size_t mi = 0; mi < QD_ARRAY_LEN(Ms); mi++)
        for (size_t gi = 0; gi < QD_ARRAY_LEN(gs); gi++)
            gemm_u8w4_case(Ms[mi], gi & 1 ? 48 : 40, gs[gi][0], gs[gi][1], (int)(gi & 1), 0);
    gemm_u8w4_case(9, 32, 4096, 32, 1, 1);  /* codes 15, zeros 0 against -128 */
    gemm_u8w4_case(33, 400, 384, 32, 1, 0); /* AMX: panels unpacked in two chunks, full and partial row tiles */

    for (size_t mi = 0; mi < QD_ARRAY_LEN(Ms); mi++) {
        gemm_f32_case(Ms[mi], 48, 64, 1);
        gemm_f32_case(Ms[mi], 50, 37, 0);
        gemm_f32_case(Ms[mi], 160, 384, 1);
    }

    const int64_t ns[] = {1, 7, 16, 17, 31, 64, 100, 384, 768};
    for (size_t i = 0; i < QD_ARRAY_LEN(ns); i++)
        for (int v = 0; v < 4; v++) layernorm_case(3, ns[i], v & 1, v >> 1, (v & 1) && (i & 1));

    const int64_t Ts[] = {1, 2, 5, 16, 17, 25, 50, 197};
    const int64_t ds[] = {8, 20, 32, 64};
    for (size_t i = 0; i < QD_ARRAY_LEN(Ts); i++)
        for (size_t j = 0; j < QD_ARRAY_LEN(ds); j++) attention_case(Ts[i], ds[j]);
    QD_TEST_MAIN_END();
}
