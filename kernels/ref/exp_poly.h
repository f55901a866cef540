/* kernels/ref/exp_poly.h — the scalar exp of the elementwise kernels (act.c, adaround.c):
 * exp(d) = 2^n (1 + r + r^2 P(r)), n = rint(d log2 e), r = d - n ln 2 (two parts; act_coef.h).
 * Valid for d in [QD_EXP_LO, 88]: callers clamp. Every step one IEEE operation (fmaf where the
 * vector version fuses), so kernels/avx2/exp_poly.h gives the same bits. */
#ifndef QD_REF_EXP_POLY_H
#define QD_REF_EXP_POLY_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/act_coef.h"

static inline float qd_exp_poly(float d)
{
    const float n = rintf(d * QD_LOG2EF);
    float r = fmaf(n, -QD_LN2_HI, d);
    r = fmaf(n, -QD_LN2_LO, r);
    float p = QD_EXP_P0;
    p = fmaf(p, r, QD_EXP_P1);
    p = fmaf(p, r, QD_EXP_P2);
    p = fmaf(p, r, QD_EXP_P3);
    p = fmaf(p, r, QD_EXP_P4);
    p = fmaf(p, r, QD_EXP_P5);
    const float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    return y * s;
}

/* exp(d) for any d <= 88: 0 below QD_EXP_LO (the softmax and exp_sum's exponential) */
static inline float qd_exp_lo(float d)
{
    const float y = qd_exp_poly(d > QD_EXP_LO ? d : QD_EXP_LO); /* the clamp keeps n in range */
    return d < QD_EXP_LO ? 0.0f : y;
}

#endif
