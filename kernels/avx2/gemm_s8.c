/* AVX2 int8 GEMM and activation quantizer (kernels/gemm.h), bit-identical to kernels/ref/gemm.c.
 *
 * Exactness: no vpmaddubsw on int8 x int8 data. Both operands are widened to int16 (weights once at
 * pack time, activations when a row block is packed) and multiplied with vpmaddwd, which adds two
 * int16 x int16 products into an int32 lane: |a·w| <= 128·128 = 2^14, a pair <= 2^15, so no lane
 * can saturate or wrap, and the int32 accumulators stay below K·2^14 <= 2^30 (QD_GEMM_MAX_K).
 * Integer sums are exact in any order, so blocking does not change a bit; the float and int8
 * epilogues apply the reference's operations in the reference's order, lane by lane.
 *
 * Blocking (Goto/BLIS): row blocks of MC rows are packed to int16 pairs [6 rows][k/2]; for each
 * 16-channel weight panel, K runs in blocks of KCP pairs (the panel slice, 64·KCP bytes, stays in
 * L1 while the 6-row microkernel walks the row block), partial sums live in an int32 tile
 * [MC][16] that the epilogue turns into the output. Microkernel: 6 x 16 int32 in 12 ymm, per pair
 * of k two weight loads, six dword broadcasts, 12 vpmaddwd and 12 vpaddd.
 *
 * Compiled with -mavx2 -mfma -mf16c, reached only through the dispatch table after the CPUID check;
 * ISO C mode keeps FP contraction off. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/avx2/avx2_util.h"
#include "kernels/kernels.h"

#define MR            6
#define KCP           192         /* pairs of k per K block: a 12 KiB weight slice */
#define A_BLOCK_BYTES (256 << 10) /* packed int16 row block, kept in L2 */

/* ---- activation quantization ------------------------------------------------------------------ */

static inline __m128i narrow8_s8(__m256i v)
{ /* 8 int32 in [-127, 127] -> 8 int8 in the low half */
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packs_epi16(w, w);
}

static inline __m256i quant8_s8(__m256 x, __m256 vs)
{
    __m256 q = _mm256_round_ps(_mm256_div_ps(x, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_and_ps(q, _mm256_cmp_ps(q, q, _CMP_ORD_Q)); /* NaN -> +0 */
    q = _mm256_max_ps(q, _mm256_set1_ps(-127.0f));
    q = _mm256_min_ps(q, _mm256_set1_ps(127.0f));
    return _mm256_cvttps_epi32(q);
}

/* ref/gemm.c's ref_quantize_rows_s8 with the absmax and the rounding in vectors: its checks and row
 * loop are repeated on purpose, the two must read alike line by line */
static void avx2_quantize_rows_s8(const float *x, int64_t M, int64_t K, int64_t ldx, const float *static_scale,
                                  float *scales, int8_t *q, int64_t ldq)
{
    QD_ASSERT(M >= 0 && K >= 1 && ldx >= K && ldq >= K);
    if (static_scale) QD_ASSERT(*static_scale > 0.0f && isfinite(*static_scale));
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t m = 0; m < M; m++) {
        const float *xr = x + m * ldx;
        int8_t *qr = q + m * ldq;
        float s;
        if (static_scale) {
            s = *static_scale;
        } else {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int64_t k = 0;
            for (; k + 16 <= K; k += 16) {
                a0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xr + k), absmask), a0);
                a1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xr + k + 8), absmask), a1);
            }
            for (; k < K; k += 8) {
                __m256 v = _mm256_maskload_ps(xr + k, qd_avx2_tail_mask(QD_MIN(K - k, 8)));
                a0 = _mm256_max_ps(_mm256_and_ps(v, absmask), a0);
            }
            /* lanes hold no NaN (a NaN never replaces the running maximum): max is order-free */
            a0 = _mm256_max_ps(a0, a1);
            __m128 h = _mm_max_ps(_mm256_castps256_ps128(a0), _mm256_extractf128_ps(a0, 1));
            h = _mm_max_ps(h, _mm_movehl_ps(h, h));
            h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
            s = _mm_cvtss_f32(h) / 127.0f;
        }
        scales[m] = s;
        if (s == 0.0f) {
            memset(qr, 0, (size_t)K);
            continue;
        }
        const __m256 vs = _mm256_set1_ps(s);
        int64_t k = 0;
        for (; k + 32 <= K; k += 32) {
            __m256i a = quant8_s8(_mm256_loadu_ps(xr + k), vs), b = quant8_s8(_mm256_loadu_ps(xr + k + 8), vs);
            __m256i c = quant8_s8(_mm256_loadu_ps(xr + k + 16), vs), d = quant8_s8(_mm256_loadu_ps(xr + k + 24), vs);
            __m256i v = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
            _mm256_storeu_si256((__m256i *)(qr + k), _mm256_permutevar8x32_epi32(v, perm));
        }
        for (; k + 8 <= K; k += 8)
            _mm_storel_epi64((__m128i *)(qr + k), narrow8_s8(quant8_s8(_mm256_loadu_ps(xr + k), vs)));
        if (k < K) {
            int8_t tmp[16];
            __m256 v = _mm256_maskload_ps(xr + k, qd_avx2_tail_mask(K - k));
            _mm_storeu_si128((__m128i *)tmp, narrow8_s8(quant8_s8(v, vs)));
            memcpy(qr + k, tmp, (size_t)(K - k));
        }
    }
}

/* ---- packing of activations: int8 rows -> int16 pairs [kp2][6] per 6-row panel ----------------- */

/* 8 x 8 int32 transpose: r[i] lane j -> o[j] lane i */
static inline void transpose8(__m256i r[8], __m256i o[8])
{
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    for (int j = 0; j < 4; j++) {
        o[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
        o[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
    }
}

/* rows [m0, m0 + rows) of A (rows <= 6; missing rows are zero) into dst[kp2][6] int32 pairs;
 * dst has 8 int32 of slack past its end (the 8-lane stores overlap the next pair). */
static void pack_a_panel(const int8_t *A, int64_t lda, int64_t rows, int64_t K, int64_t kp2, int32_t *dst)
{
    const int8_t *rp[8];
    for (int r = 0; r < 8; r++) rp[r] = r < rows ? A + r * lda : NULL;
    for (int64_t j0 = 0; j0 < kp2; j0 += 8) { /* 8 pairs = 16 k */
        const int64_t k0 = 2 * j0, nk = QD_MIN((int64_t)16, K - k0);
        __m256i r[8], o[8];
        for (int i = 0; i < 8; i++) {
            if (!rp[i]) {
                r[i] = _mm256_setzero_si256();
            } else if (nk == 16) {
                r[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(rp[i] + k0)));
            } else {
                int8_t tmp[16] = {0};
                memcpy(tmp, rp[i] + k0, (size_t)nk);
                r[i] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)tmp));
            }
        }
        transpose8(r, o);
        const int64_t nj = QD_MIN((int64_t)8, kp2 - j0);
        for (int64_t j = 0; j < nj; j++) _mm256_storeu_si256((__m256i *)(dst + (j0 + j) * MR), o[j]);
    }
}

/* ---- microkernel ------------------------------------------------------------------------------ */

/* c[6][16] (+)= Σ_j a[j][r] · b[j][c] over kp pairs: int16 pairs, vpmaddwd */
static void micro_s8(int64_t kp, const int32_t *a, const int16_t *b, int32_t *c, int accumulate)
{
    __m256i c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (accumulate) {
        c00 = _mm256_load_si256((const __m256i *)(c + 0)), c01 = _mm256_load_si256((const __m256i *)(c + 8));
        c10 = _mm256_load_si256((const __m256i *)(c + 16)), c11 = _mm256_load_si256((const __m256i *)(c + 24));
        c20 = _mm256_load_si256((const __m256i *)(c + 32)), c21 = _mm256_load_si256((const __m256i *)(c + 40));
        c30 = _mm256_load_si256((const __m256i *)(c + 48)), c31 = _mm256_load_si256((const __m256i *)(c + 56));
        c40 = _mm256_load_si256((const __m256i *)(c + 64)), c41 = _mm256_load_si256((const __m256i *)(c + 72));
        c50 = _mm256_load_si256((const __m256i *)(c + 80)), c51 = _mm256_load_si256((const __m256i *)(c + 88));
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_si256();
    }
    /* The loop is written out in assembly: compilers spill some of the 12 accumulators when they
     * schedule the six broadcasts early. Registers: 12 accumulators, two weight vectors (ymm12-13),
     * the broadcast pair (ymm14) and one product (ymm15). */
    if (kp > 0)
        __asm__ volatile("1:\n\t"
                         "vmovdqa (%[b]), %%ymm12\n\t"
                         "vmovdqa 32(%[b]), %%ymm13\n\t"
#define QD_S8_ROW(off, ca, cb)                   \
    "vpbroadcastd " #off "(%[a]), %%ymm14\n\t"   \
    "vpmaddwd %%ymm12, %%ymm14, %%ymm15\n\t"     \
    "vpaddd %%ymm15, %[" #ca "], %[" #ca "]\n\t" \
    "vpmaddwd %%ymm13, %%ymm14, %%ymm15\n\t"     \
    "vpaddd %%ymm15, %[" #cb "], %[" #cb "]\n\t"
                         QD_S8_ROW(0, c00, c01) QD_S8_ROW(4, c10, c11) QD_S8_ROW(8, c20, c21) QD_S8_ROW(12, c30, c31)
                             QD_S8_ROW(16, c40, c41) QD_S8_ROW(20, c50, c51)
#undef QD_S8_ROW
                                 "add $64, %[b]\n\t"
                                 "add $24, %[a]\n\t"
                                 "dec %[n]\n\t"
                                 "jnz 1b\n\t"
                         : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20),
                           [c21] "+x"(c21), [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41),
                           [c50] "+x"(c50), [c51] "+x"(c51), [a] "+r"(a), [b] "+r"(b), [n] "+r"(kp)
                         :
                         : "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    _mm256_store_si256((__m256i *)(c + 0), c00), _mm256_store_si256((__m256i *)(c + 8), c01);
    _mm256_store_si256((__m256i *)(c + 16), c10), _mm256_store_si256((__m256i *)(c + 24), c11);
    _mm256_store_si256((__m256i *)(c + 32), c20), _mm256_store_si256((__m256i *)(c + 40), c21);
    _mm256_store_si256((__m256i *)(c + 48), c30), _mm256_store_si256((__m256i *)(c + 56), c31);
    _mm256_store_si256((__m256i *)(c + 64), c40), _mm256_store_si256((__m256i *)(c + 72), c41);
    _mm256_store_si256((__m256i *)(c + 80), c50), _mm256_store_si256((__m256i *)(c + 88), c51);
}

/* ---- epilogues: int32 tile [rows][16] of panel p -> output ------------------------------------- */

enum { OUT_F32, OUT_S32, OUT_S8 };

typedef struct {
    int kind;
    const float *a_scales; /* OUT_F32: [M] */
    const qd_requant *rq;  /* OUT_S8 */
    void *C;
    int64_t ldc;
} epilogue;

/* 8 lanes to out[0, nv) (nv in [1, 8]) */
static inline void store_f32(float *out, __m256 v, int64_t nv)
{
    if (nv == 8)
        _mm256_storeu_ps(out, v);
    else
        _mm256_maskstore_ps(out, qd_avx2_tail_mask(nv), v);
}
static inline void store_s32(int32_t *out, __m256i v, int64_t nv)
{
    if (nv == 8)
        _mm256_storeu_si256((__m256i *)out, v);
    else
        _mm256_maskstore_epi32(out, qd_avx2_tail_mask(nv), v);
}

/* Requantization parameters of 8 channels, as lane vectors */
typedef struct {
    __m256i bias, mult, ls, rs, hi_lim, lo_lim, rmask, rthr;
} rq8;

static rq8 rq8_load(const qd_requant *rq, int64_t n0, int64_t nv)
{
    int32_t b[8] = {0}, mu[8] = {0}, sh[8] = {0};
    for (int64_t i = 0; i < nv; i++) {
        b[i] = rq->bias ? rq->bias[n0 + i] : 0;
        mu[i] = rq->mult[n0 + i];
        sh[i] = rq->shift[n0 + i];
    }
    rq8 p;
    const __m256i shv = _mm256_loadu_si256((const __m256i *)sh), zero = _mm256_setzero_si256();
    const __m256i c31 = _mm256_set1_epi32(31);
    p.bias = _mm256_loadu_si256((const __m256i *)b);
    p.mult = _mm256_loadu_si256((const __m256i *)mu);
    p.ls = _mm256_min_epi32(_mm256_max_epi32(shv, zero), c31);
    p.rs = _mm256_min_epi32(_mm256_max_epi32(_mm256_sub_epi32(zero, shv), zero), c31);
    p.hi_lim = _mm256_srav_epi32(_mm256_set1_epi32(INT32_MAX), p.ls);
    p.lo_lim = _mm256_srav_epi32(_mm256_set1_epi32(INT32_MIN), p.ls);
    p.rmask = _mm256_sub_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), p.rs), _mm256_set1_epi32(1));
    p.rthr = _mm256_srli_epi32(p.rmask, 1);
    return p;
}

/* quant/fixed.c's qd_requantize_s8(acc + bias) per lane, before the zero point: saturating left
 * shift, SaturatingRoundingDoublingHighMul, RoundingDivideByPOT. */
static inline __m256i requant8(__m256i acc, const rq8 *p)
{
    __m256i x = _mm256_add_epi32(acc, p->bias); /* |acc|, |bias| < 2^30: no wrap */
    const __m256i over = _mm256_cmpgt_epi32(x, p->hi_lim), under = _mm256_cmpgt_epi32(p->lo_lim, x);
    x = _mm256_sllv_epi32(x, p->ls);
    x = _mm256_blendv_epi8(x, _mm256_set1_epi32(INT32_MAX), over);
    x = _mm256_blendv_epi8(x, _mm256_set1_epi32(INT32_MIN), under);
    /* SRDHM with M0 >= 0: trunc((x·M0 + nudge) / 2^31) == floor((x·M0 + 2^30) / 2^31) for every
     * sign of x·M0, and the result fits int32, so the low dword of a logical 64-bit shift is it. */
    const __m256i half = _mm256_set1_epi64x(1ll << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(x, p->mult), half);
    const __m256i po =
        _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(p->mult, 32)), half);
    __m256i r = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    /* RoundingDivideByPOT(r, rs): (r >> rs) + ((r & mask) > (mask >> 1) + (r < 0)) */
    const __m256i rem = _mm256_and_si256(r, p->rmask);
    const __m256i thr = _mm256_add_epi32(p->rthr, _mm256_srli_epi32(r, 31));
    r = _mm256_sub_epi32(_mm256_srav_epi32(r, p->rs), _mm256_cmpgt_epi32(rem, thr));
    return r;
}

static void run_epilogue(const epilogue *e, const qd_gemm_w8 *W, const int32_t *tile, int64_t m0, int64_t rows,
                         int64_t p)
{
    const int64_t n0 = 16 * p, nv = QD_MIN((int64_t)16, W->N - n0);
    if (e->kind == OUT_F32) {
        const __m256 s0 = _mm256_load_ps(W->scales + n0), s1 = _mm256_load_ps(W->scales + n0 + 8);
        const __m256 b0 = W->bias ? _mm256_load_ps(W->bias + n0) : _mm256_setzero_ps();
        const __m256 b1 = W->bias ? _mm256_load_ps(W->bias + n0 + 8) : _mm256_setzero_ps();
        for (int64_t r = 0; r < rows; r++) {
            const __m256 as = _mm256_set1_ps(e->a_scales[m0 + r]);
            float *out = (float *)e->C + (m0 + r) * e->ldc + n0;
            __m256 v0 = _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(tile + 16 * r)));
            __m256 v1 = _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(tile + 16 * r + 8)));
            v0 = _mm256_mul_ps(_mm256_mul_ps(v0, as), s0);
            v1 = _mm256_mul_ps(_mm256_mul_ps(v1, as), s1);
            if (W->bias) v0 = _mm256_add_ps(v0, b0), v1 = _mm256_add_ps(v1, b1);
            store_f32(out, v0, QD_MIN(nv, 8));
            if (nv > 8) store_f32(out + 8, v1, nv - 8);
        }
    } else if (e->kind == OUT_S32) {
        for (int64_t r = 0; r < rows; r++) {
            int32_t *out = (int32_t *)e->C + (m0 + r) * e->ldc + n0;
            store_s32(out, _mm256_load_si256((const __m256i *)(tile + 16 * r)), QD_MIN(nv, 8));
            if (nv > 8) store_s32(out + 8, _mm256_load_si256((const __m256i *)(tile + 16 * r + 8)), nv - 8);
        }
    } else {
        const rq8 p0 = rq8_load(e->rq, n0, QD_MIN(nv, 8));
        const rq8 p1 = rq8_load(e->rq, n0 + 8, QD_MAX(nv - 8, 0));
        const __m256i lo = _mm256_set1_epi32(-65536), hi = _mm256_set1_epi32(65536);
        const __m256i zp = _mm256_set1_epi32(e->rq->zero_point);
        for (int64_t r = 0; r < rows; r++) {
            __m256i v0 = requant8(_mm256_load_si256((const __m256i *)(tile + 16 * r)), &p0);
            __m256i v1 = requant8(_mm256_load_si256((const __m256i *)(tile + 16 * r + 8)), &p1);
            /* clamp first so that adding |zero_point| <= 2^15 cannot wrap; the final clamp to
             * [-128, 127] gives what clamping r + zero_point in 64 bits gives */
            v0 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v0, lo), hi), zp);
            v1 = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(v1, lo), hi), zp);
            __m256i w = _mm256_packs_epi32(v0, v1); /* int16, lanes 0-3 8-11 | 4-7 12-15 */
            __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            b = _mm_shuffle_epi32(b, _MM_SHUFFLE(3, 1, 2, 0));
            int8_t *out = (int8_t *)e->C + (m0 + r) * e->ldc + n0;
            if (nv == 16) {
                _mm_storeu_si128((__m128i *)out, b);
            } else {
                int8_t tmp[16];
                _mm_storeu_si128((__m128i *)tmp, b);
                memcpy(out, tmp, (size_t)nv);
            }
        }
    }
}

/* ---- driver ----------------------------------------------------------------------------------- */

static void gemm_s8(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, const epilogue *e)
{
    QD_ASSERT(M >= 0 && lda >= W->K && e->ldc >= W->N);
    if (M == 0) return;
    const int64_t kp2 = W->kp2;
    /* rows per block: a multiple of MR, the packed int16 block within A_BLOCK_BYTES, blocks of
     * about equal size (a thin last block would stream all the weights for a few rows) */
    const int64_t mpan = (M + MR - 1) / MR;
    int64_t bpan = QD_MAX(A_BLOCK_BYTES / (kp2 * 4 * MR), (int64_t)1);         /* panels per block */
    bpan = (mpan + (mpan + bpan - 1) / bpan - 1) / ((mpan + bpan - 1) / bpan); /* balanced blocks */
    const int64_t mc = bpan * MR;
    int32_t *apack = qd_avx2_workspace((size_t)(mc / MR * kp2 * MR + 8) * sizeof(int32_t));
    int32_t *tile = qd_avx2_workspace((size_t)(mc * 16) * sizeof(int32_t));
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0), npan = (rows + MR - 1) / MR;
        for (int64_t i = 0; i < npan; i++)
            pack_a_panel(A + (m0 + MR * i) * lda, lda, QD_MIN((int64_t)MR, rows - MR * i), W->K, kp2,
                         apack + i * kp2 * MR);
        for (int64_t p = 0; p < W->np; p++) {
            const int16_t *bp = W->w + p * kp2 * 32;
            for (int64_t j0 = 0; j0 < kp2; j0 += KCP) {
                const int64_t kc = QD_MIN((int64_t)KCP, kp2 - j0);
                /* the weight slice used next (the panels' first touch comes from L3 or memory) is
                 * prefetched a share at a time while the row panels run on this one */
                const int16_t *next = j0 + KCP < kp2 ? bp + (j0 + KCP) * 32 : p + 1 < W->np ? bp + kp2 * 32 : NULL;
                const int64_t next_lines = next ? QD_MIN((int64_t)KCP, kp2 - (j0 + KCP < kp2 ? j0 + KCP : 0)) : 0;
                const int64_t share = (next_lines + npan - 1) / npan;
                for (int64_t i = 0; i < npan; i++) {
                    for (int64_t l = i * share; l < QD_MIN((i + 1) * share, next_lines); l++)
                        _mm_prefetch((const char *)(next + 32 * l), _MM_HINT_T0);
                    micro_s8(kc, apack + i * kp2 * MR + j0 * MR, bp + j0 * 32, tile + i * MR * 16, j0 > 0);
                }
            }
            run_epilogue(e, W, tile, m0, rows, p);
        }
    }
    free(apack);
    free(tile);
}

static void avx2_gemm_s8_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                             float *C, int64_t ldc)
{
    const epilogue e = {OUT_F32, a_scales, NULL, C, ldc};
    gemm_s8(A, lda, M, W, &e);
}

static void avx2_gemm_s8_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, int32_t *C, int64_t ldc)
{
    const epilogue e = {OUT_S32, NULL, NULL, C, ldc};
    gemm_s8(A, lda, M, W, &e);
}

static void avx2_gemm_s8_s8(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w8 *W, const qd_requant *rq,
                            int8_t *C, int64_t ldc)
{
    QD_ASSERT(rq && rq->mult && rq->shift);
    QD_ASSERT(rq->zero_point >= -32768 && rq->zero_point <= 32768);
    for (int64_t n = 0; n < W->N; n++) {
        QD_ASSERT(rq->mult[n] >= 0 && rq->shift[n] > -(1 << 30) && rq->shift[n] < (1 << 30));
        if (rq->bias) QD_ASSERT(rq->bias[n] > -(1 << 30) && rq->bias[n] < (1 << 30));
    }
    const epilogue e = {OUT_S8, NULL, rq, C, ldc};
    gemm_s8(A, lda, M, W, &e);
}

void qd_kernels_fill_avx2_gemm(qd_kernel_table *t)
{
    t->quantize_rows_s8 = avx2_quantize_rows_s8;
    t->gemm_s8_f32 = avx2_gemm_s8_f32;
    t->gemm_s8_s32 = avx2_gemm_s8_s32;
    t->gemm_s8_s8 = avx2_gemm_s8_s8;
    qd_kernels_avx2_gemm_w4(t);
}

#endif /* x86 */
