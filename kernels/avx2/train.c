/* AVX2 + FMA versions of the training kernels (kernels.h: adamw, sumsq), bit-identical to
 * kernels/ref/train.c: eight values at a time with the reference's operations (vfmadd where it
 * calls fmaf, vsqrtps and vdivps: correctly rounded like sqrtf and /; products it rounds before
 * an addition are separate vmulps, and ISO C mode keeps contraction off). The squares of sumsq
 * are exact in double, so the lanes' sums match the reference's lanes. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "kernels/kernels.h"

static void avx2_adamw(float *w, const float *g, float *m, float *v, int64_t n, const qd_adamw_args *a)
{
    const __m256 b1 = _mm256_set1_ps(a->b1), b2 = _mm256_set1_ps(a->b2), omb1 = _mm256_set1_ps(a->omb1),
                 omb2 = _mm256_set1_ps(a->omb2), cf = _mm256_set1_ps(a->cf), rbc2 = _mm256_set1_ps(a->rbc2),
                 eps = _mm256_set1_ps(a->eps), decay = _mm256_set1_ps(a->decay), pstep = _mm256_set1_ps(a->pstep);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 gr = _mm256_mul_ps(_mm256_loadu_ps(g + i), cf);
        const __m256 mm = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(omb1, gr));
        const __m256 vv = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(_mm256_mul_ps(omb2, gr), gr));
        const __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vv), rbc2, eps);
        const __m256 q = _mm256_div_ps(_mm256_mul_ps(pstep, mm), den);
        _mm256_storeu_ps(m + i, mm);
        _mm256_storeu_ps(v + i, vv);
        _mm256_storeu_ps(w + i, _mm256_fmsub_ps(_mm256_loadu_ps(w + i), decay, q));
    }
    if (i < n) {
        qd_kernel_table r;
        qd_kernels_fill_ref_train(&r);
        r.adamw(w + i, g + i, m + i, v + i, n - i, a);
    }
}

static double avx2_sumsq(const float *x, int64_t n)
{
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 f = _mm256_loadu_ps(x + i);
        const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(f)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
        lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
    }
    double s[8];
    _mm256_storeu_pd(s, lo);
    _mm256_storeu_pd(s + 4, hi);
    for (int l = 0; i < n; i++, l++) s[l] += (double)x[i] * (double)x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

void qd_kernels_fill_avx2_train(qd_kernel_table *t)
{
    t->adamw = avx2_adamw;
    t->sumsq = avx2_sumsq;
}

#endif /* x86 */
