/* kernels/avx2/gemm_u8_24_ymm.h — the 256-bit body of the engine's 2:4 sparse int8 GEMM
 * (kernels/gemm_u8_24.h), shared by the AVX2 version (kernels/avx2/gemm_u8_24.c) and the AVX-VNNI
 * one (kernels/avxvnni/gemm_u8_24.c); they differ only in QD_U24_DOT, the step that adds four
 * u8 x s8 products into each int32 lane. Both give the bits of kernels/ref/gemm_u8_24.c.
 *
 * Per step of 8 k and panel of 16 channels the 16 position bytes (2 bits per kept value) are
 * widened into vpshufb indices without VBMI: each byte s becomes a 16-bit word, t = s | s << 6
 * holds the first group's two positions in bits 0-1 and 8-9, u = s >> 4 | s << 2 the second
 * group's; masked to 2 bits and 4 added for the second group, then interleaved into one dword per
 * channel (vpermq first, so that the in-lane unpacks give channels 0-7 and 8-15 in order). Per row
 * the 8 activation bytes are broadcast to every qword, vpshufb picks each channel's 4 kept ones and
 * QD_U24_DOT multiplies them by the 4 kept values: 80 weight bytes per 16 channels and 8 k
 * instead of 128. Exactness as the dense kernels: u in [0, 255] against w in [-128, 127], comp =
 * 128 Σ w subtracted at the end.
 *
 * Microkernel up to 4 rows x 16 channels (8 ymm accumulators, 4 for the panel's values and
 * indices); rows in blocks inside the panel loop, so a sentence reads every weight once per call;
 * larger M in row chunks of ~256 KiB.
 *
 * The including file defines QD_U24_DOT(acc, x, w) and QD_U24_FN (the function's name), and is
 * compiled with -mavx2 (+ -mavxvnni). */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_u8_24.h"
#include "kernels/kernels.h"

#define QD_U24_CHUNK (256 << 10)
#define QD_U24_MR    4

static inline __m256i u24_lanes_below(int64_t rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline void u24_store8(float *out, __m256 v, int64_t nv)
{
    if (nv >= 8)
        _mm256_storeu_ps(out, v);
    else if (nv > 0)
        _mm256_maskstore_ps(out, u24_lanes_below(nv), v);
}

/* the 8 activation bytes of step s in every qword; past K zeros (0 times the padded value 0) */
static inline __m256i u24_act8(const uint8_t *a, int64_t s, int64_t K)
{
    uint64_t v = 0;
    const int64_t k0 = 8 * s;
    memcpy(&v, a + k0, (size_t)(K - k0 >= 8 ? 8 : K - k0));
    return _mm256_set1_epi64x((long long)v);
}

/* the vpshufb indices of channels 0-7 (*lo) and 8-15 (*hi) from the panel's 16 position bytes */
static inline void u24_widen(const uint8_t *sel, __m256i *lo, __m256i *hi)
{
    const __m256i three = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    /* words of channels 0-3, 8-11 | 4-7, 12-15: the in-lane unpacks then give 0-7 and 8-15 */
    const __m256i s = _mm256_permute4x64_epi64(_mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)sel)), 0xD8);
    const __m256i t = _mm256_and_si256(_mm256_or_si256(s, _mm256_slli_epi16(s, 6)), three);
    const __m256i u = _mm256_or_si256(
        _mm256_and_si256(_mm256_or_si256(_mm256_srli_epi16(s, 4), _mm256_slli_epi16(s, 2)), three), four);
    *lo = _mm256_unpacklo_epi16(t, u);
    *hi = _mm256_unpackhi_epi16(t, u);
}

static inline __attribute__((always_inline)) void u24_micro(const int MR, const uint8_t *a, int64_t lda,
                                                            const qd_gemm_u24 *W, int64_t p, const float *as, float *C,
                                                            int64_t ldc, int64_t nv)
{
    const int64_t ns = W->ns, K = W->K, full = K / 8;
    __m256i acc[QD_U24_MR][2];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    const int8_t *v0 = W->val + p * ns * 64;
    const uint8_t *s0 = W->sel + p * ns * 16;
    for (int64_t s = 0; s < ns; s++) {
        __m256i ix[2];
        const __m256i w0 = _mm256_load_si256((const __m256i *)(v0 + s * 64)),
                      w1 = _mm256_load_si256((const __m256i *)(v0 + s * 64 + 32));
        u24_widen(s0 + s * 16, &ix[0], &ix[1]);
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256i x;
            if (s < full) {
                uint64_t u;
                memcpy(&u, a + r * lda + 8 * s, 8);
                x = _mm256_set1_epi64x((long long)u);
            } else {
                x = u24_act8(a + r * lda, s, K);
            }
            QD_U24_DOT(acc[r][0], _mm256_shuffle_epi8(x, ix[0]), w0);
            QD_U24_DOT(acc[r][1], _mm256_shuffle_epi8(x, ix[1]), w1);
        }
    }
    /* ((float)(acc - comp) * a_scale) * w_scale (+ bias), the reference's order */
    const int64_t n = 16 * p;
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i cp = _mm256_load_si256((const __m256i *)(W->comp + n + 8 * h));
        const __m256 sc = _mm256_load_ps(W->scales + n + 8 * h);
        const __m256 bi = W->bias ? _mm256_load_ps(W->bias + n + 8 * h) : _mm256_setzero_ps();
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            __m256 v = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[r][h], cp));
            v = _mm256_mul_ps(_mm256_mul_ps(v, _mm256_set1_ps(as[r])), sc);
            if (W->bias) v = _mm256_add_ps(v, bi);
            u24_store8(C + r * ldc + n + 8 * h, v, nv - 8 * h);
        }
    }
}

static void u24_micro_any(int mr, const uint8_t *a, int64_t lda, const qd_gemm_u24 *W, int64_t p, const float *as,
                          float *C, int64_t ldc, int64_t nv)
{
    switch (mr) {
    case 1: u24_micro(1, a, lda, W, p, as, C, ldc, nv); break;
    case 2: u24_micro(2, a, lda, W, p, as, C, ldc, nv); break;
    case 3: u24_micro(3, a, lda, W, p, as, C, ldc, nv); break;
    case 4: u24_micro(4, a, lda, W, p, as, C, ldc, nv); break;
    default: QD_ASSERT(0);
    }
}

static void QD_U24_FN(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W, int64_t n0,
                      int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    const int64_t p1 = (n1 + 15) / 16, mc = QD_MAX((int64_t)QD_U24_MR, QD_U24_CHUNK / W->K / QD_U24_MR * QD_U24_MR);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0), nblk = (rows + QD_U24_MR - 1) / QD_U24_MR;
        for (int64_t p = n0 / 16; p < p1; p++) {
            const int64_t nv = QD_MIN((int64_t)16, n1 - 16 * p);
            /* rows in blocks of at most 4, as even as possible (25 rows: 7 blocks of 3 or 4) */
            for (int64_t i = 0, m = m0; i < nblk; i++) {
                const int64_t mr = (rows * (i + 1)) / nblk - (rows * i) / nblk;
                u24_micro_any((int)mr, A + m * lda, lda, W, p, a_scales + m, C + m * ldc, ldc, nv);
                m += mr;
            }
        }
    }
}
