/* AVX-512 VNNI version of the engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h), bit-identical
 * to kernels/ref/gemm_u8_24.c and so to the dense qd_gemm_u8_f32.
 *
 * Per step of 8 k and panel of 16 channels: the 16 position bytes are widened into vpshufb
 * indices (vpmovzxwq puts the bytes of channels 2i and 2i + 1 into qword i, vpmultishiftqb pulls
 * out the 2-bit fields, one ternary-logic op masks them and adds 4 for the second group); per row
 * the 8 activation bytes are broadcast to every qword, vpshufb picks each channel's 4 kept ones
 * and one vpdpbusd multiplies them by the 4 kept values: half the vpdpbusd of the dense kernel for
 * the same k, 80 weight bytes for 8 k instead of 128. Exactness as the dense kernel: u in [0, 255]
 * against w in [-128, 127], comp = 128 Σ w subtracted at the end.
 *
 * Microkernel 8 rows x 2 panels (16 zmm accumulators); rows in blocks inside the panel loop, so
 * small M (a sentence) reads every weight once per call; larger M in row chunks of ~256 KiB.
 *
 * Compiled with -mavx512f/bw/vl/vnni/vbmi (CMakeLists.txt gives this file VBMI on its own, so that
 * the other VNNI files stay usable on CPUs without it); reached only after the CPUID checks. A
 * compiler without the flags builds a stub. */
#include <stdint.h>
#include <string.h>

#include "kernels/gemm_u8_24.h"
#include "kernels/kernels.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)
#include <immintrin.h>

#define A_CHUNK (256 << 10)

static inline __mmask16 below(int64_t rem) { return (__mmask16)(rem >= 16 ? 0xFFFF : (1u << rem) - 1u); }

/* the 8 activation bytes of step s in every qword; past K zeros (0 times the padded value 0) */
static inline __m512i act8(const uint8_t *a, int64_t s, int64_t K)
{
    uint64_t v = 0;
    const int64_t k0 = 8 * s;
    memcpy(&v, a + k0, (size_t)(K - k0 >= 8 ? 8 : K - k0));
    return _mm512_set1_epi64((long long)v);
}

static inline __m512i widen(const uint8_t *sel, __m512i ctl, __m512i three, __m512i four)
{
    const __m512i q = _mm512_cvtepu16_epi64(_mm_loadu_si128((const __m128i *)sel));
    /* (fields & 3) | {0, 0, 4, 4} per channel */
    return _mm512_ternarylogic_epi32(_mm512_multishift_epi64_epi8(ctl, q), three, four, 0xEA);
}

static inline __attribute__((always_inline)) void micro(const int MR, const int NP, const uint8_t *a, int64_t lda,
                                                        const qd_gemm_u24 *W, int64_t p0, const float *as, float *C,
                                                        int64_t ldc, int64_t nv_last)
{
    const int64_t ns = W->ns, K = W->K, full = K / 8;
    const __m512i ctl = _mm512_set1_epi64(0x0E0C0A0806040200ll), three = _mm512_set1_epi8(3),
                  four = _mm512_set1_epi32(0x04040000);
    __m512i acc[8][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_si512();
    const int8_t *v0 = W->val + p0 * ns * 64;
    const uint8_t *s0 = W->sel + p0 * ns * 16;
    for (int64_t s = 0; s < ns; s++) {
        __m512i w[2], ix[2];
#pragma GCC unroll 2
        for (int p = 0; p < NP; p++) {
            w[p] = _mm512_load_si512((const void *)(v0 + (p * ns + s) * 64));
            ix[p] = widen(s0 + (p * ns + s) * 16, ctl, three, four);
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512i x;
            if (s < full) {
                uint64_t u;
                memcpy(&u, a + r * lda + 8 * s, 8);
                x = _mm512_set1_epi64((long long)u);
            } else {
                x = act8(a + r * lda, s, K);
            }
#pragma GCC unroll 2
            for (int p = 0; p < NP; p++)
                acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], _mm512_shuffle_epi8(x, ix[p]), w[p]);
        }
    }
    /* ((float)(acc - comp) * a_scale) * w_scale (+ bias), the reference's order */
#pragma GCC unroll 2
    for (int p = 0; p < NP; p++) {
        const int64_t n = 16 * (p0 + p);
        const __m512i cp = _mm512_load_si512((const void *)(W->comp + n));
        const __m512 sc = _mm512_load_ps(W->scales + n);
        const __m512 bi = W->bias ? _mm512_load_ps(W->bias + n) : _mm512_setzero_ps();
        const __mmask16 mk = p == NP - 1 ? below(nv_last) : 0xFFFF;
#pragma GCC unroll 8
        for (int r = 0; r < MR; r++) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][p], cp));
            v = _mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(as[r])), sc);
            if (W->bias) v = _mm512_add_ps(v, bi);
            _mm512_mask_storeu_ps(C + r * ldc + n, mk, v);
        }
    }
}

#define QD_U24_CASE(mr, np)                           \
    case (mr)*4 + (np):                               \
        micro(mr, np, a, lda, W, p0, as, C, ldc, nv); \
        break;
#define QD_U24_ROW(mr) QD_U24_CASE(mr, 1) QD_U24_CASE(mr, 2)

static void micro_any(int mr, int np, const uint8_t *a, int64_t lda, const qd_gemm_u24 *W, int64_t p0, const float *as,
                      float *C, int64_t ldc, int64_t nv)
{
    switch (mr * 4 + np) {
        QD_U24_ROW(1)
        QD_U24_ROW(2)
        QD_U24_ROW(3)
        QD_U24_ROW(4)
        QD_U24_ROW(5)
        QD_U24_ROW(6)
        QD_U24_ROW(7)
        QD_U24_ROW(8)
    default: QD_ASSERT(0);
    }
}

static void vnni_u8w24_f32(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_u24 *W,
                           int64_t n0, int64_t n1, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= n1);
    QD_ASSERT(n0 >= 0 && n0 % 16 == 0 && n0 <= n1 && n1 <= W->N && (n1 % 16 == 0 || n1 == W->N));
    const int64_t p1 = (n1 + 15) / 16, mc = QD_MAX((int64_t)8, A_CHUNK / W->K / 8 * 8);
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0), nblk = (rows + 7) / 8;
        for (int64_t p = n0 / 16; p < p1; p += 2) {
            const int np = (int)QD_MIN((int64_t)2, p1 - p);
            const int64_t nv = QD_MIN((int64_t)16, n1 - 16 * (p + np - 1));
            /* rows in blocks of at most 8 and of even size (25 rows: 7 + 6 + 6 + 6) */
            for (int64_t i = 0, m = m0; i < nblk; i++) {
                const int64_t mr = (rows * (i + 1)) / nblk - (rows * i) / nblk;
                micro_any((int)mr, np, A + m * lda, lda, W, p, a_scales + m, C + m * ldc, ldc, nv);
                m += mr;
            }
        }
    }
}

int qd_gemm_u24_fill_vnni512(qd_gemm_u24_fns *t)
{
    t->isa = "avx512vnni";
    t->f32 = vnni_u8w24_f32;
    return 1;
}

#else

int qd_gemm_u24_fill_vnni512(qd_gemm_u24_fns *t)
{
    (void)t;
    return 0;
}

#endif
