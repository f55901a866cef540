/* kernels/avx512/intops.c — AVX-512 (F, DQ) versions of the integer-only kernels that spend their
 * time per element — requantization, rescaled residual adds, i-GELU, LayerNorm — sixteen lanes
 * at a time, bit for bit equal to kernels/ref/intops.c (the same steps as kernels/avx2/intops.c,
 * with mask registers, native 64-bit arithmetic shifts and saturating narrowing stores). Used over
 * the AVX2 table where kernels/dispatch.c selects avx512; the other kernels stay AVX2's. */
#include <immintrin.h>

#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"
#include "kernels/ref/intops_scalar.h"

static inline __m512i ld(const int32_t *p) { return _mm512_loadu_si512((const void *)p); }

static inline __m512i z_sat_add(__m512i a, __m512i b)
{
    const __m512i s = _mm512_add_epi32(a, b);
    const __mmask16 ov = _mm512_movepi32_mask(_mm512_andnot_si512(_mm512_xor_si512(a, b), _mm512_xor_si512(a, s)));
    const __m512i satv = _mm512_xor_si512(_mm512_srai_epi32(a, 31), _mm512_set1_epi32(INT32_MAX));
    return _mm512_mask_blend_epi32(ov, s, satv);
}

/* round(a b / 2^31), ties up, for b >= 0 */
static inline __m512i z_srdhm(__m512i a, __m512i b)
{
    const __m512i half = _mm512_set1_epi64(1ll << 30);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(a, b), half);
    const __m512i po = _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(a, 32), _mm512_srli_epi64(b, 32)), half);
    return _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 31), _mm512_slli_epi64(po, 1));
}

static inline __m512i z_rdivpot(__m512i x, __m512i e)
{
    const __m512i one = _mm512_set1_epi32(1), zero = _mm512_setzero_si512();
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
    const __m512i rem = _mm512_and_si512(x, mask);
    const __m512i thr = _mm512_mask_add_epi32(_mm512_srli_epi32(mask, 1), _mm512_cmplt_epi32_mask(x, zero),
                                              _mm512_srli_epi32(mask, 1), one);
    const __m512i q = _mm512_srav_epi32(x, e);
    return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

static inline __m512i z_mbqm(__m512i x, __m512i M0, __m512i sh)
{
    const __m512i zero = _mm512_setzero_si512();
    sh = _mm512_min_epi32(_mm512_max_epi32(sh, _mm512_set1_epi32(-31)), _mm512_set1_epi32(31));
    const __m512i left = _mm512_max_epi32(sh, zero), right = _mm512_max_epi32(_mm512_sub_epi32(zero, sh), zero);
    const __m512i hi = _mm512_srlv_epi32(_mm512_set1_epi32(INT32_MAX), left);
    const __m512i lo = _mm512_srav_epi32(_mm512_set1_epi32(INT32_MIN), left);
    __m512i xs = _mm512_sllv_epi32(x, left);
    xs = _mm512_mask_mov_epi32(xs, _mm512_cmpgt_epi32_mask(x, hi), _mm512_set1_epi32(INT32_MAX));
    xs = _mm512_mask_mov_epi32(xs, _mm512_cmplt_epi32_mask(x, lo), _mm512_set1_epi32(INT32_MIN));
    return z_rdivpot(z_srdhm(xs, M0), right);
}

/* without a left shift anywhere (sh <= 0): right = -sh, up to 31 */
static inline __m512i z_mbqm_r(__m512i x, __m512i M0, const int32_t *sh)
{
    const __m512i right = _mm512_min_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), ld(sh)), _mm512_set1_epi32(31));
    return z_rdivpot(z_srdhm(x, M0), right);
}

static int no_left(const int32_t *sh, int64_t n)
{
    int32_t mx = INT32_MIN;
    for (int64_t i = 0; i < n; i++) mx = sh[i] > mx ? sh[i] : mx;
    return mx <= 0;
}

/* v + zp clamped to [max(lo, -128), 127], stored as sixteen int8 */
static inline void z_store8(int8_t *dst, __m512i v, __m512i zp, __m512i lo)
{
    v = _mm512_min_epi32(_mm512_max_epi32(v, _mm512_set1_epi32(-(1 << 20))), _mm512_set1_epi32(1 << 20));
    v = _mm512_max_epi32(_mm512_add_epi32(v, zp), lo);
    _mm_storeu_si128((__m128i *)dst, _mm512_cvtsepi32_epi8(v));
}

static void z_requant_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                         const int32_t *sh, int per_channel, int32_t zp, int32_t lo, int8_t *out, int64_t ldo,
                         const qd_isplit *sp)
{
    const __m512i vzp = _mm512_set1_epi32(zp), vlo = _mm512_set1_epi32(lo < -128 ? -128 : lo);
    const __m512i m1 = _mm512_set1_epi32(M0[0]), s1 = _mm512_set1_epi32(sh[0]);
    const int right_only = no_left(sh, per_channel ? N : 1);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 16 <= N; n += 16) {
            __m512i v = ld(a + n);
            if (bias) v = z_sat_add(v, ld(bias + n));
            if (!per_channel)
                v = z_mbqm(v, m1, s1);
            else
                v = right_only ? z_mbqm_r(v, ld(M0 + n), sh + n) : z_mbqm(v, ld(M0 + n), ld(sh + n));
            z_store8(o + n, v, vzp, vlo);
        }
        for (; n < N; n++)
            o[n] = qd_is_requant1(a[n], bias, n, M0[per_channel ? n : 0], sh[per_channel ? n : 0], zp, lo);
        if (sp) qd_is_split_rq(sp, a, bias, M0, sh, per_channel, zp, lo > -128, o, sp->out + m * sp->ld);
    }
}

static void z_rescale_add(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                          const int32_t *sh, const int32_t *res, int64_t ldr, int32_t rM0, int32_t rsh, int32_t lim,
                          int32_t *out, int64_t ldo)
{
    const __m512i rm = _mm512_set1_epi32(rM0), rs = _mm512_set1_epi32(rsh);
    const __m512i vlim = _mm512_set1_epi32(lim), vnlim = _mm512_set1_epi32(-lim);
    const int right_only = no_left(sh, N);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int32_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 16 <= N; n += 16) {
            __m512i v = ld(a + n);
            if (bias) v = z_sat_add(v, ld(bias + n));
            v = right_only ? z_mbqm_r(v, ld(M0 + n), sh + n) : z_mbqm(v, ld(M0 + n), ld(sh + n));
            /* a saturated sum is beyond lim (< 2^31) exactly when the true sum is */
            if (res) v = z_sat_add(v, z_mbqm(ld(res + m * ldr + n), rm, rs));
            _mm512_storeu_si512((void *)(o + n), _mm512_min_epi32(_mm512_max_epi32(v, vnlim), vlim));
        }
        for (; n < N; n++)
            o[n] = qd_is_rescale1(a[n], bias, n, M0[n], sh[n], res ? res + m * ldr + n : NULL, rM0, rsh, lim);
    }
}

static void z_gelu_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                      const int32_t *sh, const qd_igelu *p, int8_t *out, int64_t ldo, const qd_isplit *sp)
{
    const __m512i xb = _mm512_set1_epi32(p->xb), nxb = _mm512_set1_epi32(-p->xb);
    const __m512i qc = _mm512_set1_epi32(p->qc), q1 = _mm512_set1_epi32(p->q1);
    const __m512i fm = _mm512_set1_epi32(p->fM0), fs = _mm512_set1_epi32(p->fsh);
    const __m512i om = _mm512_set1_epi32(p->oM0), os = _mm512_set1_epi32(p->osh);
    const __m512i vzp = _mm512_set1_epi32(p->zp), vlo = _mm512_set1_epi32(-128), zero = _mm512_setzero_si512();
    const __m512i half = _mm512_set1_epi32(1 << 14);
    const int right_only = no_left(sh, N);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 16 <= N; n += 16) {
            __m512i v = ld(a + n);
            if (bias) v = z_sat_add(v, ld(bias + n));
            const __m512i x = right_only ? z_mbqm_r(v, ld(M0 + n), sh + n) : z_mbqm(v, ld(M0 + n), ld(sh + n));
            const __m512i du = _mm512_sub_epi32(_mm512_min_epi32(_mm512_abs_epi32(x), xb), xb);
            const __m512i L = _mm512_add_epi32(_mm512_mullo_epi32(du, du), qc);
            /* sign(x) L: -L below 0, 0 at 0 */
            __m512i sl = _mm512_maskz_mov_epi32(_mm512_cmpneq_epi32_mask(x, zero), L);
            sl = _mm512_mask_sub_epi32(sl, _mm512_cmplt_epi32_mask(x, zero), zero, L);
            const __m512i t = _mm512_add_epi32(sl, q1);
            const __m512i f = z_mbqm(_mm512_sub_epi32(zero, t), fm, fs);
            __m512i y = _mm512_srai_epi32(_mm512_add_epi32(_mm512_mullo_epi32(x, f), half), 15);
            y = _mm512_mask_mov_epi32(y, _mm512_cmpge_epi32_mask(x, xb), x);
            y = _mm512_mask_mov_epi32(y, _mm512_cmple_epi32_mask(x, nxb), zero);
            z_store8(o + n, z_mbqm(y, om, os), vzp, vlo);
        }
        for (; n < N; n++) o[n] = qd_is_gelu1(a[n], bias, M0, sh, n, p);
        if (sp) qd_is_split_gelu(sp, a, bias, M0, sh, p, o, sp->out + m * sp->ld);
    }
}

static inline __m512i z_rshift_up64(__m512i x, int s)
{
    return s <= 0 ? x : _mm512_sra_epi64(_mm512_add_epi64(x, _mm512_set1_epi64(1ll << (s - 1))), _mm_cvtsi32_si128(s));
}

static void z_layernorm(const int32_t *x, int64_t M, int64_t N, int64_t ldx, const qd_iln *p, int8_t *out, int64_t ldo,
                        int32_t *fine, int64_t ldf, const qd_isplit *sp)
{
    const __m512i vzp = _mm512_set1_epi32(p->zp), vlo = _mm512_set1_epi32(-128);
    const int sc = 16 + p->gsh, sf = 8 + p->gsh;
    for (int64_t m = 0; m < M; m++) {
        const int32_t *xr = x + m * ldx;
        __m512i vmx = _mm512_setzero_si512(), vs = _mm512_setzero_si512();
        int64_t i = 0;
        for (; i + 16 <= N; i += 16) {
            const __m512i v = ld(xr + i);
            vmx = _mm512_max_epi32(vmx, _mm512_abs_epi32(v));
            vs = _mm512_add_epi64(vs, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
            vs = _mm512_add_epi64(vs, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
        }
        int32_t mx = _mm512_reduce_max_epi32(vmx);
        int64_t s = _mm512_reduce_add_epi64(vs);
        qd_is_ln_tail1(xr, i, N, &mx, &s);
        const int f = qd_is_ln_shift(mx);
        const int64_t mu = qd_is_ln_mean(s * ((int64_t)1 << f), N);
        const __m512i vmu = _mm512_set1_epi32((int32_t)mu);
        const __m128i cf = _mm_cvtsi32_si128(f);
        __m512i vss = _mm512_setzero_si512();
        for (i = 0; i + 16 <= N; i += 16) {
            const __m512i d = _mm512_sub_epi32(_mm512_sll_epi32(ld(xr + i), cf), vmu);
            const __m512i dh = _mm512_srli_epi64(d, 32);
            vss = _mm512_add_epi64(vss, _mm512_add_epi64(_mm512_mul_epi32(d, d), _mm512_mul_epi32(dh, dh)));
        }
        const int64_t ss = _mm512_reduce_add_epi64(vss) + qd_is_ln_tail2(xr, i, N, f, mu);
        const qd_is_lnrow r = qd_is_ln_finish(mu, ss, N, p->eps, f);
        const __m512i vR = _mm512_set1_epi64(r.R);
        int8_t *o = out + m * ldo;
        int32_t *fo = fine ? fine + m * ldf : NULL;
        const __m256i mu8 = _mm256_set1_epi32((int32_t)mu);
        for (i = 0; i + 16 <= N; i += 16) { /* two halves of eight channels in 64-bit lanes, in order */
            __m256i c[2], fv[2];
            for (int h = 0; h < 2; h++) {
                const __m256i x8 = _mm256_loadu_si256((const __m256i *)(xr + i + 8 * h));
                const __m512i d = _mm512_cvtepi32_epi64(_mm256_sub_epi32(_mm256_sll_epi32(x8, cf), mu8));
                const __m512i n = z_rshift_up64(_mm512_mul_epi32(d, vR), r.nsh);
                const __m512i g = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(p->g + i + 8 * h)));
                const __m512i y =
                    _mm512_add_epi64(_mm512_mul_epi32(n, g), _mm512_loadu_si512((const void *)(p->beta + i + 8 * h)));
                c[h] = _mm512_cvtepi64_epi32(z_rshift_up64(y, sc)); /* codes fit int32 after the shift */
                fv[h] = _mm512_cvtsepi64_epi32(z_rshift_up64(y, sf));
            }
            z_store8(o + i, _mm512_inserti64x4(_mm512_castsi256_si512(c[0]), c[1], 1), vzp, vlo);
            if (fo) {
                _mm256_storeu_si256((__m256i *)(fo + i), fv[0]);
                _mm256_storeu_si256((__m256i *)(fo + i + 8), fv[1]);
            }
        }
        qd_is_ln_tail3(xr, i, N, &r, p, o, fo);
        if (sp) qd_is_split_ln(sp, xr, &r, p, o, sp->out + m * sp->ld);
    }
}

void qd_intops_fill_avx512(qd_intops_table *t)
{
    t->isa = "avx512";
    t->requant_s8 = z_requant_s8;
    t->rescale_add = z_rescale_add;
    t->gelu_s8 = z_gelu_s8;
    t->layernorm = z_layernorm;
}
