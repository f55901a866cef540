/* quant/intparams.h — the integer constants of integer-only inference's stages (kernels/intops.h),
 * computed once from real scales: requantization multipliers, I-BERT's i-GELU and i-exp constants
 * in their fixed formats, and the integer LayerNorm's per-channel factors. Pure functions. */
#ifndef QD_INTPARAMS_H
#define QD_INTPARAMS_H

#include <stdint.h>

#include "kernels/intops.h"

/* I-BERT coefficients: erf(x) ≈ sign(x) [a (min(|x|, -b) + b)² + 1]; exp(p) ≈ a (p + b)² + c on (-ln 2, 0] */
#define QD_IGELU_A (-0.2888)
#define QD_IGELU_B (-1.769)
#define QD_IEXP_A  0.3585
#define QD_IEXP_B  1.353
#define QD_IEXP_C  0.344

/* Q31 multiplier of a real factor M >= 0 (quant/fixed.h); -1 for a negative or non-finite M. */
int qd_iparams_mult(double M, int32_t *M0, int32_t *sh);
/* i-GELU for an input in Q10 and an int8 output (scale s_out, zero point zp). */
void qd_igelu_params(double s_out, int32_t zp, qd_igelu *p);
/* i-exp softmax of int32 scores whose real value is score_scale · s. */
void qd_isoftmax_params(double score_scale, qd_isoftmax *p);
/* Integer LayerNorm of int32 rows at scale s_in to int8 (s_out, zp): g [N], beta [N] filled;
 * sets *p (g, beta, their fractional bits gsh, zp, and eps = round(ε / s_in² · 2^32)). */
void qd_iln_params(const float *gamma, const float *beta, int N, double eps, double s_in, double s_out, int32_t zp,
                   int32_t *g, int64_t *b, qd_iln *p);

#endif
