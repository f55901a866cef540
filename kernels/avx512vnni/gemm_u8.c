/* AVX-512 VNNI GEMMs of the inference path (kernels/gemm.h): u8-coded activations x int8 or 4-bit
 * weights in the byte layout of kernels/gemm_pack.h, bit-identical to kernels/ref/gemm.c.
 *
 * Exactness: vpdpbusd multiplies unsigned by signed bytes and adds four products into an int32
 * lane without any int16 intermediate (no saturation: the vpmaddubsw trap does not exist here)
 * and without saturating the sum. int8: u = a + 128 in [1, 255] against w = q - 128 in
 * [-128, 127]: |sum| <= 255 * 128 * K < 2^31 for K <= 65536; sum - comp[n] (comp = 128 Σ w) is
 * Σ a w exactly. 4-bit: q - z in [-15, 15] is formed bytewise in registers, the group's
 * comp = 128 Σ (q - z) is subtracted the same way. Integer sums are exact in any order; the float
 * epilogues apply the reference's operations in its order, lanes being output channels.
 *
 * Microkernels: int8 8 rows x 3 panels (48 channels, 24 zmm accumulators) over the whole K, per
 * four k three weight loads, eight dword broadcasts, 24 vpdpbusd; 4-bit 8 rows x 1 panel, per
 * eight k one 64-byte load unpacked into two operands, 16 broadcasts, 16 vpdpbusd, and per group
 * the int32 sums folded into float accumulators. Small M (a sentence at batch 1) reads every
 * weight once per call: row blocks run inside the panel loop, the rows stay in L1/L2. Larger M
 * is cut into row chunks of about 256 KiB first.
 *
 * Compiled with -mavx512f/dq/bw/vl/vnni; reached through the dispatch table after the CPUID
 * check. Without those flags the file is a stub and the table is not offered. */
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/infer_isa.h"
#include "kernels/kernels.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>

#define A_CHUNK (256 << 10)

static inline __mmask16 below(int64_t rem) { return (__mmask16)(rem >= 16 ? 0xFFFF : (1u << rem) - 1u); }

static inline int32_t dword_at(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* the last k of a row when K % 4 != 0: rem bytes, zero above (zero u8 times any weight is 0) */
static inline int32_t dword_tail(const uint8_t *p, int64_t rem)
{
    uint8_t b[4] = {0, 0, 0, 0};
    memcpy(b, p, (size_t)rem);
    return dword_at(b);
}

/* ---- int8 weights ------------------------------------------------------------------------------ */

static inline __attribute__((always_inline)) void micro_u8(const int MR, const int NP, const uint8_t *a, int64_t lda,
                                                           int64_t K, const int8_t *b, int64_t ps, const int32_t *comp,
                                                           const float *ws, const float *bias, const float *as,
                                                           float *C, int64_t ldc, int64_t nv_last)
{
    __m512i acc[8][3];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_si512();
    const int64_t nq = K / 4;
    for (int64_t j = 0; j < nq; j++) {
        __m512i w[3];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) w[p] = _mm512_load_si512((const void *)(b + p * ps + 64 * j));
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512i x = _mm512_set1_epi32(dword_at(a + r * lda + 4 * j));
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], x, w[p]);
        }
    }
    if (K % 4) {
        __m512i w[3];
#pragma GCC unroll 3
        for (int p = 0; p < NP; p++) w[p] = _mm512_load_si512((const void *)(b + p * ps + 64 * nq));
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            const __m512i x = _mm512_set1_epi32(dword_tail(a + r * lda + 4 * nq, K % 4));
#pragma GCC unroll 3
            for (int p = 0; p < NP; p++) acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], x, w[p]);
        }
    }
    /* ((float)(acc - comp) * a_scale) * w_scale (+ bias) */
#pragma GCC unroll 3
    for (int p = 0; p < NP; p++) {
        const __m512i cp = _mm512_load_si512((const void *)(comp + 16 * p));
        const __m512 sc = _mm512_load_ps(ws + 16 * p);
        const __m512 bi = bias ? _mm512_load_ps(bias + 16 * p) : _mm512_setzero_ps();
        const __mmask16 mk = p == NP - 1 ? below(nv_last) : 0xFFFF;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][p], cp));
            v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(as[r])), sc);
            if (bias) v = _mm512_add_ps(v, bi);
            _mm512_mask_storeu_ps(C + r * ldc + 16 * p, mk, v);
        }
    }
}

#define QD_U8_CASE(mr, np)                                                  \
    case (mr)*4 + (np):                                                     \
        micro_u8(mr, np, a, lda, K, b, ps, comp, ws, bias, as, C, ldc, nv); \
        break;
#define QD_U8_ROW(mr) QD_U8_CASE(mr, 1) QD_U8_CASE(mr, 2) QD_U8_CASE(mr, 3)

static void micro_u8_any(int mr, int np, const uint8_t *a, int64_t lda, int64_t K, const int8_t *b, int64_t ps,
                         const int32_t *comp, const float *ws, const float *bias, const float *as, float *C,
                         int64_t ldc, int64_t nv)
{
    switch (mr * 4 + np) {
        QD_U8_ROW(1)
        QD_U8_ROW(2)
        QD_U8_ROW(3)
        QD_U8_ROW(4)
        QD_U8_ROW(5)
        QD_U8_ROW(6)
        QD_U8_ROW(7)
        QD_U8_ROW(8)
    default: QD_ASSERT(0);
    }
}

void qd_vnni512_gemm_u8_rows(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                             int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    const int64_t K = W->K, ps = W->kq * 64, p1 = (n1 + 15) / 16;
    const int64_t mc = QD_MAX((int64_t)8, A_CHUNK / K / 8 * 8);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0);
        for (int64_t p = n0 / 16; p < p1; p += 3) {
            const int np = (int)QD_MIN((int64_t)3, p1 - p);
            const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * (p + np - 1));
            const int8_t *b = W->v + p * ps;
            const float *bias = W->bias ? W->bias + 16 * p : NULL;
            /* rows in blocks of at most 8 and of even size: 25 rows as 7 + 6 + 6 + 6, not 8 + 8 + 8 + 1 */
            const int64_t nblk = (rows + 7) / 8;
            for (int64_t i = 0, m = m0; i < nblk; i++) {
                const int64_t mr = (rows * (i + 1)) / nblk - (rows * i) / nblk;
                micro_u8_any((int)mr, np, A + m * lda, lda, K, b, ps, W->comp + 16 * p, W->scales + 16 * p, bias,
                             a_scales + m, C + m * ldc + 16 * p, ldc, nv);
                m += mr;
            }
        }
    }
}

static void vnni512_gemm_u8_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                                int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    if (W->layout != QD_GEMM_LAYOUT_VNNI) { /* packed for the AVX2 table */
        qd_kernels_table("avx2")->gemm_u8_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    qd_vnni512_gemm_u8_rows(A, lda, a_scales, M, W, n0, n1, C, ldc);
}

/* ---- 4-bit weights ------------------------------------------------------------------------------ */

/* rows [0, MR) of one panel: per group G / 8 steps of 8 k, then fma(scale, (float)(acc - comp)) */
static inline __attribute__((always_inline)) void micro_w4(const int MR, const uint8_t *a, int64_t lda,
                                                           const qd_gemm_w4 *W, int64_t p, const float *as, float *C,
                                                           int64_t ldc, int64_t nv)
{
    const int64_t ng = W->ng, spg = W->G / 8, K = W->K;
    const uint8_t *b = W->q + p * (K / 8) * 64;
    const __m512i m0f = _mm512_set1_epi8(0x0f), rep = _mm512_set1_epi32(0x01010101);
    __m512 f[8];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) f[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const int64_t o = (p * ng + g) * 16;
        const __m512i zb = _mm512_mullo_epi32(_mm512_load_si512((const void *)(W->zeros + o)), rep);
        const int64_t s1 = QD_MIN((g + 1) * spg, K / 8);
        /* the sums start at -comp: after the group, acc = sum (a + 128)(q - z) - comp = sum a (q - z) */
        const __m512i ncp = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_load_si512((const void *)(W->comp + o)));
        __m512i acc[8];
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) acc[r] = ncp;
        for (int64_t s = g * spg; s < s1; s++) {
            const __m512i raw = _mm512_load_si512((const void *)(b + 64 * s));
            const __m512i lo = _mm512_sub_epi8(_mm512_and_si512(raw, m0f), zb);
            const __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(raw, 4), m0f), zb);
#pragma GCC unroll 8
            for (int r = 0; r < MR; r++) {
                const uint8_t *ar = a + r * lda + 8 * s;
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(dword_at(ar)), lo);
                acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(dword_at(ar + 4)), hi);
            }
        }
        const __m512 sc = _mm512_load_ps(W->scales + o);
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) f[r] = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(acc[r]), f[r]);
    }
    const __m512 bi = W->bias ? _mm512_load_ps(W->bias + 16 * p) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
        __m512 v = _mm512_mul_ps(f[r], _mm512_set1_ps(as[r]));
        if (W->bias) v = _mm512_add_ps(v, bi);
        _mm512_mask_storeu_ps(C + r * ldc, below(nv), v);
    }
}

static void micro_w4_any(int mr, const uint8_t *a, int64_t lda, const qd_gemm_w4 *W, int64_t p, const float *as,
                         float *C, int64_t ldc, int64_t nv)
{
    switch (mr) {
    case 1: micro_w4(1, a, lda, W, p, as, C, ldc, nv); break;
    case 2: micro_w4(2, a, lda, W, p, as, C, ldc, nv); break;
    case 3: micro_w4(3, a, lda, W, p, as, C, ldc, nv); break;
    case 4: micro_w4(4, a, lda, W, p, as, C, ldc, nv); break;
    case 5: micro_w4(5, a, lda, W, p, as, C, ldc, nv); break;
    case 6: micro_w4(6, a, lda, W, p, as, C, ldc, nv); break;
    case 7: micro_w4(7, a, lda, W, p, as, C, ldc, nv); break;
    case 8: micro_w4(8, a, lda, W, p, as, C, ldc, nv); break;
    default: QD_ASSERT(0);
    }
}

static void vnni512_gemm_u8w4_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                                  int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    if (W->layout != QD_GEMM_LAYOUT_VNNI) { /* G or K not a multiple of 8, or packed for AVX2 */
        qd_kernels_table("avx2")->gemm_u8w4_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
        return;
    }
    const int64_t mc = QD_MAX((int64_t)8, A_CHUNK / W->K / 8 * 8);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0);
        for (int64_t p = n0 / 16; p < (n1 + 15) / 16; p++) {
            const int64_t nv = QD_MIN((int64_t)16, W->N - 16 * p);
            const int64_t nblk = (rows + 7) / 8; /* blocks of even size, as above */
            for (int64_t i = 0, m = m0; i < nblk; i++) {
                const int64_t mr = (rows * (i + 1)) / nblk - (rows * i) / nblk;
                micro_w4_any((int)mr, A + m * lda, lda, W, p, a_scales + m, C + m * ldc + 16 * p, ldc, nv);
                m += mr;
            }
        }
    }
}

int qd_kernels_fill_avx512vnni(qd_kernel_table *t)
{
    t->layout = QD_GEMM_LAYOUT_VNNI;
    t->gemm_u8_f32 = vnni512_gemm_u8_f32;
    t->gemm_u8w4_f32 = vnni512_gemm_u8w4_f32;
    return 1;
}

#else /* built without the AVX-512 VNNI flags */

void qd_vnni512_gemm_u8_rows(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w8 *W,
                             int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    qd_ref_gemm_u8_f32(A, lda, a_scales, M, W, n0, n1, C, ldc);
}

int qd_kernels_fill_avx512vnni(qd_kernel_table *t)
{
    (void)t;
    return 0;
}

#endif
