/* Scalar reference of the AdaRound step (kernels.h adaround_step). Every step is one IEEE
 * operation (fmaf where the vector code fuses), so kernels/avx2/adaround.c gives the same bits. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/act_coef.h"
#include "kernels/ada_coef.h"
#include "kernels/kernels.h"
#include "kernels/ref/exp_poly.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
/* the step runs with subnormals flushed to zero (FTZ and DAZ), as the ISA versions do: Adam's
 * moments of saturated weights decay into the subnormal range, where every operation would take
 * a slow microcode path */
#define QD_FTZ_BEGIN                       \
    const unsigned qd_csr_ = _mm_getcsr(); \
    _mm_setcsr(qd_csr_ | 0x8040u)
#define QD_FTZ_END _mm_setcsr(qd_csr_)
#else
#define QD_FTZ_BEGIN
#define QD_FTZ_END
#endif

/* x86 minps/maxps selects (a NaN picks the second operand) */
static inline float mn(float a, float b) { return a < b ? a : b; }
static inline float mx_(float a, float b) { return a > b ? a : b; }

/* log(x) for normal x > 0 */
static inline float log1(float x)
{
    int32_t bits;
    memcpy(&bits, &x, sizeof bits);
    float e = (float)((bits >> 23) - 126); /* x = 2^e m, m in [1/2, 1) */
    bits = (bits & 0x007FFFFF) | 0x3F000000;
    float m;
    memcpy(&m, &bits, sizeof m);
    const int lo = m < QD_LOG_SQRTHF;
    const float t = lo ? m + m : m;
    e = lo ? e - 1.0f : e;
    const float f = t - 1.0f;
    const float z = f * f;
    float y = QD_LOG_P0;
    y = fmaf(y, f, QD_LOG_P1);
    y = fmaf(y, f, QD_LOG_P2);
    y = fmaf(y, f, QD_LOG_P3);
    y = fmaf(y, f, QD_LOG_P4);
    y = fmaf(y, f, QD_LOG_P5);
    y = fmaf(y, f, QD_LOG_P6);
    y = fmaf(y, f, QD_LOG_P7);
    y = fmaf(y, f, QD_LOG_P8);
    y = y * f;
    y = y * z;
    y = fmaf(e, QD_LN2_LO, y);
    y = fmaf(-0.5f, z, y);
    float r = f + y;
    return fmaf(e, QD_LN2_HI, r);
}

static void ref_log(const float *x, int64_t n, float *y)
{
    for (int64_t i = 0; i < n; i++) y[i] = log1(x[i]);
}

static void ref_adaround_step(const qd_ada_step *s, const float *gw)
{
    QD_FTZ_BEGIN;
    const float omb1 = 1.0f - QD_ADA_B1, omb2 = 1.0f - QD_ADA_B2;
    const float bm1 = s->beta - 1.0f, c2l = (2.0f * s->lambda) * s->beta;
    for (int64_t i = 0; i < s->n; i++) {
        float V = s->V[i];
        if (gw) {
            const float g = fmaf(gw[i], s->a[i], s->b[i]);
            const float m = fmaf(QD_ADA_B1, s->m[i], g * omb1);
            const float v = fmaf(QD_ADA_B2, s->v[i], (g * g) * omb2);
            s->m[i] = m;
            s->v[i] = v;
            const float den = sqrtf(v * s->ic2) + QD_ADA_EPS;
            V = V - (s->lrc1 * m) / den;
            s->V[i] = V;
        }
        const float d = mn(mx_(-V, -QD_ADA_VCLAMP), QD_ADA_VCLAMP);
        const float sg = 1.0f / (1.0f + qd_exp_poly(d));
        const float hraw = fmaf(sg, QD_ADA_ZG, QD_ADA_GAMMA);
        const float h = mn(mx_(hraw, 0.0f), 1.0f);
        const float dh = (hraw > 0.0f && hraw < 1.0f) ? (QD_ADA_ZG * sg) * (1.0f - sg) : 0.0f;
        const float sm = s->sm[i];
        s->E[i] = fmaf(-sm, h, s->c0[i]);
        s->a[i] = sm * dh;
        if (s->lambda > 0.0f) {
            const float t = (h + h) - 1.0f;
            const float at = fabsf(t);
            const float L = log1(mx_(at, FLT_MIN));
            float p = qd_exp_poly(mn(mx_(bm1 * L, QD_EXP_LO), QD_ADA_EXP_HI)); /* |t|^(beta - 1) */
            p = t == 0.0f ? 0.0f : p;
            s->b[i] = -copysignf(c2l * p, t) * dh;
            if (s->reg) s->reg[i] = fmaf(-at, p, 1.0f);
        } else {
            s->b[i] = 0.0f;
            if (s->reg) s->reg[i] = 0.0f;
        }
    }
    QD_FTZ_END;
}

static void ref_ada_sparse_update(const int64_t *ptr, const int32_t *idx, const float *val, int64_t R, const float *H,
                                  int64_t C, float *y, int64_t ld)
{
    for (int64_t r = 0; r < R; r++) {
        float *yr = y + r * ld;
        for (int64_t k = ptr[r]; k < ptr[r + 1]; k++) {
            const float d = val[k], *h = H + (int64_t)idx[k] * C;
            for (int64_t c = 0; c < C; c++) yr[c] = fmaf(d, h[c], yr[c]);
        }
    }
}

void qd_kernels_fill_ref_adaround(qd_kernel_table *t)
{
    t->adaround_step = ref_adaround_step;
    t->log = ref_log;
    t->ada_sparse_update = ref_ada_sparse_update;
}
