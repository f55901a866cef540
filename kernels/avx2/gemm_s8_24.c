/* AVX2 2:4 sparse int8 GEMM (kernels/gemm_s8_24.h), bit-identical to kernels/ref/gemm_s8_24.c.
 *
 * Per group of 4 k only the 2 kept products are computed: the int16 activations of two groups
 * (16 bytes) are broadcast to both 128-bit lanes, one vpshufb with the channel's packed selector
 * puts each channel's two activations into its dword, and one vpmaddwd against the two kept int16
 * values adds both products into the channel's int32 lane. For 16 channels and one row that is
 * 2 vpshufb + 2 vpmaddwd + 2 vpaddd per 4 k, where the dense int8 kernel needs 4 vpmaddwd + 4
 * vpaddd. Exactness as in the dense kernel: int16 x int16 pairs (|pair| <= 2^15) into int32 lanes,
 * accumulators below K * 2^14 <= 2^30; integer sums are exact in any order, and the float epilogue
 * is the reference's expression, so blocking and row counts change no bit.
 *
 * Blocking: row blocks of up to MC rows are widened to int16 (zero-padded to whole 4-row tiles and
 * to the packed group count); for each 16-channel panel the groups run in K blocks of KBG (the
 * panel's 12 KiB slice of values and selectors stays in L1 while the 4 x 16 microkernel walks the
 * row block); partial sums live in an int32 tile [MC][16].
 *
 * Compiled with -mavx2 -mfma -mf16c, reached only after the CPUID check; ISO C mode keeps FP
 * contraction off. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_s8_24.h"
#include "kernels/avx2/avx2_util.h"
#include "kernels/kernels.h"

#define MR            4
#define KBG           96          /* groups of 4 k per K block (even): 96 x 128 B = 12 KiB */
#define A_BLOCK_BYTES (256 << 10) /* widened row block, kept in L2 */

/* acc[4][16] (+)= rows a[0..3] (stride lda16 int16) x groups [g0, g1) of one panel */
static void micro_4x16(const int16_t *a, int64_t lda16, const int16_t *val, const uint8_t *sel, int64_t g0, int64_t g1,
                       int32_t *acc, int first)
{
    __m256i c00, c01, c10, c11, c20, c21, c30, c31;
    if (first) {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = _mm256_setzero_si256();
    } else {
        c00 = _mm256_load_si256((const __m256i *)(acc + 0));
        c01 = _mm256_load_si256((const __m256i *)(acc + 8));
        c10 = _mm256_load_si256((const __m256i *)(acc + 16));
        c11 = _mm256_load_si256((const __m256i *)(acc + 24));
        c20 = _mm256_load_si256((const __m256i *)(acc + 32));
        c21 = _mm256_load_si256((const __m256i *)(acc + 40));
        c30 = _mm256_load_si256((const __m256i *)(acc + 48));
        c31 = _mm256_load_si256((const __m256i *)(acc + 56));
    }
    for (int64_t g = g0; g < g1; g += 2) {
        const __m256i b0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + g * 4)));
        const __m256i b1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + lda16 + g * 4)));
        const __m256i b2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + 2 * lda16 + g * 4)));
        const __m256i b3 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(a + 3 * lda16 + g * 4)));
        for (int h = 0; h < 2; h++) {
            const uint8_t *s = sel + (g + h) * 64;
            const int16_t *v = val + (g + h) * 32;
            const __m256i s0 = _mm256_load_si256((const __m256i *)s), s1 = _mm256_load_si256((const __m256i *)(s + 32));
            const __m256i w0 = _mm256_load_si256((const __m256i *)v), w1 = _mm256_load_si256((const __m256i *)(v + 16));
            c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(_mm256_shuffle_epi8(b0, s0), w0));
            c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(_mm256_shuffle_epi8(b0, s1), w1));
            c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(_mm256_shuffle_epi8(b1, s0), w0));
            c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(_mm256_shuffle_epi8(b1, s1), w1));
            c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(_mm256_shuffle_epi8(b2, s0), w0));
            c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(_mm256_shuffle_epi8(b2, s1), w1));
            c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(_mm256_shuffle_epi8(b3, s0), w0));
            c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(_mm256_shuffle_epi8(b3, s1), w1));
        }
    }
    _mm256_store_si256((__m256i *)(acc + 0), c00);
    _mm256_store_si256((__m256i *)(acc + 8), c01);
    _mm256_store_si256((__m256i *)(acc + 16), c10);
    _mm256_store_si256((__m256i *)(acc + 24), c11);
    _mm256_store_si256((__m256i *)(acc + 32), c20);
    _mm256_store_si256((__m256i *)(acc + 40), c21);
    _mm256_store_si256((__m256i *)(acc + 48), c30);
    _mm256_store_si256((__m256i *)(acc + 56), c31);
}

/* rows [0, mc) of A widened into a16 [mcp][kp] (zeros past K and past mc) */
static void widen_rows(const int8_t *A, int64_t lda, int64_t mc, int64_t mcp, int64_t K, int64_t kp, int16_t *a16)
{
    for (int64_t r = 0; r < mcp; r++) {
        int16_t *d = a16 + r * kp;
        int64_t k = 0;
        if (r < mc) {
            const int8_t *s = A + r * lda;
            for (; k + 16 <= K; k += 16)
                _mm256_storeu_si256((__m256i *)(d + k),
                                    _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(s + k))));
            for (; k < K; k++) d[k] = s[k];
        }
        for (; k < kp; k++) d[k] = 0;
    }
}

typedef void (*epilogue_fn)(const int32_t *tile, int64_t rows, int64_t m0, int64_t n0, int64_t nn, const qd_gemm_w24 *W,
                            const float *a_scales, void *C, int64_t ldc);

static void epi_f32(const int32_t *tile, int64_t rows, int64_t m0, int64_t n0, int64_t nn, const qd_gemm_w24 *W,
                    const float *a_scales, void *Cv, int64_t ldc)
{
    float *C = Cv;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < nn; c++) {
            float v = (float)tile[r * 16 + c] * a_scales[m0 + r] * W->scales[n0 + c];
            if (W->bias) v = v + W->bias[n0 + c];
            C[(m0 + r) * ldc + n0 + c] = v;
        }
}

static void epi_s32(const int32_t *tile, int64_t rows, int64_t m0, int64_t n0, int64_t nn, const qd_gemm_w24 *W,
                    const float *a_scales, void *Cv, int64_t ldc)
{
    (void)W;
    (void)a_scales;
    int32_t *C = Cv;
    for (int64_t r = 0; r < rows; r++) memcpy(C + (m0 + r) * ldc + n0, tile + r * 16, (size_t)nn * sizeof(int32_t));
}

static void run(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, void *C,
                int64_t ldc, epilogue_fn epi)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    if (M == 0) return;
    const int64_t kp = W->ngp * 4;
    int64_t mc_max = A_BLOCK_BYTES / (int64_t)(kp * sizeof(int16_t)) / MR * MR;
    if (mc_max < MR) mc_max = MR;
    const int64_t mcap = QD_MIN(mc_max, (M + MR - 1) / MR * MR);
    int16_t *a16 = qd_avx2_workspace((size_t)(mcap * kp) * sizeof(int16_t));
    int32_t *tile = qd_avx2_workspace((size_t)(mcap * 16) * sizeof(int32_t));
    for (int64_t m0 = 0; m0 < M; m0 += mcap) {
        const int64_t mc = QD_MIN(mcap, M - m0), mcp = (mc + MR - 1) / MR * MR;
        widen_rows(A + m0 * lda, lda, mc, mcp, W->K, kp, a16);
        for (int64_t p = 0; p < W->np; p++) {
            const int16_t *val = W->val + p * W->ngp * 32;
            const uint8_t *sel = W->sel + p * W->ngp * 64;
            for (int64_t g0 = 0; g0 < W->ngp; g0 += KBG) {
                const int64_t g1 = QD_MIN(g0 + KBG, W->ngp);
                for (int64_t r = 0; r < mcp; r += MR)
                    micro_4x16(a16 + r * kp, kp, val, sel, g0, g1, tile + r * 16, g0 == 0);
            }
            epi(tile, mc, m0, p * 16, QD_MIN((int64_t)16, W->N - p * 16), W, a_scales, C, ldc);
        }
    }
    free(a16);
    free(tile);
}

static void avx2_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, float *C,
                     int64_t ldc)
{
    run(A, lda, a_scales, M, W, C, ldc, epi_f32);
}

static void avx2_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w24 *W, int32_t *C, int64_t ldc)
{
    run(A, lda, NULL, M, W, C, ldc, epi_s32);
}

void qd_gemm24_fill_avx2(qd_gemm24_fns *t)
{
    t->isa = "avx2";
    t->f32 = avx2_f32;
    t->s32 = avx2_s32;
}

#else
#include "kernels/gemm_s8_24.h"
void qd_gemm24_fill_avx2(qd_gemm24_fns *t) { qd_gemm24_fill_ref(t); }
#endif
