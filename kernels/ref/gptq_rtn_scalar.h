/* kernels/ref/gptq_rtn_scalar.h — the scalar steps of kernels/ref/gptq_rtn.c that the ISA versions
 * also run on what is left past their last whole vector (rows of a GPTQ tile, elements of an RTN
 * group, the lane folds). One copy, included by kernels/ref/gptq_rtn.c and kernels/avx2/gptq_rtn.c,
 * so the remainders are the reference by construction. ISO C mode keeps every product and sum its
 * own rounding in either file. */
#ifndef QD_KERNELS_GPTQ_RTN_SCALAR_H
#define QD_KERNELS_GPTQ_RTN_SCALAR_H

#include <math.h>

#include "kernels/kernels.h"

#define QD_RINT_MAGIC 12582912.0f /* 1.5 * 2^23: (v + M) - M is rint(v) for |v| < 2^22 */

/* GPTQ's column step (kernels.h qd_gptq_col) for the rows [r0, n) of the tile. */
static inline void qd_gptq_rows_scalar(const qd_gptq_col *a, int64_t i, int64_t r0)
{
    const float d = a->d, maxqf = (float)a->maxq;
    const double dd = (double)d * d;
    float *t = a->T + i * a->ldt;
    for (int64_t r = r0; r < a->n; r++) {
        float w = t[r];
        float qf = rintf(w / a->s[r]) + (float)a->z[r];
        qf = qf < 0.0f ? 0.0f : qf;
        qf = qf > maxqf ? maxqf : qf;
        int qi = (int)qf;
        float q = a->s[r] * (float)(qi - a->z[r]);
        float diff = w - q;
        a->q[r] = q;
        a->qc[r] = (uint8_t)qi;
        a->e[r] = diff / d;
        a->err[r] += (double)diff * diff / dd / 2.0;
    }
    for (int64_t j = i + 1; j < a->cnt; j++) {
        float h = a->hrow[j];
        float *tj = a->T + j * a->ldt;
        for (int64_t r = r0; r < a->n; r++) tj[r] -= a->e[r] * h;
    }
}

/* range_f32: the 8 lanes folded into (lo, hi, f) in lane order */
static inline void qd_range_fold(const float l[8], const float h[8], const float acc[8], float *lo, float *hi, float *f)
{
    for (int k = 0; k < 8; k++) {
        *lo = l[k] < *lo ? l[k] : *lo;
        *hi = h[k] > *hi ? h[k] : *hi;
        *f += acc[k];
    }
}

/* range_f32: x[c, n) in order after the lanes; returns the finiteness flag */
static inline int qd_range_tail(const float *x, int64_t c, int64_t n, float lo, float hi, float f, float *lo_out,
                                float *hi_out)
{
    for (; c < n; c++) {
        float v = x[c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
        f += v - v; /* 0 for a finite v, NaN for Inf or NaN; a NaN sticks */
    }
    *lo_out = lo;
    *hi_out = hi;
    return f == 0.0f;
}

/* rtn_group: the code of one element, its error terms added to lane k of a (d^2), b (x^2), m (|d|) */
static inline uint8_t qd_rtn_one(float x, float s, float zf, float mf, int k, double *a, double *b, double *m)
{
    float q = ((x / s + QD_RINT_MAGIC) - QD_RINT_MAGIC) + zf;
    q = q < 0.0f ? 0.0f : q;
    q = q > mf ? mf : q;
    float dq = s * (q - zf);
    double d = (double)x - (double)dq;
    double ad = fabs(d);
    a[k] += d * d;
    b[k] += (double)x * (double)x;
    m[k] = ad > m[k] ? ad : m[k];
    return (uint8_t)(int)q;
}

/* rtn_group: the lanes reduced in the fixed order and added to the sums */
static inline void qd_rtn_fold(const double a[8], const double b[8], const double m[8], double *e2, double *w2,
                               double *mx)
{
    *e2 += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *w2 += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    for (int k = 0; k < 8; k++)
        if (m[k] > *mx) *mx = m[k];
}

#endif /* QD_KERNELS_GPTQ_RTN_SCALAR_H */
