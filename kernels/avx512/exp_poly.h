/* kernels/avx512/exp_poly.h — kernels/ref/exp_poly.h sixteen lanes at a time, with the same bits
 * (compile with the AVX-512 F flags). Valid for d in [QD_EXP_LO, 88]: callers clamp. A product
 * the reference rounds before an addition passes through qd_opaque16() so that the compiler
 * cannot fuse the two. */
#ifndef QD_AVX512_EXP_POLY_H
#define QD_AVX512_EXP_POLY_H

#include <immintrin.h>

#include "kernels/act_coef.h"

static inline __m512 qd_opaque16(__m512 x)
{
    __asm__("" : "+v"(x));
    return x;
}

static inline __m512 qd_exp_poly16(__m512 d)
{
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(d, _mm512_set1_ps(QD_LOG2EF)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-QD_LN2_HI), d);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-QD_LN2_LO), r);
    __m512 p = _mm512_set1_ps(QD_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(QD_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(QD_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(QD_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(QD_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(QD_EXP_P5));
    const __m512 r2 = qd_opaque16(_mm512_mul_ps(r, r));
    __m512 y = _mm512_fmadd_ps(p, r2, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return qd_opaque16(_mm512_mul_ps(y, _mm512_castsi512_ps(bits)));
}

#endif
