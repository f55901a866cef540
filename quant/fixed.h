/* quant/fixed.h — fixed-point arithmetic for integer-only inference: Q7 (int8), Q15 (int16) and
 * Q31 (int32) fractions in [-1, 1), with gemmlowp's semantics for the high multiply and the
 * rounding shift, and the requantization of int32 accumulators to int8 through a quantized
 * multiplier M ≈ M0 · 2^shift (M0 a Q31 value in [2^30, 2^31)).
 *
 * Conversions round to nearest (ties away from zero, as lround) and saturate. Products round to
 * nearest and saturate (only -1 · -1 overflows). All results are within one unit in the last
 * place of the exact value unless saturated. */
#ifndef QD_FIXED_H
#define QD_FIXED_H

#include <stdint.h>

/* Scalar bodies live in kernels/ref/fixedpoint.h, shared with the integer-only kernels. The
 * library is documented with worked examples in docs/fixed-point.md. */

int8_t qd_q7_from_float(float x);
int16_t qd_q15_from_float(float x);
int32_t qd_q31_from_double(double x);
float qd_q7_to_float(int8_t q);
float qd_q15_to_float(int16_t q);
double qd_q31_to_double(int32_t q);

int8_t qd_q7_add_sat(int8_t a, int8_t b);
int8_t qd_q7_sub_sat(int8_t a, int8_t b);
int16_t qd_q15_add_sat(int16_t a, int16_t b);
int16_t qd_q15_sub_sat(int16_t a, int16_t b);
int32_t qd_q31_add_sat(int32_t a, int32_t b);
int32_t qd_q31_sub_sat(int32_t a, int32_t b);

/* round(a · b / 2^n) saturated, n = 7, 15 */
int8_t qd_q7_mul_sat(int8_t a, int8_t b);
int16_t qd_q15_mul_sat(int16_t a, int16_t b);
/* gemmlowp SaturatingRoundingDoublingHighMul: round(a · b / 2^31), INT32_MAX for MIN · MIN */
int32_t qd_q31_mul_sat(int32_t a, int32_t b);
/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero;
 * 0 <= exponent <= 31 */
int32_t qd_rounding_divide_by_pot(int32_t x, int exponent);
/* TFLite's MultiplyByQuantizedMultiplier (the default, double-rounding form): x · M0 · 2^(shift-31)
 * as qd_rounding_divide_by_pot(qd_q31_mul_sat(x · 2^max(shift,0), M0), max(-shift,0)); the left
 * shift saturates to int32 (TFLite leaves that overflow undefined); |shift| > 31 acts as ±31. */
int32_t qd_multiply_by_quantized_multiplier(int32_t x, int32_t M0, int shift);
/* floor(sqrt(v)) for every uint64 (Newton's iteration from above, as I-BERT's integer sqrt) */
uint32_t qd_isqrt64(uint64_t v);

/* M > 0 as M0 · 2^shift / 2^31 with M0 in [2^30, 2^31) (M0 = round(M' · 2^31) for the mantissa
 * M' in [1/2, 1), renormalized when it rounds up to 2^31, so |M0 · 2^(shift-31) / M - 1| <= 2^-31);
 * shift may be negative. M < 2^-32 (shift < -31) gives M0 = 0, shift = 0 (every product rounds to
 * 0 anyway), and so does M = 0 — TFLite's QuantizeMultiplier bit for bit.
 * Returns 0, or -1 for M < 0 or not finite. */
int qd_quantize_multiplier(double M, int32_t *M0, int *shift);
/* round(acc · M) + zero_point, saturated to [-128, 127], with M given as (M0, shift): gemmlowp's
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc · 2^max(shift,0), M0), max(-shift,0)),
 * the left shift saturating. Within 1 of round(acc · M) + zero_point before saturation (two
 * roundings; ties of the high multiply go up). */
int8_t qd_requantize_s8(int32_t acc, int32_t M0, int shift, int32_t zero_point);

#endif
