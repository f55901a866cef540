/* kernels/avx2/exp_poly.h — kernels/ref/exp_poly.h eight lanes at a time, with the same bits
 * (compile with -mavx2 -mfma). Valid for d in [QD_EXP_LO, 88]: callers clamp. */
#ifndef QD_AVX2_EXP_POLY_H
#define QD_AVX2_EXP_POLY_H

#include <immintrin.h>

#include "kernels/act_coef.h"

static inline __m256 qd_exp_poly8(__m256 d)
{
    const __m256 n =
        _mm256_round_ps(_mm256_mul_ps(d, _mm256_set1_ps(QD_LOG2EF)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-QD_LN2_HI), d);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-QD_LN2_LO), r);
    __m256 p = _mm256_set1_ps(QD_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QD_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QD_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QD_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QD_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(QD_EXP_P5));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

/* exp(d) for any d <= 88: 0 below QD_EXP_LO (kernels/ref/act.c's exp1) */
static inline __m256 qd_exp8_lo(__m256 d)
{
    const __m256 lo = _mm256_set1_ps(QD_EXP_LO);
    const __m256 y = qd_exp_poly8(_mm256_max_ps(d, lo));
    return _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(d, lo, _CMP_LT_OQ));
}

#endif
