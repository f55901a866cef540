/* Scalar references of the runtime's block pieces (kernels/infer.h): LayerNorm with the residual
 * add and one attention head. Every operation is written in the order the header states; the
 * vector versions (kernels/avx2/infer.c, kernels/avx512/infer.c) give the same bits. Compiled
 * without FP contraction (ISO C mode): fmaf is the only fused operation. */
#include <math.h>

#include "kernels/infer.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"
#include "kernels/ref/exp_poly.h"

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

static void ref_attn_scores(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                            int64_t lds, float *kt)
{
    const int64_t t16 = (T + 15) / 16 * 16;
    QD_ASSERT(T >= 1 && d >= 1 && ld >= d && lds >= t16);
    (void)kt;
    for (int64_t i = 0; i < T; i++) {
        const float *qi = q + i * ld;
        for (int64_t j = 0; j < T; j++) {
            const float *kj = k + j * ld;
            float a = 0.0f;
            for (int64_t c = 0; c < d; c++) a = fmaf(qi[c], kj[c], a);
            S[i * lds + j] = a * scale;
        }
        for (int64_t j = T; j < t16; j++) S[i * lds + j] = 0.0f;
    }
}

static void ref_softmax_rows(float *S, int64_t rows, int64_t n, int64_t lds)
{
    for (int64_t i = 0; i < rows; i++) {
        float *s = S + i * lds, mx = -INFINITY;
        for (int64_t j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        for (int64_t j = 0; j < n; j++) s[j] = qd_exp_lo(s[j] - mx);
        const float inv = 1.0f / qd_sum16_ref(s, n);
        for (int64_t j = 0; j < n; j++) s[j] = s[j] * inv;
    }
}

static void ref_attn_context(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d, float *ctx,
                             int64_t ldc)
{
    for (int64_t i = 0; i < T; i++)
        for (int64_t c = 0; c < d; c++) {
            float a = 0.0f;
            for (int64_t j = 0; j < T; j++) a = fmaf(P[i * ldp + j], v[j * ld + c], a);
            ctx[i * ldc + c] = a;
        }
}

static void ref_col_absmax(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t k = 0; k < K; k++) {
            const float a = fabsf(s ? x[r * ldx + k] * s[k] : x[r * ldx + k]);
            m[k] = a > m[k] ? a : m[k];
        }
}

void qd_kernels_fill_ref_infer(qd_kernel_table *t)
{
    t->col_absmax = ref_col_absmax;
    t->layernorm = ref_layernorm;
    t->attn_scores = ref_attn_scores;
    t->softmax_rows = ref_softmax_rows;
    t->attn_context = ref_attn_context;
}

void qd_layernorm_rows(const float *x, const float *r, int64_t rows, int64_t n, int64_t ld, const float *g,
                       const float *b, float eps, float *y, float *sum)
{
    qd_kernels()->layernorm(x, r, rows, n, ld, g, b, eps, y, sum);
}

void qd_attn_scores(const float *q, const float *k, int64_t ld, int64_t T, int64_t d, float scale, float *S,
                    int64_t lds, float *kt)
{
    qd_kernels()->attn_scores(q, k, ld, T, d, scale, S, lds, kt);
}

void qd_col_absmax(const float *x, int64_t rows, int64_t K, int64_t ldx, const float *s, float *m)
{
    qd_kernels()->col_absmax(x, rows, K, ldx, s, m);
}

void qd_softmax_rows(float *S, int64_t rows, int64_t n, int64_t lds) { qd_kernels()->softmax_rows(S, rows, n, lds); }

void qd_attn_context(const float *P, int64_t ldp, const float *v, int64_t ld, int64_t T, int64_t d, float *ctx,
                     int64_t ldc)
{
    qd_kernels()->attn_context(P, ldp, v, ld, T, d, ctx, ldc);
}
