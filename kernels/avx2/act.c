/* AVX2 + FMA versions of the elementwise math (kernels.h: gelu, exp_sum): the operations of
 * kernels/ref/act.c, eight lanes at a time, with the same bits. */
#include <immintrin.h>
#include <string.h>

#include "kernels/act_coef.h"
#include "kernels/avx2/exp_poly.h"
#include "kernels/kernels.h"

static inline __m256 erf8(__m256 x)
{
    x = _mm256_min_ps(x, _mm256_set1_ps(4.0f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-4.0f));
    const __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(QD_ERF_A13);
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A11));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A9));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A7));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A5));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A3));
    p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(QD_ERF_A1));
    p = _mm256_mul_ps(p, x);
    __m256 q = _mm256_set1_ps(QD_ERF_B8);
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(QD_ERF_B6));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(QD_ERF_B4));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(QD_ERF_B2));
    q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(QD_ERF_B0));
    return _mm256_div_ps(p, q);
}

static void avx2_gelu(float *x, int64_t n)
{
    const __m256 c = _mm256_set1_ps(QD_SQRT1_2F), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 e = erf8(_mm256_mul_ps(v, c));
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
    }
    if (i < n) { /* the tail through the same lanes, padded */
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        const __m256 v = _mm256_loadu_ps(buf);
        const __m256 e = erf8(_mm256_mul_ps(v, c));
        _mm256_storeu_ps(buf, _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e)));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

static inline __m256 exp8(__m256 d) { return qd_exp8_lo(d); }

float qd_avx2_exp_sum(float *x, int64_t n, float m)
{
    const __m256 mv = _mm256_set1_ps(m);
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lane[8];
    _mm256_storeu_ps(lane, acc);
    float s = 0.0f;
    for (int j = 0; j < 8; j++) s += lane[j];
    if (i < n) {
        float buf[8] = {0};
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(buf, exp8(_mm256_sub_ps(_mm256_loadu_ps(buf), mv)));
        memcpy(x + i, buf, (size_t)(n - i) * sizeof(float));
        for (int64_t k = 0; k < n - i; k++) s += buf[k];
    }
    return s;
}

void qd_kernels_fill_avx2_act(qd_kernel_table *t)
{
    t->gelu = avx2_gelu;
    t->exp_sum = qd_avx2_exp_sum;
}
