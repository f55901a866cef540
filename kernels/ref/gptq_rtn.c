/* Scalar references of GPTQ's column step and of the fused round-to-nearest kernels (kernels.h:
 * gptq_column, range_f32, all_finite, rtn_group). They define the results the quantize command
 * writes: kernels/avx2/gptq_rtn.c gives the same bits. Compiled without ISA flags; ISO C mode keeps
 * every product and sum its own rounding. */
#include <math.h>

#include "kernels/kernels.h"

/* The rows [r0, n) of one column step. */
static void gptq_rows(const qd_gptq_col *a, int64_t i, int64_t r0)
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

static void ref_gptq_column(const qd_gptq_col *a, int64_t i) { gptq_rows(a, i, 0); }

static int ref_range_f32(const float *x, int64_t n, float *lo_out, float *hi_out)
{
    float lo = x[0], hi = x[0], f = 0.0f;
    int64_t c = 0;
    if (n >= 16) {
        float l[8], h[8], acc[8];
        for (int k = 0; k < 8; k++) {
            l[k] = h[k] = x[k];
            acc[k] = x[k] - x[k];
        }
        for (c = 8; c + 8 <= n; c += 8)
            for (int k = 0; k < 8; k++) {
                float v = x[c + k];
                l[k] = v < l[k] ? v : l[k];
                h[k] = v > h[k] ? v : h[k];
                acc[k] += v - v;
            }
        for (int k = 0; k < 8; k++) {
            lo = l[k] < lo ? l[k] : lo;
            hi = h[k] > hi ? h[k] : hi;
            f += acc[k];
        }
    }
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

static int ref_all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

#define QD_RINT_MAGIC 12582912.0f /* 1.5 * 2^23 */

static void ref_rtn_group(const float *x, int64_t n, float s, int32_t z, int maxq, uint8_t *codes, double *e2,
                          double *w2, double *mx)
{
    const float zf = (float)z, mf = (float)maxq;
    double a[8] = {0}, b[8] = {0}, m[8] = {0};
    for (int64_t c = 0; c < n; c++) {
        const int k = (int)(c & 7);
        float q = ((x[c] / s + QD_RINT_MAGIC) - QD_RINT_MAGIC) + zf;
        q = q < 0.0f ? 0.0f : q;
        q = q > mf ? mf : q;
        codes[c] = (uint8_t)(int)q;
        float dq = s * (q - zf);
        double d = (double)x[c] - (double)dq;
        double ad = fabs(d);
        a[k] += d * d;
        b[k] += (double)x[c] * (double)x[c];
        m[k] = ad > m[k] ? ad : m[k];
    }
    *e2 += ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *w2 += ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    for (int k = 0; k < 8; k++)
        if (m[k] > *mx) *mx = m[k];
}

void qd_kernels_fill_ref_gptq_rtn(qd_kernel_table *t)
{
    t->gptq_column = ref_gptq_column;
    t->range_f32 = ref_range_f32;
    t->all_finite = ref_all_finite;
    t->rtn_group = ref_rtn_group;
}
