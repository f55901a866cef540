/* Scalar references of the training kernels (kernels.h: adamw, sumsq). They define the bits of a
 * fine-tuning step's optimizer update; kernels/avx2/train.c gives the same. */
#include <math.h>

#include "kernels/kernels.h"

static void ref_adamw(float *w, const float *g, float *m, float *v, int64_t n, const qd_adamw_args *a)
{
    for (int64_t i = 0; i < n; i++) {
        const float gr = g[i] * a->cf;
        const float mm = fmaf(a->b1, m[i], a->omb1 * gr);
        const float vv = fmaf(a->b2, v[i], (a->omb2 * gr) * gr);
        const float den = fmaf(sqrtf(vv), a->rbc2, a->eps);
        m[i] = mm;
        v[i] = vv;
        w[i] = fmaf(w[i], a->decay, -((a->pstep * mm) / den));
    }
}

static double ref_sumsq(const float *x, int64_t n)
{
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t i = 0; i < n; i++) s[i & 7] += (double)x[i] * (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void qd_kernels_fill_ref_train(qd_kernel_table *t)
{
    t->adamw = ref_adamw;
    t->sumsq = ref_sumsq;
}
