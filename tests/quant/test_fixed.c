/* Fixed point against a double-precision reference: exhaustive over all Q7 pairs, 10^6 random
 * Q15 and Q31 pairs; gemmlowp's high multiply and rounding shift; quantized multipliers and
 * int8 requantization. Bound: at most 1 unit in the last place unless saturated. */
#include <math.h>
#include <stdint.h>

#include "qd_test.h"
#include "quant/fixed.h"

static uint64_t g_s = 77;
static uint32_t r32(void) {
    g_s = g_s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(g_s >> 32);
}

int main(void) {
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
    printf("Q15: %ld, Q31: %ld results beyond the bound in 10^6 random pairs each\n", bad15, bad31);
    CHECK_EQ(bad15, 0);
    CHECK_EQ(bad31, 0);
    CHECK_EQ(qd_q31_mul_sat(INT32_MIN, INT32_MIN), INT32_MAX);
    CHECK_EQ(qd_rounding_divide_by_pot(5, 1), 3);   /* 2.5 -> 3 (ties away from zero) */
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
    CHECK_EQ(qd_quantize_multiplier(0.0, &M0, &sh), -1);
    CHECK_EQ(qd_quantize_multiplier(0.5, &M0, &sh), 0);
    CHECK_EQ(M0, 1 << 30);
    CHECK_EQ(sh, 0);
    CHECK_EQ(qd_requantize_s8(1000, M0, sh, 3), 127); /* 500 + 3 saturates */
    CHECK_EQ(qd_requantize_s8(7, M0, sh, 0), 4);      /* 3.5 -> 4 */
    CHECK_EQ(qd_requantize_s8(-7, M0, sh, 0), -3);    /* -3.5 -> -3: gemmlowp's high multiply nudges negative ties up */
    QD_TEST_MAIN_END();
}
