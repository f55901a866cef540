/* Scalar references of GPTQ's column step and of the fused round-to-nearest kernels (kernels.h:
 * gptq_column, range_f32, all_finite, rtn_group). They define the results the quantize command
 * writes: kernels/avx2/gptq_rtn.c gives the same bits. Compiled without ISA flags; the steps the
 * ISA versions share are in gptq_rtn_scalar.h. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/ref/gptq_rtn_scalar.h"

static void ref_gptq_column(const qd_gptq_col *a, int64_t i) { qd_gptq_rows_scalar(a, i, 0); }

static int ref_range_f32(const float *x, int64_t n, float *lo, float *hi)
{
    float l0 = x[0], h0 = x[0], f = 0.0f;
    int64_t c = 0;
    if (n >= 16) { /* lane k takes x[k], x[k + 8], ... over the whole 8-blocks */
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
        qd_range_fold(l, h, acc, &l0, &h0, &f);
    }
    return qd_range_tail(x, c, n, l0, h0, f, lo, hi);
}

static int ref_all_finite(const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

static void ref_rtn_group(const float *x, int64_t n, float s, int32_t z, int maxq, uint8_t *codes, double *e2,
                          double *w2, double *mx)
{
    const float zf = (float)z, mf = (float)maxq;
    double a[8] = {0}, b[8] = {0}, m[8] = {0};
    for (int64_t c = 0; c < n; c++) codes[c] = qd_rtn_one(x[c], s, zf, mf, (int)(c & 7), a, b, m);
    qd_rtn_fold(a, b, m, e2, w2, mx);
}

void qd_kernels_fill_ref_gptq_rtn(qd_kernel_table *t)
{
    t->gptq_column = ref_gptq_column;
    t->range_f32 = ref_range_f32;
    t->all_finite = ref_all_finite;
    t->rtn_group = ref_rtn_group;
}
