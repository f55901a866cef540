/* Row quantize/dequantize kernels: the reference against the formula written out here, element by
 * element, and every ISA version against the reference bit for bit (memcmp), over row lengths
 * 1..300 and a few long rows, group sizes 1, 3, 16, 32, 64, 128 and n, 8/4-bit (and other widths
 * for unpacked codes), with random data, exact .5 ties, extreme and non-finite values. Output
 * buffers carry a guard zone that must stay untouched. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "qd_test.h"

#define GUARD      64
#define GUARD_BYTE 0xA5

static uint64_t rng = 0x243F6A8885A308D3ull;
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
{ /* Box-Muller, one value */
    double u = unif(), v = unif();
    return (float)(sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v));
}

/* ---- the formula, independent of kernels/ ------------------------------------------------- */
static int formula_code(float x, float s, int32_t z, int maxq)
{
    float q = rintf(x / s) + (float)z;
    if (isnan(q)) return 0; /* the kernels' documented choice for a NaN quotient */
    return q < 0.0f ? 0 : q > (float)maxq ? maxq : (int)q;
}
static float formula_deq(int q, float s, int32_t z) { return s * (float)(q - z); }

enum { MODE_RANDOM, MODE_TIES, MODE_EXTREME, MODE_NONFINITE, NMODES };
static const char *mode_name[NMODES] = {"random", "ties", "extreme", "nonfinite"};
static long n_ties = 0;

/* x[n] and per-group scales/zeros for maxq */
static void make_row(int mode, int64_t n, int64_t G, int maxq, float *x, float *sc, int32_t *zp)
{
    const int64_t ng = (n + G - 1) / G;
    for (int64_t g = 0; g < ng; g++) {
        const int64_t c0 = g * G, c1 = QD_MIN(c0 + G, n);
        float s;
        int32_t z;
        switch (mode) {
        case MODE_RANDOM: {
            float sigma = (float)pow(10.0, irand(-3, 1)), lo = 0, hi = 0;
            for (int64_t c = c0; c < c1; c++) {
                x[c] = sigma * gauss();
                lo = fminf(lo, x[c]);
                hi = fmaxf(hi, x[c]);
            }
            s = (hi - lo) / (float)maxq;
            if (s == 0.0f) s = 1.0f;
            if (irand(0, 3) == 0) s *= 0.6f; /* clipped range: some values clamp */
            z = (int32_t)rintf(-lo / s);
            z = z < 0 ? 0 : z > maxq ? maxq : z;
            if (irand(0, 4) == 0) z = (maxq + 1) / 2; /* symmetric */
            break;
        }
        case MODE_TIES: {
            /* s = m * 2^e (m odd, small): (2k+1) * (s/2) is exact, so x / s == k + 0.5 exactly */
            int m = 2 * (int)irand(0, 499) + 1, e = (int)irand(-20, 4);
            s = ldexpf((float)m, e);
            z = (int32_t)irand(0, maxq);
            for (int64_t c = c0; c < c1; c++) {
                int k = (int)irand(-z - 3, maxq - z + 3);
                if (irand(0, 7) == 0) {
                    x[c] = (float)k * s; /* exact integer quotient */
                } else {
                    x[c] = (float)(2 * k + 1) * (s * 0.5f);
                    if (x[c] / s == (float)k + 0.5f) n_ties++;
                }
            }
            break;
        }
        case MODE_EXTREME: {
            static const float scale_pick[] = {1e-30f, 1e30f, 1e-42f /* denormal */, 0.0123f, 1.0f, 3.0e-7f};
            static const float val_pick[] = {0.0f,   -0.0f,   1e-40f,   -1e-40f, FLT_MIN, -FLT_MIN,   1e30f,
                                             -1e30f, FLT_MAX, -FLT_MAX, 1e-20f,  -1e-20f, 12345.678f, -98765.4f};
            s = scale_pick[irand(0, (int64_t)QD_ARRAY_LEN(scale_pick) - 1)];
            z = irand(0, 2) == 0 ? 0 : irand(0, 1) ? maxq : (int32_t)irand(0, maxq);
            for (int64_t c = c0; c < c1; c++) {
                int64_t r = irand(0, 3);
                if (r == 0)
                    x[c] = val_pick[irand(0, (int64_t)QD_ARRAY_LEN(val_pick) - 1)];
                else if (r == 1)
                    x[c] = s * (float)irand(-2 * maxq, 2 * maxq) + s * 0.5f; /* near range edges */
                else
                    x[c] = s * (float)maxq * gauss();
            }
            break;
        }
        default: { /* non-finite inputs and degenerate scales: never crash, same bits everywhere */
            static const float scale_pick[] = {0.0f, -0.0f, INFINITY, NAN, 0.5f, -0.25f};
            s = scale_pick[irand(0, (int64_t)QD_ARRAY_LEN(scale_pick) - 1)];
            z = (int32_t)irand(0, maxq);
            for (int64_t c = c0; c < c1; c++) {
                int64_t r = irand(0, 5);
                x[c] = r == 0 ? INFINITY : r == 1 ? -INFINITY : r == 2 ? NAN : r == 3 ? -0.0f : gauss();
            }
            break;
        }
        }
        sc[g] = s;
        zp[g] = z;
    }
}

static int guard_ok(const void *buf, size_t used)
{
    const uint8_t *b = (const uint8_t *)buf + used;
    for (int i = 0; i < GUARD; i++)
        if (b[i] != GUARD_BYTE) return 0;
    return 1;
}

/* memcmp with a message naming the case and the first differing byte */
#define CHECK_SAME(a, b, nbytes, what)                                                                              \
    do {                                                                                                            \
        size_t nb_ = (size_t)(nbytes);                                                                              \
        int same_ = memcmp((a), (b), nb_) == 0;                                                                     \
        if (!same_) {                                                                                               \
            size_t i_ = 0;                                                                                          \
            while (((const uint8_t *)(a))[i_] == ((const uint8_t *)(b))[i_]) i_++;                                  \
            CHECK_MSG(same_, "%s: n=%lld G=%lld maxq=%d mode=%s: first difference at byte %zu", what, (long long)n, \
                      (long long)G, maxq, mode_name[mode], i_);                                                     \
        } else                                                                                                      \
            CHECK(same_);                                                                                           \
    } while (0)

static long n_cases = 0;

static void run_case(const qd_kernel_table *ref, const qd_kernel_table *isa, int mode, int64_t n, int64_t G, int maxq)
{
    const int64_t ng = (n + G - 1) / G, nb4 = (n + 1) / 2;
    float *x = malloc((size_t)n * sizeof *x), *sc = malloc((size_t)ng * sizeof *sc);
    int32_t *zp = malloc((size_t)ng * sizeof *zp);
    uint8_t *expect = malloc((size_t)n), *exp4 = calloc((size_t)nb4, 1);
    uint8_t *r8 = malloc((size_t)n + GUARD), *v8 = malloc((size_t)n + GUARD);
    uint8_t *r4 = malloc((size_t)nb4 + GUARD), *v4 = malloc((size_t)nb4 + GUARD);
    float *fexp = malloc((size_t)n * sizeof *fexp);
    float *rf = malloc((size_t)n * sizeof *rf + GUARD), *vf = malloc((size_t)n * sizeof *vf + GUARD);
    n_cases++;

    make_row(mode, n, G, maxq, x, sc, zp);
    for (int64_t c = 0; c < n; c++) expect[c] = (uint8_t)formula_code(x[c], sc[c / G], zp[c / G], maxq);

    /* unpacked codes */
    memset(r8, GUARD_BYTE, (size_t)n + GUARD);
    ref->quantize_codes(x, n, G, sc, zp, maxq, r8);
    CHECK_SAME(r8, expect, n, "ref codes vs formula");
    CHECK(guard_ok(r8, (size_t)n));
    if (isa) {
        memset(v8, GUARD_BYTE, (size_t)n + GUARD);
        isa->quantize_codes(x, n, G, sc, zp, maxq, v8);
        CHECK_SAME(v8, r8, n, "isa codes vs ref");
        CHECK(guard_ok(v8, (size_t)n));
    }
    if (maxq == 255) {
        memset(v8, GUARD_BYTE, (size_t)n + GUARD);
        qd_kernels_quantize_row(x, n, G, sc, zp, 8, v8);
        CHECK_SAME(v8, r8, n, "selected 8-bit row vs ref");
        CHECK(guard_ok(v8, (size_t)n));
    }

    /* packed 4-bit */
    if (maxq == 15) {
        for (int64_t c = 0; c < n; c++) exp4[c / 2] |= (uint8_t)(expect[c] << (4 * (c & 1)));
        memset(r4, GUARD_BYTE, (size_t)nb4 + GUARD);
        ref->quantize_q4(x, n, G, sc, zp, r4);
        CHECK_SAME(r4, exp4, nb4, "ref q4 vs formula");
        CHECK(guard_ok(r4, (size_t)nb4));
        if (isa) {
            memset(v4, GUARD_BYTE, (size_t)nb4 + GUARD);
            isa->quantize_q4(x, n, G, sc, zp, v4);
            CHECK_SAME(v4, r4, nb4, "isa q4 vs ref");
            CHECK(guard_ok(v4, (size_t)nb4));
        }
        memset(v4, GUARD_BYTE, (size_t)nb4 + GUARD);
        qd_kernels_quantize_row(x, n, G, sc, zp, 4, v4);
        CHECK_SAME(v4, r4, nb4, "selected 4-bit row vs ref");
    }

    /* dequantization of the expected codes (random full-range codes in random mode) */
    if (mode == MODE_RANDOM)
        for (int64_t c = 0; c < n; c++) expect[c] = (uint8_t)irand(0, maxq);
    for (int64_t c = 0; c < n; c++) fexp[c] = formula_deq(expect[c], sc[c / G], zp[c / G]);
    memset(rf, GUARD_BYTE, (size_t)n * sizeof *rf + GUARD);
    ref->dequantize_codes(expect, n, G, sc, zp, rf);
    CHECK_SAME(rf, fexp, n * sizeof *rf, "ref dequant vs formula");
    CHECK(guard_ok(rf, (size_t)n * sizeof *rf));
    if (isa) {
        memset(vf, GUARD_BYTE, (size_t)n * sizeof *vf + GUARD);
        isa->dequantize_codes(expect, n, G, sc, zp, vf);
        CHECK_SAME(vf, rf, n * sizeof *vf, "isa dequant vs ref");
        CHECK(guard_ok(vf, (size_t)n * sizeof *vf));
    }
    if (maxq == 15) {
        memset(exp4, 0, (size_t)nb4);
        for (int64_t c = 0; c < n; c++) exp4[c / 2] |= (uint8_t)(expect[c] << (4 * (c & 1)));
        if (n & 1) exp4[nb4 - 1] |= (uint8_t)(irand(0, 15) << 4); /* padding nibble is ignored */
        memset(rf, GUARD_BYTE, (size_t)n * sizeof *rf + GUARD);
        ref->dequantize_q4(exp4, n, G, sc, zp, rf);
        CHECK_SAME(rf, fexp, n * sizeof *rf, "ref dequant q4 vs formula");
        CHECK(guard_ok(rf, (size_t)n * sizeof *rf));
        if (isa) {
            memset(vf, GUARD_BYTE, (size_t)n * sizeof *vf + GUARD);
            isa->dequantize_q4(exp4, n, G, sc, zp, vf);
            CHECK_SAME(vf, rf, n * sizeof *vf, "isa dequant q4 vs ref");
            CHECK(guard_ok(vf, (size_t)n * sizeof *vf));
        }
        qd_kernels_dequantize_row(exp4, n, G, sc, zp, 4, vf);
        CHECK_SAME(vf, rf, n * sizeof *vf, "selected 4-bit dequant vs ref");
    }
    if (maxq == 255) {
        qd_kernels_dequantize_row(expect, n, G, sc, zp, 8, vf);
        ref->dequantize_codes(expect, n, G, sc, zp, rf);
        CHECK_SAME(vf, rf, n * sizeof *vf, "selected 8-bit dequant vs ref");
    }

    free(x), free(sc), free(zp), free(expect), free(exp4), free(r8), free(v8), free(r4), free(v4);
    free(fexp), free(rf), free(vf);
}

/* hand-made values whose codes are known without the formula */
static void known_values(const qd_kernel_table *k)
{
    /* scale 1, zero 8, 4 bit: ties go to even, clamps at both ends, -0 gives the zero point, NaN gives 0 */
    const float x[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 100.0f, -100.0f, -0.0f, 0.0f, 7.0f, 6.5f, NAN};
    const uint8_t want[] = {8, 10, 10, 8, 6, 6, 15, 0, 8, 8, 15, 14, 0};
    const float s = 1.0f;
    const int32_t z = 8;
    const int64_t n = (int64_t)QD_ARRAY_LEN(x);
    uint8_t got[16], packed[8];
    k->quantize_codes(x, n, n, &s, &z, 15, got);
    for (int64_t i = 0; i < n; i++) CHECK_EQ(got[i], want[i]);
    k->quantize_q4(x, n, n, &s, &z, packed);
    CHECK_EQ(packed[0], 8 | 10 << 4);
    CHECK_EQ(packed[1], 10 | 8 << 4);
    CHECK_EQ(packed[6], 0); /* odd n: high nibble 0 */
    float back[16];
    k->dequantize_q4(packed, n, n, &s, &z, back);
    CHECK_NEAR(back[0], 0.0, 0);
    CHECK_NEAR(back[1], 2.0, 0);
    CHECK_NEAR(back[6], 7.0, 0);
    CHECK_NEAR(back[7], -8.0, 0);
}

int main(void)
{
    const qd_kernel_table *ref = qd_kernels_table("ref");
    const qd_kernel_table *avx2 = qd_kernels_table("avx2");
    printf("selected kernels: %s\n", qd_kernels_isa());
    if (!avx2) printf("SKIP: this CPU lacks AVX2/FMA/F16C; only the reference is checked\n");

    known_values(ref);
    if (avx2) known_values(avx2);

    static const int maxqs[] = {255, 15};
    for (int mode = 0; mode < NMODES; mode++)
        for (int64_t n = 1; n <= 300; n++) {
            const int64_t Gs[] = {1, 3, 16, 32, 64, 128, n};
            for (size_t gi = 0; gi < QD_ARRAY_LEN(Gs); gi++)
                for (size_t qi = 0; qi < QD_ARRAY_LEN(maxqs); qi++) run_case(ref, avx2, mode, n, Gs[gi], maxqs[qi]);
        }
    /* long rows cross the AVX2 version's 1024-column chunks, with groups that straddle them */
    static const int64_t long_n[] = {1023, 1024, 1025, 2047, 2049, 3072, 4099};
    for (int mode = 0; mode < NMODES; mode++)
        for (size_t ni = 0; ni < QD_ARRAY_LEN(long_n); ni++) {
            const int64_t n = long_n[ni], Gs[] = {1, 3, 100, 128, 1000, n};
            for (size_t gi = 0; gi < QD_ARRAY_LEN(Gs); gi++)
                for (size_t qi = 0; qi < QD_ARRAY_LEN(maxqs); qi++) run_case(ref, avx2, mode, n, Gs[gi], maxqs[qi]);
        }
    /* other widths through the unpacked path */
    static const int other_maxq[] = {1, 3, 7, 31, 63, 127};
    for (size_t qi = 0; qi < QD_ARRAY_LEN(other_maxq); qi++)
        for (int mode = 0; mode < NMODES; mode++)
            for (int64_t n = 1; n <= 80; n += 7) run_case(ref, avx2, mode, n, irand(1, n), other_maxq[qi]);

    printf("%ld cases, %ld exact .5 ties quantized\n", n_cases, n_ties);
    CHECK_GT(n_ties, 100000);
    QD_TEST_MAIN_END();
}
