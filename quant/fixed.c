#include "quant/fixed.h"

#include <math.h>

#include "kernels/ref/fixedpoint.h"

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int64_t round_sat(double x, int64_t lo, int64_t hi)
{
    if (isnan(x)) return 0;
    if (x >= (double)hi) return hi;
    if (x <= (double)lo) return lo;
    return clamp64((int64_t)llround(x), lo, hi);
}

int8_t qd_q7_from_float(float x) { return (int8_t)round_sat((double)x * 128.0, INT8_MIN, INT8_MAX); }
int16_t qd_q15_from_float(float x) { return (int16_t)round_sat((double)x * 32768.0, INT16_MIN, INT16_MAX); }
int32_t qd_q31_from_double(double x) { return (int32_t)round_sat(x * 2147483648.0, INT32_MIN, INT32_MAX); }
float qd_q7_to_float(int8_t q) { return (float)q / 128.0f; }
float qd_q15_to_float(int16_t q) { return (float)q / 32768.0f; }
double qd_q31_to_double(int32_t q) { return (double)q / 2147483648.0; }

int8_t qd_q7_add_sat(int8_t a, int8_t b) { return (int8_t)clamp64((int64_t)a + b, INT8_MIN, INT8_MAX); }
int8_t qd_q7_sub_sat(int8_t a, int8_t b) { return (int8_t)clamp64((int64_t)a - b, INT8_MIN, INT8_MAX); }
int16_t qd_q15_add_sat(int16_t a, int16_t b) { return (int16_t)clamp64((int64_t)a + b, INT16_MIN, INT16_MAX); }
int16_t qd_q15_sub_sat(int16_t a, int16_t b) { return (int16_t)clamp64((int64_t)a - b, INT16_MIN, INT16_MAX); }
int32_t qd_q31_add_sat(int32_t a, int32_t b) { return (int32_t)clamp64((int64_t)a + b, INT32_MIN, INT32_MAX); }
int32_t qd_q31_sub_sat(int32_t a, int32_t b) { return (int32_t)clamp64((int64_t)a - b, INT32_MIN, INT32_MAX); }

/* round(p / 2^n), ties away from zero, for |p| < 2^62 */
static inline int64_t round_shift(int64_t p, int n)
{
    int64_t half = (int64_t)1 << (n - 1);
    return p >= 0 ? (p + half) >> n : -((-p + half) >> n);
}

int8_t qd_q7_mul_sat(int8_t a, int8_t b) { return (int8_t)clamp64(round_shift((int64_t)a * b, 7), INT8_MIN, INT8_MAX); }
int16_t qd_q15_mul_sat(int16_t a, int16_t b)
{
    return (int16_t)clamp64(round_shift((int64_t)a * b, 15), INT16_MIN, INT16_MAX);
}

int32_t qd_q31_mul_sat(int32_t a, int32_t b) { return qd_fx_srdhm(a, b); }

int32_t qd_rounding_divide_by_pot(int32_t x, int exponent) { return qd_fx_rdivpot(x, exponent); }

int32_t qd_multiply_by_quantized_multiplier(int32_t x, int32_t M0, int shift) { return qd_fx_mbqm(x, M0, shift); }

uint32_t qd_isqrt64(uint64_t v) { return qd_fx_isqrt64(v); }

int qd_quantize_multiplier(double M, int32_t *M0, int *shift)
{
    if (M == 0) { /* TFLite: a zero multiplier is (0, 0), every product 0 */
        *M0 = 0;
        *shift = 0;
        return 0;
    }
    if (!(M > 0) || !isfinite(M)) return -1;
    int e;
    double q = frexp(M, &e); /* M = q * 2^e, q in [0.5, 1) */
    int64_t m = llround(q * 2147483648.0);
    if (m == (1ll << 31)) {
        m /= 2;
        e++;
    }
    if (e < -31) { /* |acc * M| < 1/2 for every int32 acc: the result is 0 either way */
        m = 0;
        e = 0;
    }
    *M0 = (int32_t)m;
    *shift = e;
    return 0;
}

int8_t qd_requantize_s8(int32_t acc, int32_t M0, int shift, int32_t zero_point)
{
    return (int8_t)clamp64((int64_t)qd_fx_mbqm(acc, M0, shift) + zero_point, INT8_MIN, INT8_MAX);
}
