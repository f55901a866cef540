/* Fixed point against a double-precision reference: exhaustive over all Q7 pairs, 10^6 random
 * Q15 and Q31 pairs; gemmlowp's high multiply and rounding shift; quantized multipliers and
 * int8 requantization. Bound: at most 1 unit in the last place unless saturated. */
#include <math.h>
#include <stdint.h>

#include "qd_test.h"
#include "quant/fixed.h"

static uint64_t g_s = 77;
static uint32_t r32(void)
{
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_s >> 32);
}

int main(void)
{
    long bad = 0;
    /* Q7: every pair */
    for (int a = -128; a <= 127; a++)
        for (int b = -128; b <= 127; b++) {
            double s = a + b, d = a - b, p = (double)a * b / 128.0;
            bad += qd_q7_add_sat((int8_t)a, (int8_t)b) != (int)fmax(-128, fmin(127, s));
            bad += qd_q7_sub_sat((int8_t)a, (int8_t)b) != (int)fmax(-128, fmin(127, d));
            double ps = fmax(-128, fmin(127, p));
            bad += fabs(qd_q7_mul_sat((int8_t)a, (int8_t)b) - ps) > (p > 127 ? 1.0 : 0.5);
        }
    CHECK_EQ(bad, 0);
    CHECK_EQ(qd_q7_mul_sat(-128, -128), 127);
    CHECK_EQ(qd_q7_from_float(0.5f), 64);
    CHECK_EQ(qd_q7_from_float(1.0f), 127);
    CHECK_EQ(qd_q7_from_float(-2.0f), -128);
    CHECK_EQ(qd_q7_from_float(NAN), 0);
    for (int q = -128; q <= 127; q++) CHECK_EQ(qd_q7_from_float(qd_q7_to_float((int8_t)q)), q);

    /* Q15 and Q31: 10^6 random pairs each */
    long bad15 = 0, bad31 = 0;
    for (int i = 0; i < 1000000; i++) {
        int16_t a = (int16_t)r32(), b = (int16_t)r32();
        double p = (double)a * b / 32768.0, ps = fmax(-32768, fmin(32767, p));
        bad15 += fabs(qd_q15_mul_sat(a, b) - ps) > (p > 32767 ? 1.0 : 0.5);
        bad15 += qd_q15_add_sat(a, b) != (int)fmax(-32768, fmin(32767, (double)a + b));
        bad15 += qd_q15_sub_sat(a, b) != (int)fmax(-32768, fmin(32767, (double)a - b));
        int32_t x = (int32_t)r32(), y = (int32_t)r32();
        long double exact = (long double)x * y / 2147483648.0L;
        long double es = exact > 2147483647.0L ? 2147483647.0L : exact;
        bad31 += fabsl(qd_q31_mul_sat(x, y) - es) > (exact > 2147483647.0L ? 1.0L : 0.5L);
        bad31 += qd_q31_add_sat(x, y) != (int32_t)fmax(-2147483648.0, fmin(2147483647.0, (double)x + y));
        int e = (int)(r32() % 32);
        long double q = (long double)x / ldexpl(1.0L, e);
        bad31 += fabsl(qd_rounding_divide_by_pot(x, e) - q) > 0.5L;
    }
    /* subtraction and conversions: |q - x * 2^n| <= 0.5 unless saturated, q in range */
    for (int i = 0; i < 1000000; i++) {
        int32_t x = (int32_t)r32(), y = (int32_t)r32();
        bad31 += qd_q31_sub_sat(x, y) != (int32_t)fmax(-2147483648.0, fmin(2147483647.0, (double)x - y));
        double u = ((double)r32() / 4294967296.0 - 0.5) * 2.4; /* [-1.2, 1.2): some saturate */
        double e31 = u * 2147483648.0, s31 = fmax(-2147483648.0, fmin(2147483647.0, e31));
        int32_t q31 = qd_q31_from_double(u);
        bad31 += fabs((double)q31 - s31) > (s31 != e31 ? 0.0 : 0.5);
        float f = (float)u;
        double e15 = (double)f * 32768.0, s15 = fmax(-32768.0, fmin(32767.0, e15));
        bad15 += fabs((double)qd_q15_from_float(f) - s15) > (s15 != e15 ? 0.0 : 0.5);
        double e7 = (double)f * 128.0, s7 = fmax(-128.0, fmin(127.0, e7));
        bad15 += fabs((double)qd_q7_from_float(f) - s7) > (s7 != e7 ? 0.0 : 0.5);
    }
    for (int q = -32768; q <= 32767; q++) CHECK_EQ(qd_q15_from_float(qd_q15_to_float((int16_t)q)), q);
    CHECK_EQ(qd_q31_from_double(qd_q31_to_double(INT32_MIN)), INT32_MIN);
    CHECK_EQ(qd_q31_from_double(qd_q31_to_double(INT32_MAX)), INT32_MAX);
    CHECK_EQ(qd_q31_from_double(1.0), INT32_MAX);
    CHECK_EQ(qd_q15_from_float(-1.0f), -32768);
    CHECK_EQ(qd_q15_from_float(0.5f / 32768.0f), 1); /* tie: away from zero */
    CHECK_EQ(qd_q15_from_float(-0.5f / 32768.0f), -1);
    printf("Q15: %ld, Q31: %ld results beyond the bound in 10^6 random pairs each\n", bad15, bad31);
    CHECK_EQ(bad15, 0);
    CHECK_EQ(bad31, 0);
    CHECK_EQ(qd_q31_mul_sat(INT32_MIN, INT32_MIN), INT32_MAX);
    CHECK_EQ(qd_rounding_divide_by_pot(5, 1), 3); /* 2.5 -> 3 (ties away from zero) */
    CHECK_EQ(qd_rounding_divide_by_pot(-5, 1), -3);

    /* multipliers and requantization */
    long badm = 0, badr = 0;
    for (int i = 0; i < 200000; i++) {
        double M = ldexp(1.0 + (r32() / 4294967296.0), (int)(r32() % 40) - 30);
        int32_t M0;
        int sh;
        CHECK_EQ(qd_quantize_multiplier(M, &M0, &sh), 0);
        badm += M0 < (1 << 30) || fabs(ldexp((double)M0, sh - 31) / M - 1) > ldexp(1, -30);
        int32_t acc = (int32_t)r32() >> (r32() % 24), zp = (int32_t)(r32() % 21) - 10;
        double want = fmax(-128, fmin(127, round(acc * M) + zp));
        int8_t got = qd_requantize_s8(acc, M0, sh, zp);
        badr += fabs(got - want) > 1;
    }
    printf("multipliers off by more than 2^-30: %ld; requantized results off by more than 1: %ld\n", badm, badr);
    CHECK_EQ(badm, 0);
    CHECK_EQ(badr, 0);
    int32_t M0;
    int sh;
    CHECK_EQ(qd_quantize_multiplier(-1.0, &M0, &sh), -1);
    CHECK_EQ(qd_quantize_multiplier(0.0, &M0, &sh), 0); /* TFLite: (0, 0) */
    CHECK_EQ(M0, 0);
    CHECK_EQ(sh, 0);
    CHECK_EQ(qd_quantize_multiplier(0.5, &M0, &sh), 0);
    CHECK_EQ(M0, 1 << 30);
    CHECK_EQ(sh, 0);
    CHECK_EQ(qd_requantize_s8(1000, M0, sh, 3), 127); /* 500 + 3 saturates */
    CHECK_EQ(qd_requantize_s8(7, M0, sh, 0), 4);      /* 3.5 -> 4 */
    CHECK_EQ(qd_requantize_s8(-7, M0, sh, 0), -3);    /* -3.5 -> -3: gemmlowp's high multiply nudges negative ties up */
    /* multipliers below 2^-32 round every int32 accumulator to 0: M0 = 0, shift = 0 (as TFLite) */
    CHECK_EQ(qd_quantize_multiplier(ldexp(1.0, -40), &M0, &sh), 0);
    CHECK_EQ(M0, 0);
    CHECK_EQ(sh, 0);
    CHECK_EQ(qd_requantize_s8(INT32_MAX, M0, sh, 5), 5);
    /* M slightly below 1 whose Q31 mantissa rounds up to 2^31: renormalized */
    CHECK_EQ(qd_quantize_multiplier(1.0 - ldexp(1.0, -40), &M0, &sh), 0);
    CHECK_EQ(M0, 1 << 30);
    CHECK_EQ(sh, 1);
    /* large M: saturates */
    CHECK_EQ(qd_quantize_multiplier(1000.0, &M0, &sh), 0);
    CHECK_EQ(qd_requantize_s8(1, M0, sh, 0), 127);
    CHECK_EQ(qd_requantize_s8(-1, M0, sh, 0), -128);
    CHECK_EQ(qd_requantize_s8(0, M0, sh, -7), -7);

    /* gemmlowp's SaturatingRoundingDoublingHighMul, hand-computed: round(a b / 2^31), ties upward
     * (the nudge), the one overflow saturating */
    static const struct {
        int32_t a, b, want;
    } hm[] = {
        {INT32_MIN, INT32_MIN, INT32_MAX},   /* 2^62 / 2^31 = 2^31 does not fit: INT32_MAX */
        {INT32_MAX, INT32_MAX, 2147483646},  /* (2^31 - 1)^2 / 2^31 = 2^31 - 2 + 2^-31 */
        {1 << 30, 1 << 30, 1 << 29},         /* 0.5 * 0.5 = 0.25 */
        {1, 1 << 30, 1},                     /* 0.5 -> 1 */
        {-1, 1 << 30, 0},                    /* -0.5 -> 0 (ties upward) */
        {3, 1 << 30, 2},                     /* 1.5 -> 2 */
        {-3, 1 << 30, -1},                   /* -1.5 -> -1 */
        {5, 1 << 30, 3},                     /* 2.5 -> 3 */
        {-5, 1 << 30, -2},                   /* -2.5 -> -2 */
        {INT32_MIN, INT32_MAX, -2147483647}, /* exact */
        {INT32_MIN, 1, -1},                  /* exact */
        {INT32_MIN, -1, 1},                  /* exact */
        {INT32_MAX, 1, 1},                   /* 0.99999 -> 1 */
    };
    for (size_t i = 0; i < sizeof hm / sizeof hm[0]; i++) CHECK_EQ(qd_q31_mul_sat(hm[i].a, hm[i].b), hm[i].want);
    /* RoundingDivideByPOT: ties away from zero */
    static const struct {
        int32_t x;
        int e;
        int32_t want;
    } dp[] = {{5, 1, 3},   {-5, 1, -3},        {4, 1, 2},           {-4, 1, -2},      {7, 2, 2},
              {-7, 2, -2}, {6, 2, 2},          {-6, 2, -2},         {1, 1, 1},        {-1, 1, -1},
              {3, 0, 3},   {INT32_MAX, 31, 1}, {INT32_MIN, 31, -1}, {1 << 30, 31, 1}, {-(1 << 30), 31, -1}};
    for (size_t i = 0; i < sizeof dp / sizeof dp[0]; i++)
        CHECK_EQ(qd_rounding_divide_by_pot(dp[i].x, dp[i].e), dp[i].want);
    /* MultiplyByQuantizedMultiplier: M0 = 2^30 is 0.5, M0 = 1610612736 is 0.75 */
    static const struct {
        int32_t x, M0;
        int sh;
        int32_t want;
    } mq[] = {{100, 1 << 30, 0, 50},
              {100, 1 << 30, 1, 100},
              {100, 1 << 30, -1, 25},
              {3, 1 << 30, -1, 1},                  /* 0.75 -> 1: high multiply 1.5 -> 2, then 2 / 2 */
              {1000, 1610612736, -3, 94},           /* 93.75 */
              {-1000, 1610612736, -3, -94},         /* -93.75 */
              {7, 1 << 30, 0, 4},                   /* 3.5 -> 4 */
              {-7, 1 << 30, 0, -3},                 /* -3.5 -> -3 */
              {1 << 30, 1 << 30, 2, 1 << 30},       /* 2^32 saturates to INT32_MAX first */
              {-(1 << 30), 1 << 30, 2, -(1 << 30)}, /* -2^32 saturates to INT32_MIN: exact */
              {INT32_MIN, INT32_MIN, 0, INT32_MAX}, /* the high multiply's overflow */
              {123456, 0, 0, 0}};                   /* a zero multiplier */
    for (size_t i = 0; i < sizeof mq / sizeof mq[0]; i++)
        CHECK_EQ(qd_multiply_by_quantized_multiplier(mq[i].x, mq[i].M0, mq[i].sh), mq[i].want);
    /* QuantizeMultiplier as TFLite: frexp mantissa in Q31, exponent as the shift */
    static const struct {
        double M;
        int32_t M0;
        int sh;
    } qm[] = {{1.0, 1 << 30, 1},
              {0.75, 1610612736, 0},
              {0.5, 1 << 30, 0},
              {ldexp(1, -31), 1 << 30, -30},
              {ldexp(1, -32), 1 << 30, -31},
              {ldexp(1, -33), 0, 0},
              {3.0, 1610612736, 2},
              {0.0, 0, 0}};
    for (size_t i = 0; i < sizeof qm / sizeof qm[0]; i++) {
        CHECK_EQ(qd_quantize_multiplier(qm[i].M, &M0, &sh), 0);
        CHECK_EQ(M0, qm[i].M0);
        CHECK_EQ(sh, qm[i].sh);
    }
    /* integer square root: floor, exact over the whole range */
    static const struct {
        uint64_t v;
        uint32_t want;
    } sq[] = {{0, 0},
              {1, 1},
              {2, 1},
              {3, 1},
              {4, 2},
              {15, 3},
              {16, 4},
              {1ull << 62, 1u << 31},
              {0xFFFFFFFE00000001ull, 0xFFFFFFFFu}, /* (2^32 - 1)^2 */
              {0xFFFFFFFE00000000ull, 0xFFFFFFFEu}, /* one below it */
              {UINT64_MAX, 0xFFFFFFFFu}};
    for (size_t i = 0; i < sizeof sq / sizeof sq[0]; i++) CHECK_EQ(qd_isqrt64(sq[i].v), sq[i].want);
    long badsq = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t v = ((uint64_t)r32() << 32 | r32()) >> (r32() % 64);
        uint64_t q = qd_isqrt64(v);
        badsq += !(q * q <= v && (q + 1) * (q + 1) > v);
    }
    CHECK_EQ(badsq, 0);
    /* the high multiply and the rounding shift against their definitions in exact arithmetic
     * (int64 numerators, floor division), 10^6 random pairs across all magnitudes */
    long badhm = 0, baddp = 0;
    for (int i = 0; i < 1000000; i++) {
        int32_t a = (int32_t)r32() >> (r32() % 31), b = (int32_t)r32() >> (r32() % 31);
        if (a == INT32_MIN && b == INT32_MIN) continue;
        /* round half up of a b / 2^31 is floor((2 a b + 2^31) / 2^32) for a b >= 0; gemmlowp's
         * nudge makes negative ties go up too: the same formula */
        __int128 p = (__int128)a * b, num = 2 * p + ((__int128)1 << 31), den = (__int128)1 << 32;
        __int128 fl = num >= 0 ? num / den : -((-num + den - 1) / den);
        badhm += qd_q31_mul_sat(a, b) != (int32_t)fl;
        int e = (int)(r32() % 32);
        int64_t x = a, d = (int64_t)1 << e, q = x >= 0 ? (2 * x + d) / (2 * d) : -((2 * -x + d) / (2 * d));
        baddp += qd_rounding_divide_by_pot(a, e) != (int32_t)q;
    }
    CHECK_EQ(badhm, 0);
    CHECK_EQ(baddp, 0);
    QD_TEST_MAIN_END();
}
