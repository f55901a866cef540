/* Scalar references of the runtime's block pieces (kernels/infer.h): LayerNorm with the residual
 * add and one attention head. Every operation is written in the order the header states; the
 * vector versions (kernels/avx2/infer.c, kernels/avx512/infer.c) give the same bits. Compiled
 * without FP contraction (ISO C mode): fmaf is the only fused operation. */
#include <math.h>

#include "kernels/infer.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

float qd_sum16_ref(const float *v, int64_t n)
{
    float p[16] = {0};
    for (int64_t i = 0; i < n; i++) p[i % 16] += v[i];
    for (int s = 8; s >= 1; s /= 2)
        for (int l = 0; l < s; l++) p[l] += p[l + s];
    return p[0];
}

static void ref_layernorm(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                          const float *b, float eps, float *y, float *sum)
{
    QD_ASSERT(n >= 1 && n <= 8192 && ld >= n);
    float v[8192], d[8192];
    for (int64_t m = 0; m < rows; m++) {
        const float *xr = x + m * ld, *rr = r ? r + m * ld : NULL;
        for (int64_t i = 0; i < n; i++) v[i] = rr ? xr[i] + rr[i] : xr[i];
        if (sum)
            for (int64_t i = 0; i < n; i++) sum[m * ld + i] = v[i];
        const float mean = qd_sum16_ref(v, n) / (float)n;
        for (int64_t i = 0; i < n; i++) {
            const float di = v[i] - mean;
            v[i] = di;
            d[i] = di * di;
        }
        const float var = qd_sum16_ref(d, n) / (float)n;
        const float rstd = 1.0f / sqrtf(var + eps);
        float *yr = y + m * ld;
        for (int64_t i = 0; i < n; i++) yr[i] = ((v[i] * rstd) * g[i]) + b[i];
    }
}

int64_t qd_attention_work_floats(int64_t T, int64_t d)
{
    const int64_t t16 = (T + 15) / 16 * 16;
    return (d + 4) * t16 + 16;
}

static void ref_attention(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int64_t d, float scale,
                          float *ctx, int64_t ldc, float *work)
{
    QD_ASSERT(T >= 1 && d >= 1 && ld >= d && ldc >= d);
    float *s = work;
    for (int64_t i = 0; i < T; i++) {
        const float *qi = q + i * ld;
        float mx = -INFINITY;
        for (int64_t j = 0; j < T; j++) {
            const float *kj = k + j * ld;
            float a = 0.0f;
            for (int64_t c = 0; c < d; c++) a = fmaf(qi[c], kj[c], a);
            s[j] = a * scale;
            mx = s[j] > mx ? s[j] : mx;
        }
        const float inv = 1.0f / qd_ref_exp_sum(s, T, mx);
        for (int64_t j = 0; j < T; j++) s[j] = s[j] * inv;
        float *ci = ctx + i * ldc;
        for (int64_t c = 0; c < d; c++) {
            float a = 0.0f;
            for (int64_t j = 0; j < T; j++) a = fmaf(s[j], v[j * ld + c], a);
            ci[c] = a;
        }
    }
}

void qd_kernels_fill_ref_infer(qd_kernel_table *t)
{
    t->layernorm = ref_layernorm;
    t->attention = ref_attention;
}

void qd_layernorm_rows(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                       const float *b, float eps, float *y, float *sum)
{
    qd_kernels()->layernorm(x, r, rows, n, ld, g, b, eps, y, sum);
}

void qd_attention_head(const float *q, const float *k, const float *v, int64_t ld, int64_t T, int64_t d, float scale,
                       float *ctx, int64_t ldc, float *work)
{
    qd_kernels()->attention(q, k, v, ld, T, d, scale, ctx, ldc, work);
}
