/* Scalar references of the forward pass's elementwise math (kernels.h: gelu, exp_sum). Every
 * step is one IEEE operation (fmaf where the vector code fuses), so kernels/avx2/act.c gives the
 * same bits. */
#include <math.h>
#include <string.h>

#include "kernels/act_coef.h"
#include "kernels/ref/exp_poly.h"
#include "kernels/kernels.h"

/* a < b ? a : b and a > b ? a : b: the x86 minps/maxps selects (NaN picks the second operand) */
static inline float mn(float a, float b) { return a < b ? a : b; }
static inline float mx_(float a, float b) { return a > b ? a : b; }

static inline float erf1(float x)
{
    x = mn(x, 4.0f);
    x = mx_(x, -4.0f);
    const float x2 = x * x;
    float p = QD_ERF_A13;
    p = fmaf(p, x2, QD_ERF_A11);
    p = fmaf(p, x2, QD_ERF_A9);
    p = fmaf(p, x2, QD_ERF_A7);
    p = fmaf(p, x2, QD_ERF_A5);
    p = fmaf(p, x2, QD_ERF_A3);
    p = fmaf(p, x2, QD_ERF_A1);
    p = p * x;
    float q = QD_ERF_B8;
    q = fmaf(q, x2, QD_ERF_B6);
    q = fmaf(q, x2, QD_ERF_B4);
    q = fmaf(q, x2, QD_ERF_B2);
    q = fmaf(q, x2, QD_ERF_B0);
    return p / q;
}

static void ref_gelu(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i];
        const float e = erf1(v * QD_SQRT1_2F);
        x[i] = (0.5f * v) * (1.0f + e);
    }
}

static inline float exp1(float d) { return qd_exp_lo(d); }

float qd_ref_exp_sum(float *x, int64_t n, float m)
{
    float lane[8] = {0};
    const int64_t n8 = n - n % 8;
    for (int64_t i = 0; i < n8; i++) {
        x[i] = exp1(x[i] - m);
        lane[i % 8] += x[i];
    }
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    for (int64_t i = n8; i < n; i++) {
        x[i] = exp1(x[i] - m);
        s += x[i];
    }
    return s;
}

void qd_kernels_fill_ref_act(qd_kernel_table *t)
{
    t->gelu = ref_gelu;
    t->exp_sum = qd_ref_exp_sum;
}
