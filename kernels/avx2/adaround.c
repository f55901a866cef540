/* AVX2 + FMA version of the AdaRound step (kernels.h adaround_step, log): the operations of
 * kernels/ref/adaround.c, eight lanes at a time, with the same bits. A product that the
 * reference rounds before an addition passes through opaque() so that the compiler cannot fuse
 * the two into one FMA. */
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/act_coef.h"
#include "kernels/ada_coef.h"
#include "kernels/avx2/exp_poly.h"
#include "kernels/kernels.h"

static inline __m256 opaque(__m256 x)
{
    __asm__("" : "+x"(x));
    return x;
}

#define S1(c) _mm256_set1_ps(c)

static inline __m256 exp8(__m256 d) { return opaque(qd_exp_poly8(d)); }

static inline __m256 log8(__m256 x)
{
    const __m256i bits = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126)));
    const __m256 m = _mm256_castsi256_ps(
        _mm256_or_si256(_mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F000000)));
    const __m256 lo = _mm256_cmp_ps(m, S1(QD_LOG_SQRTHF), _CMP_LT_OQ);
    const __m256 t = _mm256_blendv_ps(m, _mm256_add_ps(m, m), lo);
    e = _mm256_blendv_ps(e, _mm256_sub_ps(e, S1(1.0f)), lo);
    const __m256 f = _mm256_sub_ps(t, S1(1.0f));
    const __m256 z = _mm256_mul_ps(f, f);
    __m256 y = S1(QD_LOG_P0);
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P1));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P2));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P3));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P4));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P5));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P6));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P7));
    y = _mm256_fmadd_ps(y, f, S1(QD_LOG_P8));
    y = _mm256_mul_ps(y, f);
    y = opaque(_mm256_mul_ps(y, z));
    y = _mm256_fmadd_ps(e, S1(QD_LN2_LO), y);
    y = _mm256_fmadd_ps(S1(-0.5f), z, y);
    const __m256 r = _mm256_add_ps(f, y);
    return _mm256_fmadd_ps(e, S1(QD_LN2_HI), r);
}

static void avx2_log(const float *x, int64_t n, float *y)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, log8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float buf[8];
        for (int k = 0; k < 8; k++) buf[k] = 1.0f;
        memcpy(buf, x + i, (size_t)(n - i) * sizeof(float));
        _mm256_storeu_ps(buf, log8(_mm256_loadu_ps(buf)));
        memcpy(y + i, buf, (size_t)(n - i) * sizeof(float));
    }
}

/* lanes [i, i + 8) of the step; all pointers already offset to i */
static inline void step8(const qd_ada_step *s, const float *gw, const float *c0p, const float *smp, float *Vp,
                         float *mp, float *vp, float *ap, float *bp, float *Ep, float *rp)
{
    const __m256 sign = S1(-0.0f), zero = _mm256_setzero_ps(), one = S1(1.0f);
    __m256 V = _mm256_loadu_ps(Vp);
    if (gw) {
        const __m256 g = _mm256_fmadd_ps(_mm256_loadu_ps(gw), _mm256_loadu_ps(ap), _mm256_loadu_ps(bp));
        const __m256 m = _mm256_fmadd_ps(S1(QD_ADA_B1), _mm256_loadu_ps(mp), _mm256_mul_ps(g, S1(1.0f - QD_ADA_B1)));
        const __m256 v = _mm256_fmadd_ps(S1(QD_ADA_B2), _mm256_loadu_ps(vp),
                                         _mm256_mul_ps(_mm256_mul_ps(g, g), S1(1.0f - QD_ADA_B2)));
        _mm256_storeu_ps(mp, m);
        _mm256_storeu_ps(vp, v);
        const __m256 den = _mm256_add_ps(_mm256_sqrt_ps(_mm256_mul_ps(v, S1(s->ic2))), S1(QD_ADA_EPS));
        V = _mm256_sub_ps(V, _mm256_div_ps(_mm256_mul_ps(S1(s->lrc1), m), den));
        _mm256_storeu_ps(Vp, V);
    }
    const __m256 d = _mm256_min_ps(_mm256_max_ps(_mm256_xor_ps(V, sign), S1(-QD_ADA_VCLAMP)), S1(QD_ADA_VCLAMP));
    const __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, exp8(d)));
    const __m256 hraw = _mm256_fmadd_ps(sg, S1(QD_ADA_ZG), S1(QD_ADA_GAMMA));
    const __m256 h = _mm256_min_ps(_mm256_max_ps(hraw, zero), one);
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(hraw, zero, _CMP_GT_OQ), _mm256_cmp_ps(hraw, one, _CMP_LT_OQ));
    const __m256 dh = _mm256_and_ps(in, _mm256_mul_ps(_mm256_mul_ps(S1(QD_ADA_ZG), sg), _mm256_sub_ps(one, sg)));
    const __m256 sm = _mm256_loadu_ps(smp);
    _mm256_storeu_ps(Ep, _mm256_fnmadd_ps(sm, h, _mm256_loadu_ps(c0p)));
    _mm256_storeu_ps(ap, _mm256_mul_ps(sm, dh));
    if (s->lambda > 0.0f) {
        const float bm1 = s->beta - 1.0f, c2l = (2.0f * s->lambda) * s->beta;
        const __m256 t = _mm256_sub_ps(_mm256_add_ps(h, h), one);
        const __m256 at = _mm256_andnot_ps(sign, t);
        const __m256 L = log8(_mm256_max_ps(at, S1(FLT_MIN)));
        __m256 p = exp8(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(S1(bm1), L), S1(QD_EXP_LO)), S1(QD_ADA_EXP_HI)));
        p = _mm256_andnot_ps(_mm256_cmp_ps(t, zero, _CMP_EQ_OQ), p);
        const __m256 mag = _mm256_mul_ps(S1(c2l), p);
        const __m256 cs = _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, t));
        _mm256_storeu_ps(bp, _mm256_mul_ps(_mm256_xor_ps(cs, sign), dh));
        if (rp) _mm256_storeu_ps(rp, _mm256_fnmadd_ps(at, p, one));
    } else {
        _mm256_storeu_ps(bp, zero);
        if (rp) _mm256_storeu_ps(rp, zero);
    }
}

static void avx2_adaround_step(const qd_ada_step *s, const float *gw)
{
    const unsigned csr = _mm_getcsr(); /* subnormals flushed to zero, as in the reference */
    _mm_setcsr(csr | 0x8040u);
    const int64_t n = s->n;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        step8(s, gw ? gw + i : NULL, s->c0 + i, s->sm + i, s->V + i, s->m + i, s->v + i, s->a + i, s->b + i, s->E + i,
              s->reg ? s->reg + i : NULL);
    if (i < n) { /* the tail through the same lanes, padded with zeros */
        const size_t k = (size_t)(n - i) * sizeof(float);
        float buf[11][8];
        memset(buf, 0, sizeof buf);
        memcpy(buf[0], s->c0 + i, k);
        memcpy(buf[1], s->sm + i, k);
        memcpy(buf[2], s->V + i, k);
        memcpy(buf[3], s->m + i, k);
        memcpy(buf[4], s->v + i, k);
        memcpy(buf[5], s->a + i, k);
        memcpy(buf[6], s->b + i, k);
        if (gw) memcpy(buf[10], gw + i, k);
        step8(s, gw ? buf[10] : NULL, buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7],
              s->reg ? buf[8] : NULL);
        memcpy(s->V + i, buf[2], k);
        memcpy(s->m + i, buf[3], k);
        memcpy(s->v + i, buf[4], k);
        memcpy(s->a + i, buf[5], k);
        memcpy(s->b + i, buf[6], k);
        memcpy(s->E + i, buf[7], k);
        if (s->reg) memcpy(s->reg + i, buf[8], k);
    }
    _mm_setcsr(csr);
}

/* The sparse gradient update: column strips of 96 held in twelve registers while a row's terms
 * stream through them (H's strip stays in cache across rows); per element the fmas run in term
 * order as in the reference. */
#define QD_SPU_W 12
static void avx2_ada_sparse_update(const int64_t *ptr, const int32_t *idx, const float *val, int64_t R, const float *H,
                                   int64_t C, float *y, int64_t ld)
{
    const int64_t strip = 8 * QD_SPU_W, cfull = C / strip * strip;
    for (int64_t c0 = 0; c0 < cfull; c0 += strip)
        for (int64_t r = 0; r < R; r++) {
            if (ptr[r] == ptr[r + 1]) continue;
            float *yr = y + r * ld + c0;
            __m256 acc[QD_SPU_W];
            for (int u = 0; u < QD_SPU_W; u++) acc[u] = _mm256_loadu_ps(yr + 8 * u);
            for (int64_t k = ptr[r]; k < ptr[r + 1]; k++) {
                const __m256 d = _mm256_set1_ps(val[k]);
                const float *h = H + (int64_t)idx[k] * C + c0;
                for (int u = 0; u < QD_SPU_W; u++) acc[u] = _mm256_fmadd_ps(d, _mm256_loadu_ps(h + 8 * u), acc[u]);
            }
            for (int u = 0; u < QD_SPU_W; u++) _mm256_storeu_ps(yr + 8 * u, acc[u]);
        }
    /* the last columns: eight at a time, then one */
    for (int64_t r = 0; r < R; r++) {
        if (ptr[r] == ptr[r + 1]) continue;
        float *yr = y + r * ld;
        int64_t c = cfull;
        for (; c + 8 <= C; c += 8) {
            __m256 acc = _mm256_loadu_ps(yr + c);
            for (int64_t k = ptr[r]; k < ptr[r + 1]; k++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(val[k]), _mm256_loadu_ps(H + (int64_t)idx[k] * C + c), acc);
            _mm256_storeu_ps(yr + c, acc);
        }
        for (; c < C; c++) {
            float a = yr[c];
            for (int64_t k = ptr[r]; k < ptr[r + 1]; k++) a = fmaf(val[k], H[(int64_t)idx[k] * C + c], a);
            yr[c] = a;
        }
    }
}

void qd_kernels_fill_avx2_adaround(qd_kernel_table *t)
{
    t->adaround_step = avx2_adaround_step;
    t->log = avx2_log;
    t->ada_sparse_update = avx2_ada_sparse_update;
}
