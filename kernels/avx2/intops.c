/* kernels/avx2/intops.c — AVX2 versions of the integer-only kernels (kernels/intops.h), bit for
 * bit equal to kernels/ref/intops.c: the same integer steps, eight lanes at a time, with the
 * reference's scalar helpers (kernels/ref/intops_scalar.h) for tails, per-row quantities and
 * outlier channels. The int8 GEMM is kernels/gemm.h's exact int8 × int8 → int32 product (packed
 * once; its own dispatch picks the ISA); the attention products use a small int16 pair GEMM
 * (vpmaddwd: |(a - za)(b - zb)| <= 255², two per lane, no saturation).
 *
 * Lane-wise fixed point: srdhm(a, b) = floor((a b + 2^30) / 2^31) is exactly gemmlowp's high
 * multiply for b >= 0 (its only overflow needs b = INT32_MIN; multipliers are never negative),
 * computed from vpmuldq's 64-bit products of the even and the odd lanes. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm.h"
#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"
#include "kernels/ref/intops_scalar.h"

/* ---- lane-wise fixed point ---------------------------------------------------------------- */

static inline __m256i ld(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

static inline __m256i v_sat_add(__m256i a, __m256i b)
{
    const __m256i s = _mm256_add_epi32(a, b);
    const __m256i ov = _mm256_srai_epi32(_mm256_andnot_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(a, s)), 31);
    const __m256i satv = _mm256_xor_si256(_mm256_srai_epi32(a, 31), _mm256_set1_epi32(INT32_MAX));
    return _mm256_blendv_epi8(s, satv, ov);
}

/* round(a b / 2^31), ties up, for b >= 0 */
static inline __m256i v_srdhm(__m256i a, __m256i b)
{
    const __m256i half = _mm256_set1_epi64x(1ll << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(a, b), half);
    const __m256i po = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(b, 32)), half);
    /* bits 31..62 of each product: the low dword of pe >> 31, the high dword of po << 1 */
    return _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
}

/* x / 2^e rounded, ties away from zero, 0 <= e <= 31 per lane */
static inline __m256i v_rdivpot(__m256i x, __m256i e)
{
    const __m256i one = _mm256_set1_epi32(1), zero = _mm256_setzero_si256();
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
    const __m256i rem = _mm256_and_si256(x, mask);
    const __m256i thr = _mm256_sub_epi32(_mm256_srli_epi32(mask, 1), _mm256_cmpgt_epi32(zero, x));
    return _mm256_sub_epi32(_mm256_srav_epi32(x, e), _mm256_cmpgt_epi32(rem, thr));
}

static inline __m256i v_mbqm(__m256i x, __m256i M0, __m256i sh)
{
    const __m256i zero = _mm256_setzero_si256();
    sh = _mm256_min_epi32(_mm256_max_epi32(sh, _mm256_set1_epi32(-31)), _mm256_set1_epi32(31));
    const __m256i left = _mm256_max_epi32(sh, zero), right = _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero);
    const __m256i hi = _mm256_srlv_epi32(_mm256_set1_epi32(INT32_MAX), left);
    const __m256i lo = _mm256_srav_epi32(_mm256_set1_epi32(INT32_MIN), left);
    __m256i xs = _mm256_sllv_epi32(x, left);
    xs = _mm256_blendv_epi8(xs, _mm256_set1_epi32(INT32_MAX), _mm256_cmpgt_epi32(x, hi));
    xs = _mm256_blendv_epi8(xs, _mm256_set1_epi32(INT32_MIN), _mm256_cmpgt_epi32(lo, x));
    return v_rdivpot(v_srdhm(xs, M0), right);
}

/* mbqm for multipliers without a left shift (sh <= 0 in every lane: right = -sh, up to 31 acting
 * as 31), the usual case: real factors below 1 */
static inline __m256i v_mbqm_r(__m256i x, __m256i M0, __m256i right) { return v_rdivpot(v_srdhm(x, M0), right); }

/* one right shift e for all lanes (per-tensor multipliers) */
typedef struct {
    __m256i m0, mask, thr;
    __m128i e;
} v_rq1;

static inline v_rq1 v_rq1_make(int32_t M0, int32_t sh)
{
    const int e = sh >= 0 ? 0 : sh < -31 ? 31 : -sh;
    const int32_t mask = (int32_t)((1ll << e) - 1);
    v_rq1 r = {_mm256_set1_epi32(M0), _mm256_set1_epi32(mask), _mm256_set1_epi32(mask >> 1), _mm_cvtsi32_si128(e)};
    return r;
}

static inline __m256i v_mbqm1(__m256i x, const v_rq1 *r)
{
    const __m256i h = v_srdhm(x, r->m0);
    const __m256i thr = _mm256_sub_epi32(r->thr, _mm256_cmpgt_epi32(_mm256_setzero_si256(), h));
    return _mm256_sub_epi32(_mm256_sra_epi32(h, r->e), _mm256_cmpgt_epi32(_mm256_and_si256(h, r->mask), thr));
}

/* whether every shift of sh[0..n) is <= 0 (no left shift anywhere) */
static int no_left(const int32_t *sh, int64_t n)
{
    int32_t mx = INT32_MIN;
    for (int64_t i = 0; i < n; i++) mx = sh[i] > mx ? sh[i] : mx;
    return mx <= 0;
}

/* -sh clamped to [0, 31] for eight lanes with sh <= 0 */
static inline __m256i v_right(const int32_t *sh)
{
    return _mm256_min_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), ld(sh)), _mm256_set1_epi32(31));
}

/* v + zp clamped to [max(lo, -128), 127]; |zp| <= 2^15 */
static inline __m256i v_to8(__m256i v, __m256i zp, __m256i lo)
{
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(-(1 << 20))), _mm256_set1_epi32(1 << 20));
    v = _mm256_add_epi32(v, zp);
    v = _mm256_min_epi32(_mm256_max_epi32(v, _mm256_set1_epi32(-128)), _mm256_set1_epi32(127));
    return _mm256_max_epi32(v, lo);
}

/* eight int32 in [-128, 127] (or [0, 255] with u8) to bytes */
static inline void v_store8(int8_t *dst, __m256i v)
{
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
    _mm_storel_epi64((__m128i *)dst, _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}
static inline void v_store8u(uint8_t *dst, __m256i v)
{
    const __m256i p = _mm256_packus_epi16(_mm256_packs_epi32(v, v), _mm256_setzero_si256());
    _mm_storel_epi64((__m128i *)dst, _mm_unpacklo_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1)));
}

/* 64-bit lanes: floor(x / 2^s) and floor(x / 2^s + 1/2) */
static inline __m256i v_srai64(__m256i x, int s)
{
    const __m256i m = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
    return _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(x, m), _mm_cvtsi32_si128(s)), m);
}
static inline __m256i v_rshift_up64(__m256i x, int s)
{
    return s <= 0 ? x : v_srai64(_mm256_add_epi64(x, _mm256_set1_epi64x(1ll << (s - 1))), s);
}
/* the low dwords of the even lanes' (e) and odd lanes' (o) 64-bit values, back in lane order */
static inline __m256i v_join(__m256i e, __m256i o) { return _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA); }
/* 64-bit lanes clamped to int32 */
static inline __m256i v_sat64_32(__m256i x)
{
    const __m256i mx = _mm256_set1_epi64x(INT32_MAX), mn = _mm256_set1_epi64x(INT32_MIN);
    x = _mm256_blendv_epi8(x, mx, _mm256_cmpgt_epi64(x, mx));
    return _mm256_blendv_epi8(x, mn, _mm256_cmpgt_epi64(mn, x));
}

static inline int32_t hmax32(__m256i v)
{
    __m128i m = _mm_max_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0x4E));
    m = _mm_max_epi32(m, _mm_shuffle_epi32(m, 0xB1));
    return _mm_cvtsi128_si32(m);
}
static inline int64_t hsum64(__m256i v)
{
    int64_t t[4];
    _mm256_storeu_si256((__m256i *)t, v);
    return t[0] + t[1] + t[2] + t[3];
}
/* eight int32 summed into four int64 lanes */
static inline __m256i v_acc64(__m256i acc, __m256i v)
{
    acc = _mm256_add_epi64(acc, _mm256_cvtepi32_epi64(_mm256_castsi256_si128(v)));
    return _mm256_add_epi64(acc, _mm256_cvtepi32_epi64(_mm256_extracti128_si256(v, 1)));
}

/* ---- int8 GEMM: kernels/gemm.h ---------------------------------------------------------- */

struct qd_igemm {
    qd_gemm_w8 *w8;
};

static qd_igemm *x_pack(const int8_t *w, int64_t N, int64_t K, int64_t ldw)
{
    if (N < 1 || K < 1 || K > QD_GEMM_MAX_K) return NULL;
    float *ones = malloc((size_t)N * sizeof(float));
    qd_igemm *g = malloc(sizeof *g);
    if (!ones || !g) {
        free(ones);
        free(g);
        return NULL;
    }
    for (int64_t n = 0; n < N; n++) ones[n] = 1.0f;
    int rc = qd_gemm_w8_create(w, N, K, ldw, ones, NULL, &g->w8);
    free(ones);
    if (rc) {
        free(g);
        return NULL;
    }
    return g;
}

static void x_free(qd_igemm *g)
{
    if (!g) return;
    qd_gemm_w8_free(g->w8);
    free(g);
}

static void x_gemm(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc)
{
    qd_gemm_s8_s32(A, lda, M, W->w8, C, ldc);
}

/* ---- requantization and residual adds ---------------------------------------------------- */

static void x_requant_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                         const int32_t *sh, int per_channel, int32_t zp, int32_t lo, int8_t *out, int64_t ldo,
                         const qd_isplit *sp)
{
    const __m256i vzp = _mm256_set1_epi32(zp), vlo = _mm256_set1_epi32(lo);
    const __m256i m1 = _mm256_set1_epi32(M0[0]), s1 = _mm256_set1_epi32(sh[0]);
    const int right_only = no_left(sh, per_channel ? N : 1);
    const v_rq1 r1 = v_rq1_make(M0[0], sh[0]);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256i v = ld(a + n);
            if (bias) v = v_sat_add(v, ld(bias + n));
            if (!right_only)
                v = v_mbqm(v, per_channel ? ld(M0 + n) : m1, per_channel ? ld(sh + n) : s1);
            else if (per_channel)
                v = v_mbqm_r(v, ld(M0 + n), v_right(sh + n));
            else
                v = v_mbqm1(v, &r1);
            v_store8(o + n, v_to8(v, vzp, vlo));
        }
        for (; n < N; n++)
            o[n] = qd_is_requant1(a[n], bias, n, M0[per_channel ? n : 0], sh[per_channel ? n : 0], zp, lo);
        if (sp) qd_is_split_rq(sp, a, bias, M0, sh, per_channel, zp, lo > -128, o, sp->out + m * sp->ld);
    }
}

static void x_rescale_add(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                          const int32_t *sh, const int32_t *res, int64_t ldr, int32_t rM0, int32_t rsh, int32_t lim,
                          int32_t *out, int64_t ldo)
{
    const __m256i rm = _mm256_set1_epi32(rM0), rs = _mm256_set1_epi32(rsh);
    const __m256i vlim = _mm256_set1_epi32(lim), vnlim = _mm256_set1_epi32(-lim);
    const int right_only = no_left(sh, N), rright = rsh <= 0;
    const v_rq1 r1 = v_rq1_make(rM0, rsh);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int32_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256i v = ld(a + n);
            if (bias) v = v_sat_add(v, ld(bias + n));
            v = right_only ? v_mbqm_r(v, ld(M0 + n), v_right(sh + n)) : v_mbqm(v, ld(M0 + n), ld(sh + n));
            /* a saturated sum is beyond lim (< 2^31) exactly when the true sum is */
            if (res) {
                const __m256i x = ld(res + m * ldr + n);
                v = v_sat_add(v, rright ? v_mbqm1(x, &r1) : v_mbqm(x, rm, rs));
            }
            v = _mm256_min_epi32(_mm256_max_epi32(v, vnlim), vlim);
            _mm256_storeu_si256((__m256i *)(o + n), v);
        }
        for (; n < N; n++)
            o[n] = qd_is_rescale1(a[n], bias, n, M0[n], sh[n], res ? res + m * ldr + n : NULL, rM0, rsh, lim);
    }
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

static void x_layernorm(const int32_t *x, int64_t M, int64_t N, int64_t ldx, const qd_iln *p, int8_t *out, int64_t ldo,
                        int32_t *fine, int64_t ldf, const qd_isplit *sp)
{
    const __m256i vzp = _mm256_set1_epi32(p->zp), vlo = _mm256_set1_epi32(-128);
    const int sc = 16 + p->gsh, sf = 8 + p->gsh;
    for (int64_t m = 0; m < M; m++) {
        const int32_t *xr = x + m * ldx;
        /* the row's pre-shift, mean and spread (sums are exact in any order) */
        __m256i vmx = _mm256_setzero_si256(), vs = _mm256_setzero_si256();
        int64_t i = 0;
        for (; i + 8 <= N; i += 8) {
            const __m256i v = ld(xr + i);
            vmx = _mm256_max_epi32(vmx, _mm256_abs_epi32(v));
            vs = v_acc64(vs, v);
        }
        int32_t mx = hmax32(vmx);
        int64_t s = hsum64(vs);
        qd_is_ln_tail1(xr, i, N, &mx, &s);
        const int f = qd_is_ln_shift(mx);
        const int64_t mu = qd_is_ln_mean(s * ((int64_t)1 << f), N);
        const __m256i vmu = _mm256_set1_epi32((int32_t)mu);
        const __m128i cf = _mm_cvtsi32_si128(f);
        __m256i vss = _mm256_setzero_si256();
        for (i = 0; i + 8 <= N; i += 8) {
            const __m256i d = _mm256_sub_epi32(_mm256_sll_epi32(ld(xr + i), cf), vmu);
            vss = _mm256_add_epi64(vss, _mm256_mul_epi32(d, d));
            const __m256i dh = _mm256_srli_epi64(d, 32);
            vss = _mm256_add_epi64(vss, _mm256_mul_epi32(dh, dh));
        }
        int64_t ss = hsum64(vss);
        ss += qd_is_ln_tail2(xr, i, N, f, mu);
        const qd_is_lnrow r = qd_is_ln_finish(mu, ss, N, p->eps, f);
        const __m256i vR = _mm256_set1_epi64x(r.R);
        int8_t *o = out + m * ldo;
        int32_t *fo = fine ? fine + m * ldf : NULL;
        for (i = 0; i + 8 <= N; i += 8) {
            const __m256i d = _mm256_sub_epi32(_mm256_sll_epi32(ld(xr + i), cf), vmu);
            /* n = d / sigma in Q16, per even and odd lane */
            const __m256i ne = v_rshift_up64(_mm256_mul_epi32(d, vR), r.nsh);
            const __m256i no = v_rshift_up64(_mm256_mul_epi32(_mm256_srli_epi64(d, 32), vR), r.nsh);
            const __m256i g = ld(p->g + i);
            /* beta of channels i..i+7 in even (i, i+2, ..) and odd (i+1, ..) order */
            const __m256i b0 = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(p->beta + i)), 0xD8);
            const __m256i b1 = _mm256_permute4x64_epi64(_mm256_loadu_si256((const __m256i *)(p->beta + i + 4)), 0xD8);
            const __m256i be = _mm256_permute2x128_si256(b0, b1, 0x20), bo = _mm256_permute2x128_si256(b0, b1, 0x31);
            const __m256i ye = _mm256_add_epi64(_mm256_mul_epi32(ne, g), be);
            const __m256i yo = _mm256_add_epi64(_mm256_mul_epi32(no, _mm256_srli_epi64(g, 32)), bo);
            /* codes fit int32 after the shift (|y| < 2^46 before it): low dwords */
            const __m256i c = v_join(v_rshift_up64(ye, sc), v_rshift_up64(yo, sc));
            v_store8(o + i, v_to8(c, vzp, vlo));
            if (fo) {
                const __m256i fe = v_sat64_32(v_rshift_up64(ye, sf)), fo2 = v_sat64_32(v_rshift_up64(yo, sf));
                _mm256_storeu_si256((__m256i *)(fo + i), v_join(fe, fo2));
            }
        }
        qd_is_ln_tail3(xr, i, N, &r, p, o, fo);
        if (sp) qd_is_split_ln(sp, xr, &r, p, o, sp->out + m * sp->ld);
    }
}

/* ---- GELU --------------------------------------------------------------------------------- */

static void x_gelu_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                      const int32_t *sh, const qd_igelu *p, int8_t *out, int64_t ldo, const qd_isplit *sp)
{
    const __m256i xb = _mm256_set1_epi32(p->xb), xbm1 = _mm256_set1_epi32(p->xb - 1),
                  nxb1 = _mm256_set1_epi32(-p->xb + 1);
    const __m256i qc = _mm256_set1_epi32(p->qc), q1 = _mm256_set1_epi32(p->q1);
    const __m256i fm = _mm256_set1_epi32(p->fM0), fs = _mm256_set1_epi32(p->fsh);
    const __m256i om = _mm256_set1_epi32(p->oM0), os = _mm256_set1_epi32(p->osh);
    const __m256i vzp = _mm256_set1_epi32(p->zp), vlo = _mm256_set1_epi32(-128), zero = _mm256_setzero_si256();
    const __m256i half = _mm256_set1_epi32(1 << 14);
    const int right_only = no_left(sh, N), f_r = p->fsh <= 0, o_r = p->osh <= 0;
    const v_rq1 rf = v_rq1_make(p->fM0, p->fsh), ro = v_rq1_make(p->oM0, p->osh);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256i v = ld(a + n);
            if (bias) v = v_sat_add(v, ld(bias + n));
            const __m256i x = right_only ? v_mbqm_r(v, ld(M0 + n), v_right(sh + n)) : v_mbqm(v, ld(M0 + n), ld(sh + n));
            const __m256i du = _mm256_sub_epi32(_mm256_min_epi32(_mm256_abs_epi32(x), xb), xb);
            const __m256i L = _mm256_add_epi32(_mm256_mullo_epi32(du, du), qc);
            const __m256i t = _mm256_add_epi32(_mm256_sign_epi32(L, x), q1);
            const __m256i nt = _mm256_sub_epi32(zero, t);
            const __m256i f = f_r ? v_mbqm1(nt, &rf) : v_mbqm(nt, fm, fs);
            __m256i y = _mm256_srai_epi32(_mm256_add_epi32(_mm256_mullo_epi32(x, f), half), 15);
            y = _mm256_blendv_epi8(y, x, _mm256_cmpgt_epi32(x, xbm1));    /* x >= xb: x */
            y = _mm256_blendv_epi8(y, zero, _mm256_cmpgt_epi32(nxb1, x)); /* x <= -xb: 0 */
            v_store8(o + n, v_to8(o_r ? v_mbqm1(y, &ro) : v_mbqm(y, om, os), vzp, vlo));
        }
        for (; n < N; n++) o[n] = qd_is_gelu1(a[n], bias, M0, sh, n, p);
        if (sp) qd_is_split_gelu(sp, a, bias, M0, sh, p, o, sp->out + m * sp->ld);
    }
}

/* ---- softmax ------------------------------------------------------------------------------ */

/* eight i-exp values (0 where masked), dd clamped to 31 qln2 (whose exponential is 0 either way);
 * z = floor(dd / qln2) as (dd · RQ) >> 40, exact for dd < 2^17 and qln2 in [2^8, 2^17) */
typedef struct {
    __m256i mx, lowx, qb, qln2, qc, rq, m0, sh;
    v_rq1 r1;
    int right;
} sm_consts;

static inline __m256i v_iexp(const sm_consts *k, __m256i s, __m256i keepmask)
{
    const __m256i x = _mm256_max_epi32(k->right ? v_mbqm1(s, &k->r1) : v_mbqm(s, k->m0, k->sh), k->lowx);
    const __m256i dd = _mm256_sub_epi32(k->mx, x);
    const __m256i ze = _mm256_srli_epi64(_mm256_mul_epu32(dd, k->rq), 40);
    const __m256i zo = _mm256_srli_epi64(_mm256_mul_epu32(_mm256_srli_epi64(dd, 32), k->rq), 40);
    const __m256i z = v_join(ze, zo);
    const __m256i q = _mm256_add_epi32(_mm256_sub_epi32(k->qb, dd), _mm256_mullo_epi32(z, k->qln2));
    const __m256i e = _mm256_srlv_epi32(_mm256_add_epi32(_mm256_mullo_epi32(q, q), k->qc), z); /* z = 31: 0 */
    return _mm256_and_si256(e, keepmask);
}

static inline __m256i keep_mask(const uint8_t *keep, int64_t j)
{
    if (!keep) return _mm256_set1_epi32(-1);
    const __m256i k = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(keep + j)));
    return _mm256_xor_si256(_mm256_cmpeq_epi32(k, _mm256_setzero_si256()), _mm256_set1_epi32(-1));
}

static void x_softmax_u8(const int32_t *s, int64_t n, const uint8_t *keep, const qd_isoftmax *p, uint8_t *P)
{
    keep = qd_is_keep(keep, n);
    if (!qd_is_softmax_lanes_ok(p)) { /* outside the ranges where the lane arithmetic is exact */
        qd_is_softmax_row(s, n, keep, p, P);
        return;
    }
    sm_consts k;
    k.m0 = _mm256_set1_epi32(p->M0);
    k.sh = _mm256_set1_epi32(p->sh);
    k.r1 = v_rq1_make(p->M0, p->sh);
    k.right = p->sh <= 0;
    __m256i vmx = _mm256_set1_epi32(INT32_MIN);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256i x = k.right ? v_mbqm1(ld(s + j), &k.r1) : v_mbqm(ld(s + j), k.m0, k.sh);
        vmx = _mm256_max_epi32(vmx, _mm256_blendv_epi8(_mm256_set1_epi32(INT32_MIN), x, keep_mask(keep, j)));
    }
    int32_t mx = hmax32(vmx);
    for (; j < n; j++)
        if (!keep || keep[j]) {
            const int32_t x = qd_fx_mbqm(s[j], p->M0, p->sh);
            if (x > mx) mx = x;
        }
    const int64_t cap = 31 * (int64_t)p->qln2, low = (int64_t)mx - cap;
    k.mx = _mm256_set1_epi32(mx);
    k.lowx = _mm256_set1_epi32((int32_t)(low < INT32_MIN ? INT32_MIN : low));
    k.qb = _mm256_set1_epi32(p->qb);
    k.qln2 = _mm256_set1_epi32(p->qln2);
    k.qc = _mm256_set1_epi32(p->qc);
    k.rq = _mm256_set1_epi64x((int64_t)((((uint64_t)1 << 40) / (uint64_t)p->qln2) + 1));
    __m256i vsum = _mm256_setzero_si256();
    for (j = 0; j + 8 <= n; j += 8) vsum = v_acc64(vsum, v_iexp(&k, ld(s + j), keep_mask(keep, j)));
    int64_t sum = hsum64(vsum);
    for (; j < n; j++)
        if (!keep || keep[j]) sum += qd_is_iexp((int64_t)mx - qd_fx_mbqm(s[j], p->M0, p->sh), p);
    const int64_t R = ((int64_t)1 << 46) / sum;
    const __m256i vR = _mm256_set1_epi64x(R), rnd = _mm256_set1_epi64x(1ll << 37), c255 = _mm256_set1_epi32(255);
    for (j = 0; j + 8 <= n; j += 8) {
        const __m256i e = v_iexp(&k, ld(s + j), keep_mask(keep, j));
        const __m256i pe = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epu32(e, vR), rnd), 38);
        const __m256i po = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(e, 32), vR), rnd), 38);
        v_store8u(P + j, _mm256_min_epi32(v_join(pe, po), c255));
    }
    for (; j < n; j++) P[j] = qd_is_softmax_p(s[j], mx, R, !keep || keep[j], p);
}

/* ---- attention products: an int16 pair GEMM ------------------------------------------------ */

/* C[i][j] = Σ_t A[i][t] B[t][j]: A int16 [M][Kp] (Kp even, zero padded), B packed per block of
 * eight columns as pairs: Bp[(jb · Kp/2 + t/2) · 16 + 2 l + (t & 1)] = B[t][8 jb + l] (zero
 * padded). Four rows at a time, eight int32 accumulators of vpmaddwd sums per row. */
static void gemm16(const int16_t *A, int64_t M, int64_t Kp, const int16_t *Bp, int64_t N, int32_t *C, int64_t ldc)
{
    const int64_t nb = (N + 7) / 8, kp2 = Kp / 2;
    for (int64_t i = 0; i < M; i += 4) {
        const int rows = (int)(M - i < 4 ? M - i : 4);
        for (int64_t jb = 0; jb < nb; jb++) {
            __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
            const int16_t *b = Bp + jb * kp2 * 16;
            const int16_t *a0 = A + i * Kp, *a1 = rows > 1 ? a0 + Kp : a0, *a2 = rows > 2 ? a0 + 2 * Kp : a0,
                          *a3 = rows > 3 ? a0 + 3 * Kp : a0;
            for (int64_t t = 0; t < kp2; t++) {
                const __m256i bv = _mm256_loadu_si256((const __m256i *)(b + t * 16));
                int32_t w0, w1, w2, w3;
                memcpy(&w0, a0 + 2 * t, 4);
                memcpy(&w1, a1 + 2 * t, 4);
                memcpy(&w2, a2 + 2 * t, 4);
                memcpy(&w3, a3 + 2 * t, 4);
                c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_set1_epi32(w0), bv));
                c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_set1_epi32(w1), bv));
                c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_set1_epi32(w2), bv));
                c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_set1_epi32(w3), bv));
            }
            const __m256i cs[4] = {c0, c1, c2, c3};
            const int64_t w = N - 8 * jb < 8 ? N - 8 * jb : 8;
            for (int r = 0; r < rows; r++) {
                int32_t tmp[8];
                _mm256_storeu_si256((__m256i *)tmp, cs[r]);
                memcpy(C + (i + r) * ldc + 8 * jb, tmp, (size_t)w * sizeof(int32_t));
            }
        }
    }
}

static void x_qk_s32(const int8_t *Q, int64_t ldq, int32_t zq, const int8_t *K, int64_t ldk, int32_t zk, int64_t Tq,
                     int64_t Tk, int64_t d, int32_t *S, int64_t lds)
{
    const int64_t Kp = (d + 1) & ~(int64_t)1, nb = (Tk + 7) / 8;
    int16_t *A = calloc((size_t)(Tq * Kp), sizeof *A), *B = calloc((size_t)(nb * Kp * 8), sizeof *B);
    if (!A || !B) abort();
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t t = 0; t < d; t++) A[i * Kp + t] = (int16_t)(Q[i * ldq + t] - zq);
    for (int64_t j = 0; j < Tk; j++)
        for (int64_t t = 0; t < d; t++)
            B[((j / 8) * (Kp / 2) + t / 2) * 16 + 2 * (j % 8) + (t & 1)] = (int16_t)(K[j * ldk + t] - zk);
    gemm16(A, Tq, Kp, B, Tk, S, lds);
    free(A);
    free(B);
}

static void x_pv_s32(const uint8_t *P, int64_t ldp, const int8_t *V, int64_t ldv, int32_t zv, int64_t Tq, int64_t Tk,
                     int64_t d, int32_t *C, int64_t ldc)
{
    const int64_t Kp = (Tk + 1) & ~(int64_t)1, nb = (d + 7) / 8;
    int16_t *A = calloc((size_t)(Tq * Kp), sizeof *A), *B = calloc((size_t)(nb * Kp * 8), sizeof *B);
    if (!A || !B) abort();
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t j = 0; j < Tk; j++) A[i * Kp + j] = (int16_t)P[i * ldp + j];
    for (int64_t j = 0; j < Tk; j++)
        for (int64_t t = 0; t < d; t++)
            B[((t / 8) * (Kp / 2) + j / 2) * 16 + 2 * (t % 8) + (j & 1)] = (int16_t)(V[j * ldv + t] - zv);
    gemm16(A, Tq, Kp, B, d, C, ldc);
    free(A);
    free(B);
}

static void x_outlier_add(const int8_t *xo, int64_t ldx, int64_t M, const int8_t *wo, int64_t N, int64_t Ko, int32_t e,
                          int32_t *acc, int64_t ldc)
{
    const __m128i ce = _mm_cvtsi32_si128(e);
    for (int64_t m = 0; m < M; m++) {
        int32_t *c = acc + m * ldc;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            __m256i s = _mm256_setzero_si256();
            for (int64_t j = 0; j < Ko; j++) {
                const __m256i w = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(wo + j * N + n)));
                s = _mm256_add_epi32(s, _mm256_mullo_epi32(_mm256_set1_epi32(xo[m * ldx + j]), w));
            }
            _mm256_storeu_si256((__m256i *)(c + n), _mm256_add_epi32(ld(c + n), _mm256_sll_epi32(s, ce)));
        }
        for (; n < N; n++) {
            int32_t s = 0;
            for (int64_t j = 0; j < Ko; j++) s += (int32_t)xo[m * ldx + j] * wo[j * N + n];
            c[n] += (int32_t)((uint32_t)s << e);
        }
    }
}

void qd_intops_fill_avx2(qd_intops_table *t)
{
    t->isa = "avx2";
    t->igemm_pack = x_pack;
    t->igemm_free = x_free;
    t->igemm_s32 = x_gemm;
    t->requant_s8 = x_requant_s8;
    t->rescale_add = x_rescale_add;
    t->layernorm = x_layernorm;
    t->gelu_s8 = x_gelu_s8;
    t->softmax_u8 = x_softmax_u8;
    t->qk_s32 = x_qk_s32;
    t->pv_s32 = x_pv_s32;
    t->outlier_add = x_outlier_add;
}
