/* AVX2 versions of GPTQ's column step and of the fused round-to-nearest kernels (kernels.h),
 * bit-identical to kernels/ref/gptq_rtn.c: 8 rows (GPTQ) or 8 lanes (RTN) at a time with the
 * reference's operations in its order. vdivps (not a reciprocal), vroundps to nearest even, and
 * the selects of the reference as vmaxps / vminps with the operands in the order that makes them
 * the same select (vmaxps(a, b) = a > b ? a : b, vminps(a, b) = a < b ? a : b). Remainders and
 * lane folds run the reference's own scalar steps (kernels/ref/gptq_rtn_scalar.h). This file is
 * compiled with -mavx2 -mfma -mf16c and reached only through the dispatch table after the CPUID
 * check; ISO C mode keeps FP contraction off (no FMA is formed). */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/ref/gptq_rtn_scalar.h"

/* ---- GPTQ's column step ---------------------------------------------------------------------- */

static void avx2_gptq_column(const qd_gptq_col *a, int64_t i)
{
    const int64_t n8 = a->n & ~(int64_t)7;
    const __m256 vd = _mm256_set1_ps(a->d), vmax = _mm256_set1_ps((float)a->maxq), v0 = _mm256_setzero_ps();
    const __m256d vdd = _mm256_set1_pd((double)a->d * a->d), v2 = _mm256_set1_pd(2.0);
    float *t = a->T + i * a->ldt;
    for (int64_t r = 0; r < n8; r += 8) {
        __m256 w = _mm256_loadu_ps(t + r), s = _mm256_loadu_ps(a->s + r);
        __m256i z = _mm256_loadu_si256((const __m256i *)(a->z + r));
        __m256 qf = _mm256_add_ps(_mm256_round_ps(_mm256_div_ps(w, s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
                                  _mm256_cvtepi32_ps(z));
        qf = _mm256_min_ps(vmax, _mm256_max_ps(v0, qf));
        __m256i qi = _mm256_cvttps_epi32(qf);
        __m256 q = _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_sub_epi32(qi, z)));
        __m256 diff = _mm256_sub_ps(w, q);
        _mm256_storeu_ps(a->q + r, q);
        _mm256_storeu_ps(a->e + r, _mm256_div_ps(diff, vd));
        __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(a->qc + r), _mm_packus_epi16(c16, c16));
        __m256d dlo = _mm256_cvtps_pd(_mm256_castps256_ps128(diff)),
                dhi = _mm256_cvtps_pd(_mm256_extractf128_ps(diff, 1));
        __m256d elo = _mm256_div_pd(_mm256_div_pd(_mm256_mul_pd(dlo, dlo), vdd), v2);
        __m256d ehi = _mm256_div_pd(_mm256_div_pd(_mm256_mul_pd(dhi, dhi), vdd), v2);
        _mm256_storeu_pd(a->err + r, _mm256_add_pd(_mm256_loadu_pd(a->err + r), elo));
        _mm256_storeu_pd(a->err + r + 4, _mm256_add_pd(_mm256_loadu_pd(a->err + r + 4), ehi));
    }
    for (int64_t j = i + 1; j < a->cnt; j++) {
        __m256 h = _mm256_set1_ps(a->hrow[j]);
        float *tj = a->T + j * a->ldt;
        for (int64_t r = 0; r < n8; r += 8)
            _mm256_storeu_ps(tj + r,
                             _mm256_sub_ps(_mm256_loadu_ps(tj + r), _mm256_mul_ps(_mm256_loadu_ps(a->e + r), h)));
    }
    if (n8 < a->n) qd_gptq_rows_scalar(a, i, n8);
}

/* ---- fused round to nearest --------------------------------------------------------------- */

static int avx2_range_f32(const float *x, int64_t n, float *lo, float *hi)
{
    float l0 = x[0], h0 = x[0], f = 0.0f;
    int64_t c = 0;
    if (n >= 16) {
        __m256 l = _mm256_loadu_ps(x), h = l, acc = _mm256_sub_ps(l, l);
        for (c = 8; c + 8 <= n; c += 8) {
            __m256 v = _mm256_loadu_ps(x + c);
            l = _mm256_min_ps(v, l); /* v < l ? v : l */
            h = _mm256_max_ps(v, h); /* v > h ? v : h */
            acc = _mm256_add_ps(acc, _mm256_sub_ps(v, v));
        }
        float lv[8], hv[8], av[8];
        _mm256_storeu_ps(lv, l);
        _mm256_storeu_ps(hv, h);
        _mm256_storeu_ps(av, acc);
        qd_range_fold(lv, hv, av, &l0, &h0, &f);
    }
    return qd_range_tail(x, c, n, l0, h0, f, lo, hi);
}

static int avx2_all_finite(const float *x, int64_t n)
{
    /* v - v is 0 for a finite v and NaN for Inf/NaN; a NaN sticks in the sum */
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_add_ps(acc, _mm256_sub_ps(v, v));
    }
    float av[8], f = 0.0f;
    _mm256_storeu_ps(av, acc);
    for (int k = 0; k < 8; k++) f += av[k];
    for (; i < n; i++) f += x[i] - x[i];
    return f == 0.0f;
}

static void avx2_rtn_group(const float *x, int64_t n, float s, int32_t z, int maxq, uint8_t *codes, double *e2,
                           double *w2, double *mx)
{
    const float zf = (float)z, mf = (float)maxq;
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps(zf), vm = _mm256_set1_ps(mf),
                 vM = _mm256_set1_ps(QD_RINT_MAGIC), v0 = _mm256_setzero_ps();
    const __m256d sign = _mm256_set1_pd(-0.0);
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, b0 = a0, b1 = a0, m0 = a0, m1 = a0;
    int64_t c = 0;
    for (; c + 8 <= n; c += 8) {
        __m256 xv = _mm256_loadu_ps(x + c);
        __m256 q = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(_mm256_div_ps(xv, vs), vM), vM), vz);
        q = _mm256_max_ps(v0, q); /* q < 0 ? 0 : q */
        q = _mm256_min_ps(vm, q); /* q > maxq ? maxq : q */
        __m256i qi = _mm256_cvttps_epi32(q);
        __m128i c16 = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
        _mm_storel_epi64((__m128i *)(codes + c), _mm_packus_epi16(c16, c16));
        __m256 dq = _mm256_mul_ps(vs, _mm256_sub_ps(q, vz));
        __m256d xl = _mm256_cvtps_pd(_mm256_castps256_ps128(xv)), xh = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        __m256d dl = _mm256_sub_pd(xl, _mm256_cvtps_pd(_mm256_castps256_ps128(dq)));
        __m256d dh = _mm256_sub_pd(xh, _mm256_cvtps_pd(_mm256_extractf128_ps(dq, 1)));
        a0 = _mm256_add_pd(a0, _mm256_mul_pd(dl, dl));
        a1 = _mm256_add_pd(a1, _mm256_mul_pd(dh, dh));
        b0 = _mm256_add_pd(b0, _mm256_mul_pd(xl, xl));
        b1 = _mm256_add_pd(b1, _mm256_mul_pd(xh, xh));
        m0 = _mm256_max_pd(_mm256_andnot_pd(sign, dl), m0); /* |d| > m ? |d| : m */
        m1 = _mm256_max_pd(_mm256_andnot_pd(sign, dh), m1);
    }
    double a[8], b[8], m[8];
    _mm256_storeu_pd(a, a0);
    _mm256_storeu_pd(a + 4, a1);
    _mm256_storeu_pd(b, b0);
    _mm256_storeu_pd(b + 4, b1);
    _mm256_storeu_pd(m, m0);
    _mm256_storeu_pd(m + 4, m1);
    for (; c < n; c++) codes[c] = qd_rtn_one(x[c], s, zf, mf, (int)(c & 7), a, b, m);
    qd_rtn_fold(a, b, m, e2, w2, mx);
}

void qd_kernels_fill_avx2_gptq_rtn(qd_kernel_table *t)
{
    t->gptq_column = avx2_gptq_column;
    t->range_f32 = avx2_range_f32;
    t->all_finite = avx2_all_finite;
    t->rtn_group = avx2_rtn_group;
}

#endif /* x86 */
