/* The integer-only kernels (kernels/intops.h): the reference against independent definitions —
 * quant/fixed.h's requantization, exact integer products, and double-precision LayerNorm, GELU and
 * softmax within the integer approximations' stated error — then every ISA table this CPU has
 * (AVX2 and AVX-512 on x86-64; NEON and NEON with SDOT on AArch64) bit for bit against the reference, on random
 * data with the edge values (saturating accumulators, extreme shifts, masked rows, tails of every
 * length, outlier channels). Also built for AArch64 and run under qemu (tests/arm/). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/intops.h"
#include "qd_test.h"
#include "quant/fixed.h"
#include "quant/intparams.h"

static uint64_t g_s = 12345;
static uint32_t r32(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_s >> 32);
}
/* uniform in [lo, hi]; the width in 64 bits (hi - lo overflows int32 for wide ranges) */
static int32_t rint_in(int32_t lo, int32_t hi)
{
    return (int32_t)((int64_t)lo + (int64_t)(r32() % (uint64_t)((int64_t)hi - lo + 1)));
}
static double runif(void) { return r32() / 4294967296.0; }

/* an int32 accumulator: mostly moderate, sometimes at the extremes */
static int32_t racc(void)
{
    switch (r32() % 16) {
    case 0: return INT32_MAX;
    case 1: return INT32_MIN;
    case 2: return (int32_t)r32();
    default: return (int32_t)r32() >> (8 + r32() % 16);
    }
}

static const char *g_isas[] = {"avx2", "avx512", "neon", "neon-dot"};

/* ---- the reference against definitions -------------------------------------------------------- */

static void ref_requant_rescale(const qd_intops_table *t)
{
    enum { M = 7, N = 37 };
    int32_t acc[M * N], bias[N], M0[N], sh[N], res[M * N], out32[M * N];
    int8_t out[M * N];
    long bad = 0;
    for (int it = 0; it < 200; it++) {
        for (int i = 0; i < M * N; i++) {
            acc[i] = racc();
            res[i] = racc() >> 4;
        }
        for (int n = 0; n < N; n++) {
            bias[n] = rint_in(-(1 << 30), 1 << 30);
            int s;
            qd_quantize_multiplier(ldexp(1.0 + runif(), rint_in(-40, 8)), &M0[n], &s);
            sh[n] = s;
            if (r32() % 8 == 0) M0[n] = 0;
        }
        const int32_t zp = rint_in(-128, 127), lo = r32() % 2 ? -128 : zp;
        const int pc = (int)(r32() % 2);
        t->requant_s8(acc, M, N, N, it % 3 ? bias : NULL, M0, sh, pc, zp, lo, out, N, NULL);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                int64_t a = acc[m * N + n] + (int64_t)(it % 3 ? bias[n] : 0);
                a = a > INT32_MAX ? INT32_MAX : a < INT32_MIN ? INT32_MIN : a;
                int want = qd_requantize_s8((int32_t)a, M0[pc ? n : 0], sh[pc ? n : 0], zp);
                if (want < lo) want = lo;
                bad += out[m * N + n] != want;
            }
        int s;
        int32_t rM0;
        qd_quantize_multiplier(ldexp(1.0 + runif(), rint_in(-20, 4)), &rM0, &s);
        const int32_t lim = (1 << 24) - 1;
        t->rescale_add(acc, M, N, N, bias, M0, sh, it % 2 ? res : NULL, N, rM0, s, lim, out32, N);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                int64_t a = acc[m * N + n] + (int64_t)bias[n];
                a = a > INT32_MAX ? INT32_MAX : a < INT32_MIN ? INT32_MIN : a;
                int64_t v = qd_multiply_by_quantized_multiplier((int32_t)a, M0[n], sh[n]);
                if (it % 2) v += qd_multiply_by_quantized_multiplier(res[m * N + n], rM0, s);
                v = v > lim ? lim : v < -lim ? -lim : v;
                bad += out32[m * N + n] != v;
            }
    }
    CHECK_EQ(bad, 0);
}

/* integer LayerNorm vs double: codes within 1 of the rounded exact value, fine values within
 * 1 + 2^-12 of theirs */
static void ref_layernorm(const qd_intops_table *t)
{
    enum { M = 40, N = 96 };
    int32_t x[M * N], g[N], fine[M * N];
    int64_t beta[N];
    int8_t out[M * N];
    float gamma[N], betaf[N];
    long bad = 0, badf = 0;
    double worst = 0;
    for (int it = 0; it < 60; it++) {
        const double s_in = ldexp(1.0, -rint_in(4, 16)), s_out = 0.02 + 0.1 * runif();
        for (int i = 0; i < N; i++) {
            gamma[i] = (float)(0.2 + 2 * runif()) * (r32() % 2 ? 1 : -1);
            betaf[i] = (float)(runif() - 0.5);
        }
        qd_iln p;
        qd_iln_params(gamma, betaf, N, 1e-5, s_in, s_out, rint_in(-20, 20), g, beta, &p);
        for (int m = 0; m < M; m++) {
            const int kind = m % 5, amp = 1 << rint_in(2, 23);
            const int32_t c = rint_in(-amp, amp) / 2;
            for (int i = 0; i < N; i++)
                x[m * N + i] = kind == 0   ? c                                          /* constant row */
                               : kind == 1 ? (i % 2 ? (1 << 24) - 1 : -((1 << 24) - 1)) /* saturated residual */
                                           : c + rint_in(-amp / 2, amp / 2);
        }
        t->layernorm(x, M, N, N, &p, out, N, fine, N, NULL);
        for (int m = 0; m < M; m++) {
            double mu = 0, v = 0;
            for (int i = 0; i < N; i++) mu += x[m * N + i] * s_in;
            mu /= N;
            for (int i = 0; i < N; i++) v += (x[m * N + i] * s_in - mu) * (x[m * N + i] * s_in - mu);
            const double inv = 1.0 / sqrt(v / N + 1e-5);
            for (int i = 0; i < N; i++) {
                const double y = (x[m * N + i] * s_in - mu) * inv * gamma[i] + betaf[i];
                double q = round(y / s_out) + p.zp;
                q = q > 127 ? 127 : q < -128 ? -128 : q;
                bad += fabs(out[m * N + i] - q) > 1;
                const double f = y / s_out * 256, e = fabs(fine[m * N + i] - f);
                badf += e > 1 + fabs(f) / 4096;
                if (e > worst) worst = e;
            }
        }
    }
    printf("layernorm: codes off by more than 1: %ld; fine values beyond 1 + |v| 2^-12: %ld (worst %.3g units)\n", bad,
           badf, worst);
    CHECK_EQ(bad, 0);
    CHECK_EQ(badf, 0);
}

/* i-GELU vs the exact (erf) GELU: I-BERT's erf polynomial is within 0.0183 of erf on the clip
 * interval (so GELU within |x| · 0.0092 + the output step) */
static void ref_gelu(const qd_intops_table *t)
{
    enum { N = 4096 };
    int32_t *acc = malloc(N * sizeof *acc), *M0 = malloc(N * sizeof *M0), *sh = malloc(N * sizeof *sh);
    int8_t *out = malloc(N);
    qd_igelu p;
    const double s_out = 8.0 / 255.0;
    qd_igelu_params(s_out, -10, &p);
    CHECK_EQ(p.xb, 2562);
    CHECK_EQ(p.qc, -7261607);
    CHECK_EQ(p.q1, -7261607);
    for (int i = 0; i < N; i++) qd_iparams_mult(1.0, &M0[i], &sh[i]); /* accumulators already in Q10 */
    for (int i = 0; i < N; i++) acc[i] = (int32_t)((i - N / 2) * 3);  /* x in [-6, 6) */
    acc[0] = INT32_MIN;
    acc[1] = INT32_MAX;
    acc[2] = 2562;
    acc[3] = -2562;
    acc[4] = 0;
    t->gelu_s8(acc, 1, N, N, NULL, M0, sh, &p, out, N, NULL);
    double worst = 0;
    long bad = 0;
    for (int i = 0; i < N; i++) {
        const double x = acc[i] / 1024.0, g = 0.5 * x * (1 + erf(x / sqrt(2.0)));
        const double got = (out[i] - p.zp) * s_out, e = fabs(got - fmin(g, 127 * s_out + 10 * s_out));
        if (acc[i] == INT32_MIN || acc[i] == INT32_MAX) continue;
        if (e > worst) worst = e;
        bad += e > 0.0092 * fmin(fabs(x), 2.5) + s_out;
    }
    CHECK_EQ(out[0], p.zp); /* very negative: GELU = 0 */
    CHECK_EQ(out[1], 127);  /* very positive: saturates */
    CHECK_EQ(out[4], p.zp); /* GELU(0) = 0 */
    printf("gelu: worst |i-GELU - GELU| %.4f on [-6, 6] (output step %.4f)\n", worst, s_out);
    CHECK_EQ(bad, 0);
    free(acc);
    free(M0);
    free(sh);
    free(out);
}

/* i-exp softmax vs double softmax: probabilities within 1.5/256 + 1% of p */
static void ref_softmax(const qd_intops_table *t)
{
    enum { N = 77 };
    int32_t s[N];
    uint8_t P[N], keep[N];
    qd_isoftmax p;
    qd_isoftmax_params(1.0 / 4096.0, &p);
    CHECK_EQ(p.qln2, 2839);
    CHECK_EQ(p.qb, 5541);
    CHECK_EQ(p.qc, 16098639);
    long bad = 0;
    for (int it = 0; it < 2000; it++) {
        const int n = 1 + (int)(r32() % N);
        const double spread = ldexp(1.0, rint_in(-2, 6));
        int nk = 0;
        for (int j = 0; j < n; j++) {
            s[j] = (int32_t)lround((runif() - 0.5) * spread * 4096);
            keep[j] = it % 3 ? (r32() % 4 != 0) : 1;
            nk += keep[j];
        }
        if (it % 50 == 0) s[0] = INT32_MAX;
        const uint8_t *kp = it % 3 ? keep : NULL;
        t->softmax_u8(s, n, kp, &p, P);
        double mx = -INFINITY, sum = 0;
        const int all = !kp || nk == 0;
        for (int j = 0; j < n; j++)
            if (all || keep[j]) mx = fmax(mx, s[j] / 4096.0);
        for (int j = 0; j < n; j++)
            if (all || keep[j]) sum += exp(s[j] / 4096.0 - mx);
        for (int j = 0; j < n; j++) {
            const double pe = all || keep[j] ? exp(s[j] / 4096.0 - mx) / sum : 0;
            bad += fabs(P[j] / 256.0 - fmin(pe, 255 / 256.0)) > 1.5 / 256 + 0.01 * pe;
            if (!all && !keep[j]) bad += P[j] != 0;
        }
    }
    CHECK_EQ(bad, 0);
}

static void ref_products(const qd_intops_table *t)
{
    enum { T = 19, D = 33, N = 29, K = 70, KO = 5 };
    int8_t Q[T * D], Kx[T * D], V[T * D], A[T * K], W[N * K], xo[T * KO], wo[N * KO];
    uint8_t P[T * T];
    int32_t S[T * T], C[T * D], acc[T * N], acc2[T * N];
    for (int i = 0; i < T * D; i++) {
        Q[i] = (int8_t)r32();
        Kx[i] = (int8_t)r32();
        V[i] = (int8_t)r32();
    }
    Q[0] = Kx[0] = V[0] = -128;
    for (int i = 0; i < T * T; i++) P[i] = (uint8_t)r32();
    for (int i = 0; i < T * K; i++) A[i] = (int8_t)r32();
    for (int i = 0; i < N * K; i++) W[i] = (int8_t)r32();
    for (int i = 0; i < T * KO; i++) xo[i] = (int8_t)r32();
    for (int i = 0; i < N * KO; i++) wo[i] = (int8_t)r32();
    const int32_t zq = 127, zk = -128, zv = 5;
    t->qk_s32(Q, D, zq, Kx, D, zk, T, T, D, S, T);
    t->pv_s32(P, T, V, D, zv, T, T, D, C, D);
    qd_igemm *g = t->igemm_pack(W, N, K, K);
    CHECK(g != NULL);
    t->igemm_s32(A, K, T, g, acc, N);
    t->igemm_free(g);
    memcpy(acc2, acc, sizeof acc);
    t->outlier_add(xo, KO, T, wo, N, KO, 3, acc2, N);
    long bad = 0;
    for (int i = 0; i < T; i++) {
        for (int j = 0; j < T; j++) {
            int64_t v = 0;
            for (int d = 0; d < D; d++) v += (int64_t)(Q[i * D + d] - zq) * (Kx[j * D + d] - zk);
            bad += S[i * T + j] != v;
        }
        for (int d = 0; d < D; d++) {
            int64_t v = 0;
            for (int j = 0; j < T; j++) v += (int64_t)P[i * T + j] * (V[j * D + d] - zv);
            bad += C[i * D + d] != v;
        }
        for (int n = 0; n < N; n++) {
            int64_t v = 0, o = 0;
            for (int k = 0; k < K; k++) v += (int64_t)A[i * K + k] * W[n * K + k];
            for (int k = 0; k < KO; k++) o += (int64_t)xo[i * KO + k] * wo[k * N + n];
            bad += acc[i * N + n] != v;
            bad += acc2[i * N + n] != v + o * 8;
        }
    }
    /* the full-range extreme: K = 65536 products of -128 x -128 = 2^30 exactly */
    enum { KB = 65536 };
    int8_t *a1 = malloc(KB), *w1 = malloc(2 * KB);
    memset(a1, 0x80, KB);
    memset(w1, 0x80, 2 * KB);
    w1[KB] = 127;
    g = t->igemm_pack(w1, 2, KB, KB);
    int32_t c2[2];
    t->igemm_s32(a1, KB, 1, g, c2, 2);
    t->igemm_free(g);
    CHECK_EQ(c2[0], 1 << 30);
    CHECK_EQ(c2[1], (1 << 30) - 128 * 255);
    free(a1);
    free(w1);
    CHECK_EQ(bad, 0);
}

/* the outlier split of each producer against its definition */
static void ref_split(const qd_intops_table *t)
{
    enum { M = 5, N = 40, NO = 3 };
    int32_t acc[M * N], bias[N], M0[N], sh[N], x[M * N], g[N], ch[NO] = {2, 17, 39};
    int64_t beta[N];
    int8_t out[M * N], oo[M * NO], out0[M * N];
    float gamma[N], betaf[N];
    for (int i = 0; i < M * N; i++) {
        acc[i] = racc() >> 8;
        x[i] = rint_in(-100000, 100000);
    }
    for (int n = 0; n < N; n++) {
        bias[n] = rint_in(-1000, 1000);
        int s;
        qd_quantize_multiplier(ldexp(1.0 + runif(), -rint_in(8, 14)), &M0[n], &s);
        sh[n] = s;
        gamma[n] = (float)(1 + runif());
        betaf[n] = (float)(runif() - 0.5);
    }
    qd_isplit sp = {.n = NO, .ch = ch, .e = 3, .zp = -7, .out = oo, .ld = NO};
    long bad = 0;
    /* requant: outlier j = the value at 2^3 times the scale, main = the zero point */
    t->requant_s8(acc, M, N, N, bias, M0, sh, 1, 4, -128, out0, N, NULL);
    t->requant_s8(acc, M, N, N, bias, M0, sh, 1, 4, -128, out, N, &sp);
    for (int m = 0; m < M; m++)
        for (int n = 0, j = 0; n < N; n++) {
            if (j < NO && ch[j] == n) {
                int want = qd_requantize_s8(acc[m * N + n] + bias[n], M0[n], sh[n] - 3, -7);
                bad += out[m * N + n] != 4 || oo[m * NO + j] != want;
                j++;
            } else
                bad += out[m * N + n] != out0[m * N + n];
        }
    /* layernorm: the outlier code equals the plain code at scale 8 s_out (within a rounding) */
    qd_iln p;
    qd_iln_params(gamma, betaf, N, 1e-5, 1.0 / 4096, 0.01, 3, g, beta, &p);
    qd_iln p8 = p;
    int32_t g8[N];
    int64_t b8[N];
    qd_iln_params(gamma, betaf, N, 1e-5, 1.0 / 4096, 0.08, -7, g8, b8, &p8);
    int8_t out8[M * N];
    t->layernorm(x, M, N, N, &p, out0, N, NULL, 0, NULL);
    t->layernorm(x, M, N, N, &p, out, N, NULL, 0, &sp);
    t->layernorm(x, M, N, N, &p8, out8, N, NULL, 0, NULL);
    for (int m = 0; m < M; m++)
        for (int n = 0, j = 0; n < N; n++) {
            if (j < NO && ch[j] == n) {
                bad += out[m * N + n] != 3 || abs(oo[m * NO + j] - out8[m * N + n]) > 1;
                j++;
            } else
                bad += out[m * N + n] != out0[m * N + n];
        }
    CHECK_EQ(bad, 0);
}

/* ---- every ISA against the reference ------------------------------------------------------------- */

static int same(const void *a, const void *b, size_t n, const char *isa, const char *what)
{
    if (!memcmp(a, b, n)) return 1;
    fprintf(stderr, "%s: %s differs from the reference\n", isa, what);
    return 0;
}

static void isa_vs_ref(const qd_intops_table *ref, const qd_intops_table *t)
{
    const char *isa = t->isa;
    for (int it = 0; it < 60; it++) {
        const int M = 1 + (int)(r32() % 9), N = 1 + (int)(r32() % 300), K = 1 + (int)(r32() % 200);
        int32_t *acc = malloc((size_t)M * N * 4), *bias = malloc((size_t)N * 4), *M0 = malloc((size_t)N * 4),
                *sh = malloc((size_t)N * 4), *res = malloc((size_t)M * N * 4), *o1 = malloc((size_t)M * (N + 64) * 4),
                *o2 = malloc((size_t)M * (N + 64) * 4), *f1 = malloc((size_t)M * N * 4),
                *f2 = malloc((size_t)M * N * 4);
        int8_t *b1 = malloc((size_t)M * N), *b2 = malloc((size_t)M * N), *A = malloc((size_t)M * K),
               *W = malloc((size_t)N * K);
        int32_t *g = malloc((size_t)N * 4), ch[8];
        int64_t *beta = malloc((size_t)N * 8);
        float *gamma = malloc((size_t)N * 4), *betaf = malloc((size_t)N * 4);
        int8_t so1[M * 8], so2[M * 8];
        for (int i = 0; i < M * N; i++) {
            acc[i] = racc();
            res[i] = rint_in(-(1 << 24) + 1, (1 << 24) - 1);
        }
        for (int n = 0; n < N; n++) {
            bias[n] = rint_in(-(1 << 30), 1 << 30);
            int s;
            qd_quantize_multiplier(ldexp(1.0 + runif(), rint_in(-40, it % 4 ? -1 : 6)), &M0[n], &s);
            sh[n] = s;
            gamma[n] = (float)(2 * runif() - 1);
            betaf[n] = (float)(runif() - 0.5);
        }
        const int nch = N >= 8 ? (int)(r32() % 4) : 0;
        for (int j = 0; j < nch; j++) ch[j] = j * (N / 4) + 1;
        qd_isplit sp1 = {.n = nch, .ch = ch, .e = 2, .zp = 5, .out = so1, .ld = 8}, sp2 = sp1;
        sp2.out = so2;
        const qd_isplit *s1 = nch ? &sp1 : NULL, *s2 = nch ? &sp2 : NULL;
        const int32_t zp = rint_in(-128, 127), lo = r32() % 2 ? -128 : zp;
        const int pc = (int)(r32() % 2);
        int ok = 1;
        memset(so1, 0, sizeof so1);
        memset(so2, 0, sizeof so2);
        ref->requant_s8(acc, M, N, N, it % 3 ? bias : NULL, M0, sh, pc, zp, lo, b1, N, s1);
        t->requant_s8(acc, M, N, N, it % 3 ? bias : NULL, M0, sh, pc, zp, lo, b2, N, s2);
        ok &= same(b1, b2, (size_t)M * N, isa, "requant_s8") && same(so1, so2, sizeof so1, isa, "requant_s8 split");
        int rs;
        int32_t rM0;
        qd_quantize_multiplier(ldexp(1.0 + runif(), rint_in(-20, 4)), &rM0, &rs);
        ref->rescale_add(acc, M, N, N, bias, M0, sh, it % 2 ? res : NULL, N, rM0, rs, (1 << 24) - 1, o1, N);
        t->rescale_add(acc, M, N, N, bias, M0, sh, it % 2 ? res : NULL, N, rM0, rs, (1 << 24) - 1, o2, N);
        ok &= same(o1, o2, (size_t)M * N * 4, isa, "rescale_add");
        qd_iln p;
        qd_iln_params(gamma, betaf, N, 1e-5, ldexp(1.0, -rint_in(4, 16)), 0.01 + 0.1 * runif(), zp, g, beta, &p);
        memset(f1, 0, (size_t)M * N * 4);
        memset(f2, 0, (size_t)M * N * 4);
        ref->layernorm(res, M, N, N, &p, b1, N, it % 2 ? f1 : NULL, N, s1);
        t->layernorm(res, M, N, N, &p, b2, N, it % 2 ? f2 : NULL, N, s2);
        ok &= same(b1, b2, (size_t)M * N, isa, "layernorm") && same(f1, f2, (size_t)M * N * 4, isa, "layernorm fine") &&
              same(so1, so2, sizeof so1, isa, "layernorm split");
        qd_igelu gp;
        qd_igelu_params(0.01 + 0.05 * runif(), zp, &gp);
        for (int n = 0; n < N; n++) { /* inputs around the clip points in Q10 */
            int s;
            qd_quantize_multiplier(ldexp(1.0 + runif(), -rint_in(0, 12)), &M0[n], &s);
            sh[n] = s;
        }
        ref->gelu_s8(acc, M, N, N, it % 2 ? bias : NULL, M0, sh, &gp, b1, N, s1);
        t->gelu_s8(acc, M, N, N, it % 2 ? bias : NULL, M0, sh, &gp, b2, N, s2);
        ok &= same(b1, b2, (size_t)M * N, isa, "gelu_s8") && same(so1, so2, sizeof so1, isa, "gelu split");
        qd_isoftmax sm;
        qd_isoftmax_params(ldexp(1.0 + runif(), -rint_in(6, 20)), &sm);
        uint8_t *keep = malloc((size_t)N), *P1 = malloc((size_t)N), *P2 = malloc((size_t)N);
        for (int n = 0; n < N; n++) keep[n] = r32() % 5 != 0;
        for (int m = 0; m < M; m++) {
            ref->softmax_u8(acc + (size_t)m * N, N, m % 2 ? keep : NULL, &sm, P1);
            t->softmax_u8(acc + (size_t)m * N, N, m % 2 ? keep : NULL, &sm, P2);
            ok &= same(P1, P2, (size_t)N, isa, "softmax_u8");
        }
        for (int i = 0; i < M * K; i++) A[i] = (int8_t)r32();
        for (int i = 0; i < N * K; i++) W[i] = (int8_t)r32();
        if (it == 0) {
            memset(A, 0x80, (size_t)M * K);
            memset(W, 0x80, (size_t)N * K);
        }
        qd_igemm *g1 = ref->igemm_pack(W, N, K, K), *g2 = t->igemm_pack(W, N, K, K);
        ref->igemm_s32(A, K, M, g1, o1, N);
        t->igemm_s32(A, K, M, g2, o2, N);
        ok &= same(o1, o2, (size_t)M * N * 4, isa, "igemm_s32");
        ref->igemm_free(g1);
        t->igemm_free(g2);
        const int Ko = 1 + it % 8;
        ref->outlier_add(A, K >= Ko ? K : Ko, M > 1 ? 1 : M, W, N, Ko < K ? Ko : K, 3, o1, N);
        t->outlier_add(A, K >= Ko ? K : Ko, M > 1 ? 1 : M, W, N, Ko < K ? Ko : K, 3, o2, N);
        ok &= same(o1, o2, (size_t)N * 4, isa, "outlier_add");
        /* attention products over a head of d = K (rows of the same matrices) */
        const int T = M, d = K < 64 ? K : 64;
        int32_t *S1 = malloc((size_t)T * T * 4), *S2 = malloc((size_t)T * T * 4);
        uint8_t *PP = malloc((size_t)T * T);
        for (int i = 0; i < T * T; i++) PP[i] = (uint8_t)r32();
        ref->qk_s32(A, K, zp, A, K, -zp - 1, T, T, d, S1, T);
        t->qk_s32(A, K, zp, A, K, -zp - 1, T, T, d, S2, T);
        ok &= same(S1, S2, (size_t)T * T * 4, isa, "qk_s32");
        ref->pv_s32(PP, T, A, K, zp, T, T, d, o1, d);
        t->pv_s32(PP, T, A, K, zp, T, T, d, o2, d);
        ok &= same(o1, o2, (size_t)T * d * 4, isa, "pv_s32");
        CHECK_MSG(ok, "%s, case %d: M %d N %d K %d", isa, it, M, N, K);
        free(S1);
        free(S2);
        free(PP);
        free(keep);
        free(P1);
        free(P2);
        free(acc);
        free(bias);
        free(M0);
        free(sh);
        free(res);
        free(o1);
        free(o2);
        free(f1);
        free(f2);
        free(b1);
        free(b2);
        free(A);
        free(W);
        free(g);
        free(beta);
        free(gamma);
        free(betaf);
    }
}

/* edge inputs of every ISA against the reference: every Q10 GELU input around the clip points,
 * softmax rows with one, none or every column kept and extreme spreads, constant and saturated
 * LayerNorm rows */
static void isa_edges(const qd_intops_table *ref, const qd_intops_table *t)
{
    enum { N = 12001 };
    int32_t *acc = malloc(N * sizeof *acc), *M0 = malloc(N * sizeof *M0), *sh = malloc(N * sizeof *sh);
    int8_t *o1 = malloc(N), *o2 = malloc(N);
    for (int i = 0; i < N; i++) {
        acc[i] = i - N / 2;
        qd_iparams_mult(1.0, &M0[i], &sh[i]);
    }
    acc[0] = INT32_MIN;
    acc[1] = INT32_MAX;
    qd_igelu gp;
    qd_igelu_params(0.02, -100, &gp);
    ref->gelu_s8(acc, 1, N, N, NULL, M0, sh, &gp, o1, N, NULL);
    t->gelu_s8(acc, 1, N, N, NULL, M0, sh, &gp, o2, N, NULL);
    CHECK_MSG(same(o1, o2, N, t->isa, "gelu_s8 on [-6000, 6000]"), "%s", t->isa);
    const int32_t rows[6][16] = {{0},
                                 {INT32_MAX, INT32_MIN, 0, 1, -1, INT32_MAX, INT32_MAX, 5, 6, 7, 8, 9, 10, 11, 12, 13},
                                 {1 << 24, -(1 << 24), 1 << 23},
                                 {100000, 99999, 100000, 100000, 100000, 100000, 100000, 100000, 100000},
                                 {-5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5, -5},
                                 {7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}};
    const uint8_t keeps[4][16] = {
        {0}, {1}, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}};
    const double scales[3] = {1.0 / 4096, 1e-6, 1e3};
    int ok = 1;
    for (int r = 0; r < 6; r++)
        for (int k = 0; k < 4; k++)
            for (int sc = 0; sc < 3; sc++)
                for (int n = 1; n <= 16; n += 5) {
                    qd_isoftmax sm;
                    qd_isoftmax_params(scales[sc], &sm);
                    uint8_t P1[16], P2[16];
                    ref->softmax_u8(rows[r], n, keeps[k], &sm, P1);
                    t->softmax_u8(rows[r], n, keeps[k], &sm, P2);
                    ok &= same(P1, P2, (size_t)n, t->isa, "softmax_u8 edge row");
                }
    CHECK_MSG(ok, "%s softmax edges", t->isa);
    /* LayerNorm: constant rows (eps alone), the saturation limits, one spike */
    enum { W = 24 };
    int32_t x[4 * W], g[W], f1[4 * W], f2[4 * W];
    int64_t beta[W];
    float gamma[W], betaf[W];
    for (int i = 0; i < W; i++) {
        gamma[i] = 1.0f + 0.01f * i;
        betaf[i] = 0.1f * (i % 3);
        x[i] = 12345;
        x[W + i] = i % 2 ? (1 << 24) - 1 : -((1 << 24) - 1);
        x[2 * W + i] = i == 5 ? (1 << 24) - 1 : 0;
        x[3 * W + i] = 0;
    }
    int8_t b1[4 * W], b2[4 * W];
    for (int sc = 0; sc < 3; sc++) {
        qd_iln p;
        qd_iln_params(gamma, betaf, W, 1e-12, sc == 0 ? 1e-6 : sc == 1 ? 1.0 / 65536 : 1.0, 0.05, 7, g, beta, &p);
        ref->layernorm(x, 4, W, W, &p, b1, W, f1, W, NULL);
        t->layernorm(x, 4, W, W, &p, b2, W, f2, W, NULL);
        ok &= same(b1, b2, sizeof b1, t->isa, "layernorm edge rows") && same(f1, f2, sizeof f1, t->isa, "fine");
    }
    CHECK_MSG(ok, "%s layernorm edges", t->isa);
    free(acc);
    free(M0);
    free(sh);
    free(o1);
    free(o2);
}

int main(void)
{
    const qd_intops_table *ref = qd_intops_table_for("ref");
    printf("selected: %s\n", qd_intops()->isa);
    ref_requant_rescale(ref);
    ref_layernorm(ref);
    ref_gelu(ref);
    ref_softmax(ref);
    ref_products(ref);
    ref_split(ref);
    int n = 0;
    for (size_t i = 0; i < sizeof g_isas / sizeof g_isas[0]; i++) {
        const qd_intops_table *t = qd_intops_table_for(g_isas[i]);
        if (!t) continue;
        printf("%s against the reference\n", t->isa);
        isa_vs_ref(ref, t);
        isa_edges(ref, t);
        ref_products(t);
        n++;
    }
    printf("%d ISA table(s) compared\n", n);
    QD_TEST_MAIN_END();
}
