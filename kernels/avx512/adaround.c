/* AVX-512 version of the AdaRound step (kernels.h adaround_step): kernels/avx2/adaround.c's
 * operations sixteen lanes at a time, the tail under a mask, with the reference's bits
 * (kernels/ref/adaround.c). A product that the reference rounds before an addition passes
 * through qd_opaque16() so that the compiler cannot fuse the two. */
#include <float.h>
#include <immintrin.h>

#include "kernels/act_coef.h"
#include "kernels/avx512/exp_poly.h"
#include "kernels/ada_coef.h"
#include "kernels/kernels.h"

#define S1(c) _mm512_set1_ps(c)

static inline __m512 log16(__m512 x)
{
    const __m512i bits = _mm512_castps_si512(x);
    __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(bits, 23), _mm512_set1_epi32(126)));
    const __m512 m = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007FFFFF)), _mm512_set1_epi32(0x3F000000)));
    const __mmask16 lo = _mm512_cmp_ps_mask(m, S1(QD_LOG_SQRTHF), _CMP_LT_OQ);
    const __m512 t = _mm512_mask_blend_ps(lo, m, _mm512_add_ps(m, m));
    e = _mm512_mask_blend_ps(lo, e, _mm512_sub_ps(e, S1(1.0f)));
    const __m512 f = _mm512_sub_ps(t, S1(1.0f));
    const __m512 z = qd_opaque16(_mm512_mul_ps(f, f));
    __m512 y = S1(QD_LOG_P0);
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P1));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P2));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P3));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P4));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P5));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P6));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P7));
    y = _mm512_fmadd_ps(y, f, S1(QD_LOG_P8));
    y = qd_opaque16(_mm512_mul_ps(y, f));
    y = qd_opaque16(_mm512_mul_ps(y, z));
    y = _mm512_fmadd_ps(e, S1(QD_LN2_LO), y);
    y = _mm512_fmadd_ps(S1(-0.5f), z, y);
    const __m512 r = _mm512_add_ps(f, y);
    return _mm512_fmadd_ps(e, S1(QD_LN2_HI), r);
}

/* lanes [i, i + 16) under mask k */
static inline void step16(const qd_ada_step *s, const float *gw, int64_t i, __mmask16 k)
{
    const __m512 sign = S1(-0.0f), zero = _mm512_setzero_ps(), one = S1(1.0f);
    __m512 V = _mm512_maskz_loadu_ps(k, s->V + i);
    if (gw) {
        const __m512 g = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, gw + i), _mm512_maskz_loadu_ps(k, s->a + i),
                                         _mm512_maskz_loadu_ps(k, s->b + i));
        const __m512 m = _mm512_fmadd_ps(S1(QD_ADA_B1), _mm512_maskz_loadu_ps(k, s->m + i),
                                         qd_opaque16(_mm512_mul_ps(g, S1(1.0f - QD_ADA_B1))));
        const __m512 v =
            _mm512_fmadd_ps(S1(QD_ADA_B2), _mm512_maskz_loadu_ps(k, s->v + i),
                            qd_opaque16(_mm512_mul_ps(qd_opaque16(_mm512_mul_ps(g, g)), S1(1.0f - QD_ADA_B2))));
        _mm512_mask_storeu_ps(s->m + i, k, m);
        _mm512_mask_storeu_ps(s->v + i, k, v);
        const __m512 den = _mm512_add_ps(_mm512_sqrt_ps(_mm512_mul_ps(v, S1(s->ic2))), S1(QD_ADA_EPS));
        V = _mm512_sub_ps(V, _mm512_div_ps(_mm512_mul_ps(S1(s->lrc1), m), den));
        _mm512_mask_storeu_ps(s->V + i, k, V);
    }
    const __m512 d = _mm512_min_ps(_mm512_max_ps(_mm512_xor_ps(V, sign), S1(-QD_ADA_VCLAMP)), S1(QD_ADA_VCLAMP));
    const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, qd_exp_poly16(d)));
    const __m512 hraw = _mm512_fmadd_ps(sg, S1(QD_ADA_ZG), S1(QD_ADA_GAMMA));
    const __m512 h = _mm512_min_ps(_mm512_max_ps(hraw, zero), one);
    const __mmask16 in = _mm512_cmp_ps_mask(hraw, zero, _CMP_GT_OQ) & _mm512_cmp_ps_mask(hraw, one, _CMP_LT_OQ);
    const __m512 dh =
        _mm512_maskz_mov_ps(in, _mm512_mul_ps(qd_opaque16(_mm512_mul_ps(S1(QD_ADA_ZG), sg)), _mm512_sub_ps(one, sg)));
    const __m512 sm = _mm512_maskz_loadu_ps(k, s->sm + i);
    _mm512_mask_storeu_ps(s->E + i, k, _mm512_fnmadd_ps(sm, h, _mm512_maskz_loadu_ps(k, s->c0 + i)));
    _mm512_mask_storeu_ps(s->a + i, k, _mm512_mul_ps(sm, dh));
    if (s->lambda > 0.0f) {
        const float bm1 = s->beta - 1.0f, c2l = (2.0f * s->lambda) * s->beta;
        const __m512 t = _mm512_sub_ps(_mm512_add_ps(h, h), one);
        const __m512 at = _mm512_andnot_ps(sign, t);
        const __m512 L = log16(_mm512_max_ps(at, S1(FLT_MIN)));
        __m512 p =
            qd_exp_poly16(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(S1(bm1), L), S1(QD_EXP_LO)), S1(QD_ADA_EXP_HI)));
        p = _mm512_mask_mov_ps(p, _mm512_cmp_ps_mask(t, zero, _CMP_EQ_OQ), zero);
        const __m512 mag = _mm512_mul_ps(S1(c2l), p);
        const __m512 cs = _mm512_or_ps(_mm512_andnot_ps(sign, mag), _mm512_and_ps(sign, t));
        _mm512_mask_storeu_ps(s->b + i, k, _mm512_mul_ps(_mm512_xor_ps(cs, sign), dh));
        if (s->reg) _mm512_mask_storeu_ps(s->reg + i, k, _mm512_fnmadd_ps(at, p, one));
    } else {
        _mm512_mask_storeu_ps(s->b + i, k, zero);
        if (s->reg) _mm512_mask_storeu_ps(s->reg + i, k, zero);
    }
}

static void avx512_adaround_step(const qd_ada_step *s, const float *gw)
{
    const unsigned csr = _mm_getcsr(); /* subnormals flushed to zero, as in the reference */
    _mm_setcsr(csr | 0x8040u);
    int64_t i = 0;
    for (; i + 16 <= s->n; i += 16) step16(s, gw, i, 0xFFFF);
    if (i < s->n) step16(s, gw, i, (__mmask16)((1u << (s->n - i)) - 1));
    _mm_setcsr(csr);
}

void qd_kernels_fill_avx512_adaround(qd_kernel_table *t);
void qd_kernels_fill_avx512_adaround(qd_kernel_table *t)
{
    t->isa = "avx512";
    t->adaround_step = avx512_adaround_step;
}
