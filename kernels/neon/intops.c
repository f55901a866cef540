/* kernels/neon/intops.c — AArch64 NEON versions of the integer-only kernels (kernels/intops.h),
 * bit for bit equal to kernels/ref/intops.c. NEON is part of the AArch64 base ISA; the int8 GEMM
 * has a second inner loop with SDOT (ARMv8.2 dot product, four int8 products per int32 lane),
 * compiled for that feature alone and chosen by kernels/intops_dispatch.c from HWCAP_ASIMDDP.
 *
 * The fixed-point steps map onto single instructions with gemmlowp's semantics: SQRDMULH is the
 * saturating rounding doubling high multiply (INT32_MIN · INT32_MIN saturating included), the
 * rounding divide by a power of two is SRSHL after a -1 fix-up of negative values (ties away from
 * zero), SQSHL the saturating left shift; 64-bit steps use SMULL and SRSHL on 64-bit lanes.
 * Built only for AArch64 (tests/arm/ cross-builds it and runs it under qemu-user). */
#if defined(__aarch64__)
#include <arm_neon.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/intops.h"
#include "kernels/ref/fixedpoint.h"
#include "kernels/ref/intops_scalar.h"

/* ---- lane-wise fixed point ---------------------------------------------------------------- */

static inline int32x4_t n_rdivpot(int32x4_t x, int32x4_t e)
{
    const int32x4_t s = vnegq_s32(e);
    const int32x4_t fix = vshrq_n_s32(vandq_s32(x, s), 31);
    return vrshlq_s32(vqaddq_s32(x, fix), s);
}

static inline int32x4_t n_mbqm(int32x4_t x, int32x4_t M0, int32x4_t sh)
{
    sh = vminq_s32(vmaxq_s32(sh, vdupq_n_s32(-31)), vdupq_n_s32(31));
    const int32x4_t left = vmaxq_s32(sh, vdupq_n_s32(0)), right = vmaxq_s32(vnegq_s32(sh), vdupq_n_s32(0));
    return n_rdivpot(vqrdmulhq_s32(vqshlq_s32(x, left), M0), right);
}

static inline int32x4_t ld4(const int32_t *p) { return vld1q_s32(p); }

/* eight int32 (two vectors) + zp to int8 with saturation, then max lo */
static inline int8x8_t n_to8(int32x4_t a, int32x4_t b, int32x4_t zp, int8x8_t lo)
{
    const int16x8_t h = vcombine_s16(vqmovn_s32(vqaddq_s32(a, zp)), vqmovn_s32(vqaddq_s32(b, zp)));
    return vmax_s8(vqmovn_s16(h), lo);
}

/* ---- int8 GEMM ---------------------------------------------------------------------------- */

struct qd_igemm {
    int64_t N, K, Kp; /* Kp: K padded to 16 */
    int8_t *w;        /* [N][Kp], zero padded */
};

static qd_igemm *n_pack(const int8_t *w, int64_t N, int64_t K, int64_t ldw)
{
    if (N < 1 || K < 1 || K > 65536) return NULL;
    qd_igemm *g = malloc(sizeof *g);
    const int64_t Kp = (K + 15) & ~(int64_t)15;
    int8_t *c = calloc((size_t)(N * Kp), 1);
    if (!g || !c) {
        free(g);
        free(c);
        return NULL;
    }
    for (int64_t n = 0; n < N; n++) memcpy(c + n * Kp, w + n * ldw, (size_t)K);
    *g = (qd_igemm){N, K, Kp, c};
    return g;
}

static void n_free(qd_igemm *g)
{
    if (!g) return;
    free(g->w);
    free(g);
}

/* four outputs of one row: Σ_k a[k] w_j[k] with SMULL/SADALP (int8 products are int16, pairs
 * added into int32: exact) */
static inline void dot4_plain(const int8_t *a, const int8_t *w, int64_t Kp, int32_t *c)
{
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t k = 0; k < Kp; k += 16) {
        const int8x16_t av = vld1q_s8(a + k);
        const int8x16_t w0 = vld1q_s8(w + k), w1 = vld1q_s8(w + Kp + k), w2 = vld1q_s8(w + 2 * Kp + k),
                        w3 = vld1q_s8(w + 3 * Kp + k);
        s0 = vpadalq_s16(vpadalq_s16(s0, vmull_s8(vget_low_s8(av), vget_low_s8(w0))), vmull_high_s8(av, w0));
        s1 = vpadalq_s16(vpadalq_s16(s1, vmull_s8(vget_low_s8(av), vget_low_s8(w1))), vmull_high_s8(av, w1));
        s2 = vpadalq_s16(vpadalq_s16(s2, vmull_s8(vget_low_s8(av), vget_low_s8(w2))), vmull_high_s8(av, w2));
        s3 = vpadalq_s16(vpadalq_s16(s3, vmull_s8(vget_low_s8(av), vget_low_s8(w3))), vmull_high_s8(av, w3));
    }
    c[0] = vaddvq_s32(s0);
    c[1] = vaddvq_s32(s1);
    c[2] = vaddvq_s32(s2);
    c[3] = vaddvq_s32(s3);
}

__attribute__((target("arch=armv8.2-a+dotprod"))) static void dot4_sdot(const int8_t *a, const int8_t *w, int64_t Kp,
                                                                        int32_t *c)
{
    int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;
    for (int64_t k = 0; k < Kp; k += 16) {
        const int8x16_t av = vld1q_s8(a + k);
        s0 = vdotq_s32(s0, av, vld1q_s8(w + k));
        s1 = vdotq_s32(s1, av, vld1q_s8(w + Kp + k));
        s2 = vdotq_s32(s2, av, vld1q_s8(w + 2 * Kp + k));
        s3 = vdotq_s32(s3, av, vld1q_s8(w + 3 * Kp + k));
    }
    c[0] = vaddvq_s32(s0);
    c[1] = vaddvq_s32(s1);
    c[2] = vaddvq_s32(s2);
    c[3] = vaddvq_s32(s3);
}

static void gemm_rows(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc, int dot)
{
    int8_t *a = calloc((size_t)W->Kp, 1);
    int8_t *w4 = calloc((size_t)(4 * W->Kp), 1); /* the last block of fewer than four rows, padded */
    if (!a || !w4) abort();
    const int64_t N4 = W->N & ~(int64_t)3;
    if (N4 < W->N) memcpy(w4, W->w + N4 * W->Kp, (size_t)((W->N - N4) * W->Kp));
    for (int64_t m = 0; m < M; m++) {
        memcpy(a, A + m * lda, (size_t)W->K);
        int32_t c[4];
        for (int64_t n = 0; n < W->N; n += 4) {
            const int8_t *w = n < N4 ? W->w + n * W->Kp : w4;
            if (dot)
                dot4_sdot(a, w, W->Kp, c);
            else
                dot4_plain(a, w, W->Kp, c);
            for (int j = 0; j < 4 && n + j < W->N; j++) C[m * ldc + n + j] = c[j];
        }
    }
    free(a);
    free(w4);
}

static void n_gemm(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc)
{
    gemm_rows(A, lda, M, W, C, ldc, 0);
}
static void n_gemm_dot(const int8_t *A, int64_t lda, int64_t M, const qd_igemm *W, int32_t *C, int64_t ldc)
{
    gemm_rows(A, lda, M, W, C, ldc, 1);
}

/* ---- requantization and residual adds ---------------------------------------------------- */

static void n_requant_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                         const int32_t *sh, int per_channel, int32_t zp, int32_t lo, int8_t *out, int64_t ldo,
                         const qd_isplit *sp)
{
    const int32x4_t vzp = vdupq_n_s32(zp), m1 = vdupq_n_s32(M0[0]), s1 = vdupq_n_s32(sh[0]);
    const int8x8_t vlo = vdup_n_s8((int8_t)(lo < -128 ? -128 : lo));
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            int32x4_t v0 = ld4(a + n), v1 = ld4(a + n + 4);
            if (bias) {
                v0 = vqaddq_s32(v0, ld4(bias + n));
                v1 = vqaddq_s32(v1, ld4(bias + n + 4));
            }
            v0 = n_mbqm(v0, per_channel ? ld4(M0 + n) : m1, per_channel ? ld4(sh + n) : s1);
            v1 = n_mbqm(v1, per_channel ? ld4(M0 + n + 4) : m1, per_channel ? ld4(sh + n + 4) : s1);
            vst1_s8(o + n, n_to8(v0, v1, vzp, vlo));
        }
        for (; n < N; n++)
            o[n] = qd_is_requant1(a[n], bias, n, M0[per_channel ? n : 0], sh[per_channel ? n : 0], zp, lo);
        if (sp) qd_is_split_rq(sp, a, bias, M0, sh, per_channel, zp, lo > -128, o, sp->out + m * sp->ld);
    }
}

static void n_rescale_add(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                          const int32_t *sh, const int32_t *res, int64_t ldr, int32_t rM0, int32_t rsh, int32_t lim,
                          int32_t *out, int64_t ldo)
{
    const int32x4_t rm = vdupq_n_s32(rM0), rs = vdupq_n_s32(rsh), vl = vdupq_n_s32(lim), vnl = vdupq_n_s32(-lim);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int32_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 4 <= N; n += 4) {
            int32x4_t v = ld4(a + n);
            if (bias) v = vqaddq_s32(v, ld4(bias + n));
            v = n_mbqm(v, ld4(M0 + n), ld4(sh + n));
            /* a saturated sum is beyond lim (< 2^31) exactly when the true sum is */
            if (res) v = vqaddq_s32(v, n_mbqm(ld4(res + m * ldr + n), rm, rs));
            vst1q_s32(o + n, vminq_s32(vmaxq_s32(v, vnl), vl));
        }
        for (; n < N; n++)
            o[n] = qd_is_rescale1(a[n], bias, n, M0[n], sh[n], res ? res + m * ldr + n : NULL, rM0, rsh, lim);
    }
}

/* ---- LayerNorm ---------------------------------------------------------------------------- */

static void n_layernorm(const int32_t *x, int64_t M, int64_t N, int64_t ldx, const qd_iln *p, int8_t *out, int64_t ldo,
                        int32_t *fine, int64_t ldf, const qd_isplit *sp)
{
    const int sc = 16 + p->gsh, sf = 8 + p->gsh;
    const int64x2_t nsc = vdupq_n_s64(-sc), nsf = vdupq_n_s64(-sf);
    const int32x4_t vzp = vdupq_n_s32(p->zp);
    const int8x8_t vlo = vdup_n_s8(-128);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *xr = x + m * ldx;
        int32x4_t vmx = vdupq_n_s32(0);
        int64x2_t vs = vdupq_n_s64(0);
        int64_t i = 0;
        for (; i + 4 <= N; i += 4) {
            const int32x4_t v = ld4(xr + i);
            vmx = vmaxq_s32(vmx, vabsq_s32(v));
            vs = vpadalq_s32(vs, v);
        }
        int32_t mx = vmaxvq_s32(vmx);
        int64_t s = vaddvq_s64(vs);
        qd_is_ln_tail1(xr, i, N, &mx, &s);
        const int f = qd_is_ln_shift(mx);
        const int64_t mu = qd_is_ln_mean(s * ((int64_t)1 << f), N);
        const int32x4_t vmu = vdupq_n_s32((int32_t)mu), vf = vdupq_n_s32(f);
        int64x2_t vss = vdupq_n_s64(0);
        for (i = 0; i + 4 <= N; i += 4) {
            const int32x4_t d = vsubq_s32(vshlq_s32(ld4(xr + i), vf), vmu);
            vss = vmlal_s32(vss, vget_low_s32(d), vget_low_s32(d));
            vss = vmlal_high_s32(vss, d, d);
        }
        int64_t ss = vaddvq_s64(vss);
        ss += qd_is_ln_tail2(xr, i, N, f, mu);
        const qd_is_lnrow r = qd_is_ln_finish(mu, ss, N, p->eps, f);
        const int32x2_t vR = vdup_n_s32((int32_t)r.R);
        const int64x2_t nnsh = vdupq_n_s64(-r.nsh);
        int8_t *o = out + m * ldo;
        int32_t *fo = fine ? fine + m * ldf : NULL;
        for (i = 0; i + 8 <= N; i += 8) {
            int32x4_t c[2], fv[2];
            for (int h = 0; h < 2; h++) {
                const int32x4_t d = vsubq_s32(vshlq_s32(ld4(xr + i + 4 * h), vf), vmu);
                /* n = d / sigma in Q16 (fits int32), y = n g + beta (int64) */
                const int64x2_t n0 = vrshlq_s64(vmull_s32(vget_low_s32(d), vR), nnsh);
                const int64x2_t n1 = vrshlq_s64(vmull_high_s32(d, vcombine_s32(vR, vR)), nnsh);
                const int32x4_t nq = vcombine_s32(vmovn_s64(n0), vmovn_s64(n1));
                const int32x4_t g = ld4(p->g + i + 4 * h);
                const int64x2_t y0 =
                    vaddq_s64(vmull_s32(vget_low_s32(nq), vget_low_s32(g)), vld1q_s64(p->beta + i + 4 * h));
                const int64x2_t y1 = vaddq_s64(vmull_high_s32(nq, g), vld1q_s64(p->beta + i + 4 * h + 2));
                c[h] = vcombine_s32(vmovn_s64(vrshlq_s64(y0, nsc)), vmovn_s64(vrshlq_s64(y1, nsc)));
                fv[h] = vcombine_s32(vqmovn_s64(vrshlq_s64(y0, nsf)), vqmovn_s64(vrshlq_s64(y1, nsf)));
            }
            vst1_s8(o + i, n_to8(c[0], c[1], vzp, vlo));
            if (fo) {
                vst1q_s32(fo + i, fv[0]);
                vst1q_s32(fo + i + 4, fv[1]);
            }
        }
        qd_is_ln_tail3(xr, i, N, &r, p, o, fo);
        if (sp) qd_is_split_ln(sp, xr, &r, p, o, sp->out + m * sp->ld);
    }
}

/* ---- GELU --------------------------------------------------------------------------------- */

static inline int32x4_t n_igelu(int32x4_t x, const qd_igelu *p)
{
    const int32x4_t xb = vdupq_n_s32(p->xb);
    const int32x4_t du = vsubq_s32(vminq_s32(vabsq_s32(x), xb), xb);
    const int32x4_t L = vaddq_s32(vmulq_s32(du, du), vdupq_n_s32(p->qc));
    const int32x4_t sgn = vsubq_s32(vreinterpretq_s32_u32(vcltzq_s32(x)), vreinterpretq_s32_u32(vcgtzq_s32(x)));
    const int32x4_t t = vaddq_s32(vmulq_s32(L, sgn), vdupq_n_s32(p->q1));
    const int32x4_t f = n_mbqm(vnegq_s32(t), vdupq_n_s32(p->fM0), vdupq_n_s32(p->fsh));
    int32x4_t y = vrshrq_n_s32(vmulq_s32(x, f), 15);
    y = vbslq_s32(vcgeq_s32(x, xb), x, y);
    return vbslq_s32(vcleq_s32(x, vnegq_s32(xb)), vdupq_n_s32(0), y);
}

static void n_gelu_s8(const int32_t *acc, int64_t M, int64_t N, int64_t lda, const int32_t *bias, const int32_t *M0,
                      const int32_t *sh, const qd_igelu *p, int8_t *out, int64_t ldo, const qd_isplit *sp)
{
    const int32x4_t om = vdupq_n_s32(p->oM0), os = vdupq_n_s32(p->osh), vzp = vdupq_n_s32(p->zp);
    const int8x8_t vlo = vdup_n_s8(-128);
    for (int64_t m = 0; m < M; m++) {
        const int32_t *a = acc + m * lda;
        int8_t *o = out + m * ldo;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            int32x4_t y[2];
            for (int h = 0; h < 2; h++) {
                int32x4_t v = ld4(a + n + 4 * h);
                if (bias) v = vqaddq_s32(v, ld4(bias + n + 4 * h));
                y[h] = n_mbqm(n_igelu(n_mbqm(v, ld4(M0 + n + 4 * h), ld4(sh + n + 4 * h)), p), om, os);
            }
            vst1_s8(o + n, n_to8(y[0], y[1], vzp, vlo));
        }
        for (; n < N; n++) o[n] = qd_is_gelu1(a[n], bias, M0, sh, n, p);
        if (sp) qd_is_split_gelu(sp, a, bias, M0, sh, p, o, sp->out + m * sp->ld);
    }
}

/* ---- softmax ------------------------------------------------------------------------------ */

typedef struct {
    int32x4_t m0, sh, mx, lowx, qb, qln2, qc;
    uint32x2_t rq;
} n_sm;

static inline uint32x4_t n_keep(const uint8_t *keep, int64_t j)
{
    if (!keep) return vdupq_n_u32(0xFFFFFFFFu);
    const uint32_t k4 =
        (uint32_t)keep[j] | (uint32_t)keep[j + 1] << 8 | (uint32_t)keep[j + 2] << 16 | (uint32_t)keep[j + 3] << 24;
    const uint32x4_t k = vmovl_u16(vget_low_u16(vmovl_u8(vcreate_u8(k4))));
    return vmvnq_u32(vceqzq_u32(k));
}

/* four i-exp values (0 where masked); z = (dd · rq) >> 40, exact for dd < 2^17, qln2 in [2^8, 2^17) */
static inline uint32x4_t n_iexp(const n_sm *k, int32x4_t s, uint32x4_t keep)
{
    const int32x4_t x = vmaxq_s32(n_mbqm(s, k->m0, k->sh), k->lowx);
    const uint32x4_t dd = vreinterpretq_u32_s32(vsubq_s32(k->mx, x));
    const uint64x2_t z0 = vshrq_n_u64(vmull_u32(vget_low_u32(dd), k->rq), 40);
    const uint64x2_t z1 = vshrq_n_u64(vmull_high_u32(dd, vcombine_u32(k->rq, k->rq)), 40);
    const int32x4_t z = vreinterpretq_s32_u32(vcombine_u32(vmovn_u64(z0), vmovn_u64(z1)));
    const int32x4_t q = vaddq_s32(vsubq_s32(k->qb, vreinterpretq_s32_u32(dd)), vmulq_s32(z, k->qln2));
    const uint32x4_t v = vreinterpretq_u32_s32(vaddq_s32(vmulq_s32(q, q), k->qc));
    return vandq_u32(vshlq_u32(v, vnegq_s32(z)), keep); /* z = 31: 0 */
}

static void n_softmax_u8(const int32_t *s, int64_t n, const uint8_t *keep, const qd_isoftmax *p, uint8_t *P)
{
    keep = qd_is_keep(keep, n);
    if (!qd_is_softmax_lanes_ok(p)) { /* outside the ranges where the lane arithmetic is exact */
        qd_is_softmax_row(s, n, keep, p, P);
        return;
    }
    n_sm k;
    k.m0 = vdupq_n_s32(p->M0);
    k.sh = vdupq_n_s32(p->sh);
    int32x4_t vmx = vdupq_n_s32(INT32_MIN);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4) {
        const int32x4_t x = n_mbqm(ld4(s + j), k.m0, k.sh);
        vmx = vmaxq_s32(vmx, vbslq_s32(n_keep(keep, j), x, vdupq_n_s32(INT32_MIN)));
    }
    int32_t mx = vmaxvq_s32(vmx);
    for (; j < n; j++)
        if (!keep || keep[j]) {
            const int32_t x = qd_fx_mbqm(s[j], p->M0, p->sh);
            if (x > mx) mx = x;
        }
    const int64_t cap = 31 * (int64_t)p->qln2, low = (int64_t)mx - cap;
    k.mx = vdupq_n_s32(mx);
    k.lowx = vdupq_n_s32((int32_t)(low < INT32_MIN ? INT32_MIN : low));
    k.qb = vdupq_n_s32(p->qb);
    k.qln2 = vdupq_n_s32(p->qln2);
    k.qc = vdupq_n_s32(p->qc);
    k.rq = vdup_n_u32((uint32_t)((((uint64_t)1 << 40) / (uint64_t)p->qln2) + 1));
    uint64x2_t vsum = vdupq_n_u64(0);
    for (j = 0; j + 4 <= n; j += 4) vsum = vpadalq_u32(vsum, n_iexp(&k, ld4(s + j), n_keep(keep, j)));
    int64_t sum = (int64_t)vaddvq_u64(vsum);
    for (; j < n; j++)
        if (!keep || keep[j]) sum += qd_is_iexp((int64_t)mx - qd_fx_mbqm(s[j], p->M0, p->sh), p);
    const int64_t R = ((int64_t)1 << 46) / sum;
    const uint32x2_t vR = vdup_n_u32((uint32_t)R);
    for (j = 0; j + 4 <= n; j += 4) {
        const uint32x4_t e = n_iexp(&k, ld4(s + j), n_keep(keep, j));
        const uint64x2_t p0 = vrshrq_n_u64(vmull_u32(vget_low_u32(e), vR), 38);
        const uint64x2_t p1 = vrshrq_n_u64(vmull_high_u32(e, vcombine_u32(vR, vR)), 38);
        const uint32x4_t v = vminq_u32(vcombine_u32(vmovn_u64(p0), vmovn_u64(p1)), vdupq_n_u32(255));
        const uint8x8_t b = vmovn_u16(vcombine_u16(vmovn_u32(v), vdup_n_u16(0)));
        P[j] = vget_lane_u8(b, 0);
        P[j + 1] = vget_lane_u8(b, 1);
        P[j + 2] = vget_lane_u8(b, 2);
        P[j + 3] = vget_lane_u8(b, 3);
    }
    for (; j < n; j++) P[j] = qd_is_softmax_p(s[j], mx, R, !keep || keep[j], p);
}

/* ---- attention products ------------------------------------------------------------------- */

static void n_qk_s32(const int8_t *Q, int64_t ldq, int32_t zq, const int8_t *K, int64_t ldk, int32_t zk, int64_t Tq,
                     int64_t Tk, int64_t d, int32_t *S, int64_t lds)
{
    /* rows widened once, zero points removed, padded to 8 with zeros */
    const int64_t dp = (d + 7) & ~(int64_t)7;
    int16_t *q = calloc((size_t)(Tq * dp), 2), *k = calloc((size_t)(Tk * dp), 2);
    if (!q || !k) abort();
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t t = 0; t < d; t++) q[i * dp + t] = (int16_t)(Q[i * ldq + t] - zq);
    for (int64_t j = 0; j < Tk; j++)
        for (int64_t t = 0; t < d; t++) k[j * dp + t] = (int16_t)(K[j * ldk + t] - zk);
    for (int64_t i = 0; i < Tq; i++)
        for (int64_t j = 0; j < Tk; j++) {
            int32x4_t a = vdupq_n_s32(0);
            for (int64_t t = 0; t < dp; t += 8) {
                const int16x8_t x = vld1q_s16(q + i * dp + t), y = vld1q_s16(k + j * dp + t);
                a = vmlal_s16(a, vget_low_s16(x), vget_low_s16(y));
                a = vmlal_high_s16(a, x, y);
            }
            S[i * lds + j] = vaddvq_s32(a);
        }
    free(q);
    free(k);
}

static void n_pv_s32(const uint8_t *P, int64_t ldp, const int8_t *V, int64_t ldv, int32_t zv, int64_t Tq, int64_t Tk,
                     int64_t d, int32_t *C, int64_t ldc)
{
    const int64_t dp = (d + 7) & ~(int64_t)7;
    int16_t *v = calloc((size_t)(Tk * dp), 2);
    int32_t *acc = malloc((size_t)dp * 4);
    if (!v || !acc) abort();
    for (int64_t j = 0; j < Tk; j++)
        for (int64_t t = 0; t < d; t++) v[j * dp + t] = (int16_t)(V[j * ldv + t] - zv);
    for (int64_t i = 0; i < Tq; i++) {
        for (int64_t t = 0; t < dp; t += 8) {
            int32x4_t a0 = vdupq_n_s32(0), a1 = a0;
            for (int64_t j = 0; j < Tk; j++) {
                const int16x8_t y = vld1q_s16(v + j * dp + t);
                const int16_t pj = (int16_t)P[i * ldp + j];
                a0 = vmlal_n_s16(a0, vget_low_s16(y), pj);
                a1 = vmlal_high_n_s16(a1, y, pj);
            }
            vst1q_s32(acc + t, a0);
            vst1q_s32(acc + t + 4, a1);
        }
        memcpy(C + i * ldc, acc, (size_t)d * 4);
    }
    free(v);
    free(acc);
}

static void n_outlier_add(const int8_t *xo, int64_t ldx, int64_t M, const int8_t *wo, int64_t N, int64_t Ko, int32_t e,
                          int32_t *acc, int64_t ldc)
{
    const int32x4_t ve = vdupq_n_s32(e);
    for (int64_t m = 0; m < M; m++) {
        int32_t *c = acc + m * ldc;
        int64_t n = 0;
        for (; n + 8 <= N; n += 8) {
            int32x4_t s0 = vdupq_n_s32(0), s1 = s0;
            for (int64_t j = 0; j < Ko; j++) {
                const int16x8_t w = vmovl_s8(vld1_s8(wo + j * N + n));
                const int16_t x = xo[m * ldx + j];
                s0 = vmlal_n_s16(s0, vget_low_s16(w), x);
                s1 = vmlal_high_n_s16(s1, w, x);
            }
            vst1q_s32(c + n, vaddq_s32(ld4(c + n), vshlq_s32(s0, ve)));
            vst1q_s32(c + n + 4, vaddq_s32(ld4(c + n + 4), vshlq_s32(s1, ve)));
        }
        for (; n < N; n++) {
            int32_t s = 0;
            for (int64_t j = 0; j < Ko; j++) s += (int32_t)xo[m * ldx + j] * wo[j * N + n];
            c[n] += (int32_t)((uint32_t)s << e);
        }
    }
}

void qd_intops_fill_neon(qd_intops_table *t, int dot)
{
    t->isa = dot ? "neon-dot" : "neon";
    t->igemm_pack = n_pack;
    t->igemm_free = n_free;
    t->igemm_s32 = dot ? n_gemm_dot : n_gemm;
    t->requant_s8 = n_requant_s8;
    t->rescale_add = n_rescale_add;
    t->layernorm = n_layernorm;
    t->gelu_s8 = n_gelu_s8;
    t->softmax_u8 = n_softmax_u8;
    t->qk_s32 = n_qk_s32;
    t->pv_s32 = n_pv_s32;
    t->outlier_add = n_outlier_add;
}
#endif
