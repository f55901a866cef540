/* AVX2 GEMMs with 4-bit weights (kernels/gemm.h), bit-identical to kernels/ref/gemm.c.
 *
 * int8 activations: codes are unsigned 0..15, so vpmaddubsw (unsigned x signed bytes, two products
 * summed in a saturating int16) is exact here: |q·a| <= 15·128, a pair <= 3840. Four such results
 * are added as int16 (<= 15360 < 2^15) before vpmaddwd with ones widens them to int32: per 16 k and
 * 16 channels 8 vpmaddubsw, 6 vpaddw, 2 vpmaddwd, 2 vpaddd per row. The codes are unpacked in
 * registers (one 32-byte load = 16 channels x 4 k, low and high nibbles), the activations are
 * broadcast four bytes at a time straight from the rows. Per group the integer sums become
 * isum = Σ a·q − z·Σ a (exact), then acc = fma(scale, (float)isum, acc) as in the reference.
 * Microkernel: 4 rows x 16 channels, the whole K (a 16-channel panel is 8·K bytes, in L1).
 *
 * float activations: the FP32 path is FMA-bound like sgemm, so the codes are dequantized
 * (s · (float)(q − z), the reference's w') once per call, a K block of a few panels at a time into
 * an L2-resident buffer, and a 6 x 16 FMA microkernel runs the chain acc = fma(a, w', acc) in k
 * order, keeping partial sums in C between K blocks (stored and reloaded exactly), bias last.
 *
 * Compiled with -mavx2 -mfma -mf16c, reached only through the dispatch table after the CPUID check. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gemm_pack.h"
#include "kernels/avx2/avx2_util.h"
#include "kernels/kernels.h"

#define MR4           4
#define MRF           6
#define KCS           64 /* 4-k steps per K block of the float path (<= 256 k) */
#define NCP           16 /* panels per N block of the float path: 256 x 256 floats = 256 KiB */
#define MCF           96 /* rows per M block of the float path */
#define A_BLOCK_BYTES (256 << 10)

static inline void store_f32(float *out, __m256 v, int64_t nv)
{
    if (nv >= 8)
        _mm256_storeu_ps(out, v);
    else if (nv > 0)
        _mm256_maskstore_ps(out, qd_avx2_tail_mask(nv), v);
}

/* 4-k steps of group g that hold real columns: ceil(len / 16) · 4 (the rest of gp is padding) */
static inline int64_t group_steps(const qd_gemm_w4 *W, int64_t g)
{
    const int64_t len = QD_MIN(W->G, W->K - g * W->G);
    return (len + 15) / 16 * 4;
}

/* ---- int8 activations --------------------------------------------------------------------------- */

/* Σ a[k] for k < n, int8 */
static int32_t sum_s8(const int8_t *a, int64_t n)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i acc = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 32 <= n; k += 32) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(a + k));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
    }
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(1, 0, 3, 2)));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, _MM_SHUFFLE(2, 3, 0, 1)));
    int32_t s = _mm_cvtsi128_si32(h);
    for (; k < n; k++) s += a[k];
    return s;
}

/* ft[4][16] = Σ_g fma(scale, isum_g, ·) for the 4 rows a[r] (group-padded layout: group g starts at
 * a[r] + g·gp) and the 16 channels of panel p; asum[r][g] = Σ of row r over group g. */
static void micro_w4s8(const qd_gemm_w4 *W, int64_t p, const int8_t *const a[MR4], const int32_t *const asum[MR4],
                       float *ft)
{
    const int64_t ng = W->ng, spg = W->gp / 4;
    const uint8_t *bp = W->q + p * ng * spg * 32;
    const float *scp = W->scales + p * ng * 16;
    const int32_t *zrp = W->zeros + p * ng * 16;
    static const int32_t k_0f = 0x0f0f0f0f, k_ones = 0x00010001;
    for (int i = 0; i < 64; i += 8) _mm256_store_ps(ft + i, _mm256_setzero_ps());
    for (int64_t g = 0; g < ng; g++) {
        const int64_t ns = group_steps(W, g);
        const uint8_t *b = bp + g * spg * 32;
        const int8_t *a0 = a[0] + g * W->gp, *a1 = a[1] + g * W->gp, *a2 = a[2] + g * W->gp, *a3 = a[3] + g * W->gp;
        __m256i i00 = _mm256_setzero_si256(), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00,
                i31 = i00;
        /* 16 k per iteration, in assembly (compilers share the 16 broadcasts between the two
         * nibble halves and spill them and the accumulators). Registers: 8 accumulators, codes
         * q0-q3 (ymm8-11), running int16 sum t (ymm12), broadcast x (ymm13), 0x0f bytes (ymm14),
         * int16 ones (ymm15). Per row: t = Σ_i maddubs(q_i, a[4i..4i+3]) (|t| <= 4·3840), then
         * acc += maddwd(t, 1). */
        int64_t n4 = ns / 4;
        const uint8_t *bq = b;
        if (n4 > 0)
            __asm__ volatile("vpbroadcastd %[c0f], %%ymm14\n\t"
                             "vpbroadcastd %[c1], %%ymm15\n\t"
                             "1:\n\t"
#define QD_W4_ROW(ar, acc)                     \
    "vpbroadcastd (%[" #ar "]), %%ymm12\n\t"   \
    "vpmaddubsw %%ymm12, %%ymm8, %%ymm12\n\t"  \
    "vpbroadcastd 4(%[" #ar "]), %%ymm13\n\t"  \
    "vpmaddubsw %%ymm13, %%ymm9, %%ymm13\n\t"  \
    "vpaddw %%ymm13, %%ymm12, %%ymm12\n\t"     \
    "vpbroadcastd 8(%[" #ar "]), %%ymm13\n\t"  \
    "vpmaddubsw %%ymm13, %%ymm10, %%ymm13\n\t" \
    "vpaddw %%ymm13, %%ymm12, %%ymm12\n\t"     \
    "vpbroadcastd 12(%[" #ar "]), %%ymm13\n\t" \
    "vpmaddubsw %%ymm13, %%ymm11, %%ymm13\n\t" \
    "vpaddw %%ymm13, %%ymm12, %%ymm12\n\t"     \
    "vpmaddwd %%ymm15, %%ymm12, %%ymm12\n\t"   \
    "vpaddd %%ymm12, %[" #acc "], %[" #acc "]\n\t"
                             "vpand (%[b]), %%ymm14, %%ymm8\n\t"
                             "vpand 32(%[b]), %%ymm14, %%ymm9\n\t"
                             "vpand 64(%[b]), %%ymm14, %%ymm10\n\t"
                             "vpand 96(%[b]), %%ymm14, %%ymm11\n\t" QD_W4_ROW(a0, i00) QD_W4_ROW(a1, i10)
                                 QD_W4_ROW(a2, i20)
                                     QD_W4_ROW(a3, i30) "vmovdqa (%[b]), %%ymm8\n\t"
                                                        "vmovdqa 32(%[b]), %%ymm9\n\t"
                                                        "vmovdqa 64(%[b]), %%ymm10\n\t"
                                                        "vmovdqa 96(%[b]), %%ymm11\n\t"
                                                        "vpsrlw $4, %%ymm8, %%ymm8\n\t"
                                                        "vpsrlw $4, %%ymm9, %%ymm9\n\t"
                                                        "vpsrlw $4, %%ymm10, %%ymm10\n\t"
                                                        "vpsrlw $4, %%ymm11, %%ymm11\n\t"
                                                        "vpand %%ymm14, %%ymm8, %%ymm8\n\t"
                                                        "vpand %%ymm14, %%ymm9, %%ymm9\n\t"
                                                        "vpand %%ymm14, %%ymm10, %%ymm10\n\t"
                                                        "vpand %%ymm14, %%ymm11, %%ymm11\n\t" QD_W4_ROW(a0, i01)
                                                            QD_W4_ROW(a1, i11) QD_W4_ROW(a2, i21) QD_W4_ROW(a3, i31)
#undef QD_W4_ROW
                                                                "add $128, %[b]\n\t"
                                                                "add $16, %[a0]\n\t"
                                                                "add $16, %[a1]\n\t"
                                                                "add $16, %[a2]\n\t"
                                                                "add $16, %[a3]\n\t"
                                                                "dec %[n]\n\t"
                                                                "jnz 1b\n\t"
                             : [i00] "+x"(i00), [i01] "+x"(i01), [i10] "+x"(i10), [i11] "+x"(i11), [i20] "+x"(i20),
                               [i21] "+x"(i21), [i30] "+x"(i30), [i31] "+x"(i31), [a0] "+r"(a0), [a1] "+r"(a1),
                               [a2] "+r"(a2), [a3] "+r"(a3), [b] "+r"(bq), [n] "+r"(n4)
                             : [c0f] "m"(k_0f), [c1] "m"(k_ones)
                             : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
        /* isum = Σ a·q − z · Σ a, then acc = fma(scale, (float)isum, acc) */
        const __m256i z0 = _mm256_load_si256((const __m256i *)(zrp + g * 16));
        const __m256i z1 = _mm256_load_si256((const __m256i *)(zrp + g * 16 + 8));
        const __m256 s0 = _mm256_load_ps(scp + g * 16), s1 = _mm256_load_ps(scp + g * 16 + 8);
        const __m256i acc[MR4][2] = {{i00, i01}, {i10, i11}, {i20, i21}, {i30, i31}};
        for (int r = 0; r < MR4; r++) {
            const __m256i as = _mm256_set1_epi32(asum[r][g]);
            const __m256i v0 = _mm256_sub_epi32(acc[r][0], _mm256_mullo_epi32(z0, as));
            const __m256i v1 = _mm256_sub_epi32(acc[r][1], _mm256_mullo_epi32(z1, as));
            _mm256_store_ps(ft + 16 * r, _mm256_fmadd_ps(s0, _mm256_cvtepi32_ps(v0), _mm256_load_ps(ft + 16 * r)));
            _mm256_store_ps(ft + 16 * r + 8,
                            _mm256_fmadd_ps(s1, _mm256_cvtepi32_ps(v1), _mm256_load_ps(ft + 16 * r + 8)));
        }
    }
}

static void avx2_gemm_w4_s8(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w4 *W,
                            float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    if (M == 0) return;
    const int64_t K = W->K, G = W->G, ng = W->ng, gp = W->gp;
    /* Rows are read in place when no group needs padding (G and K multiples of 16); otherwise each
     * row of a block is copied into a group-padded buffer (zeros past each group's end). */
    const int direct = G % 16 == 0 && K % 16 == 0;
    int64_t mc = A_BLOCK_BYTES / (ng * gp) / MR4 * MR4;
    mc = QD_MAX(mc, (int64_t)MR4);
    mc = QD_MIN(mc, (M + MR4 - 1) / MR4 * MR4);
    int8_t *apad = direct ? NULL : qd_avx2_workspace((size_t)(mc * ng * gp));
    int32_t *asum = qd_avx2_workspace((size_t)(mc * ng) * sizeof(int32_t));
    float *ft = qd_avx2_workspace(64 * sizeof(float));
    for (int64_t m0 = 0; m0 < M; m0 += mc) {
        const int64_t rows = QD_MIN(mc, M - m0);
        for (int64_t r = 0; r < rows; r++) {
            const int8_t *src = A + (m0 + r) * lda;
            for (int64_t g = 0; g < ng; g++) {
                const int64_t len = QD_MIN(G, K - g * G);
                asum[r * ng + g] = sum_s8(src + g * G, len);
                if (!direct) {
                    int8_t *dst = apad + (r * ng + g) * gp;
                    memcpy(dst, src + g * G, (size_t)len);
                    memset(dst + len, 0, (size_t)(gp - len));
                }
            }
        }
        for (int64_t p = 0; p < W->np; p++) {
            const int64_t n0 = 16 * p, nv = QD_MIN((int64_t)16, W->N - n0);
            const __m256 b0 = W->bias ? _mm256_load_ps(W->bias + n0) : _mm256_setzero_ps();
            const __m256 b1 = W->bias ? _mm256_load_ps(W->bias + n0 + 8) : _mm256_setzero_ps();
            for (int64_t i = 0; i < rows; i += MR4) {
                const int64_t mr = QD_MIN((int64_t)MR4, rows - i);
                const int8_t *a[MR4];
                const int32_t *as[MR4];
                for (int r = 0; r < MR4; r++) { /* missing rows repeat the last one; dropped below */
                    const int64_t rr = i + QD_MIN((int64_t)r, mr - 1);
                    a[r] = direct ? A + (m0 + rr) * lda : apad + rr * ng * gp;
                    as[r] = asum + rr * ng;
                }
                micro_w4s8(W, p, a, as, ft);
                for (int64_t r = 0; r < mr; r++) {
                    const __m256 sa = _mm256_set1_ps(a_scales[m0 + i + r]);
                    __m256 v0 = _mm256_mul_ps(_mm256_load_ps(ft + 16 * r), sa);
                    __m256 v1 = _mm256_mul_ps(_mm256_load_ps(ft + 16 * r + 8), sa);
                    if (W->bias) v0 = _mm256_add_ps(v0, b0), v1 = _mm256_add_ps(v1, b1);
                    float *out = C + (m0 + i + r) * ldc + n0;
                    store_f32(out, v0, nv);
                    store_f32(out + 8, v1, nv - 8);
                }
            }
        }
    }
    free(apad);
    free(asum);
    free(ft);
}

/* ---- float activations ------------------------------------------------------------------------ */

/* Dequantizes the real k of steps [s0, s1) of panel p into bt[j][16] (j counts real k). Returns j. */
static int64_t dequant_block(const qd_gemm_w4 *W, int64_t p, int64_t s0, int64_t s1, float *bt)
{
    const int64_t spg = W->gp / 4;
    const uint8_t *bp = W->q + p * W->ng * spg * 32;
    const __m256i m0f = _mm256_set1_epi8(0x0f);
    const __m256i shuf = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9,
                                          13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t j = 0;
    for (int64_t s = s0; s < s1; s++) {
        const int64_t g = s / spg, kk = 4 * (s - g * spg);
        const int64_t v = QD_MIN((int64_t)4, QD_MIN(W->G, W->K - g * W->G) - kk);
        if (v <= 0) continue;
        const __m256i raw = _mm256_load_si256((const __m256i *)(bp + 32 * s));
        /* bytes 4c + i -> [k = i][channel c]: 8 bytes per k, channels 0-7 (low) and 8-15 (high) */
        const __m256i lo = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(_mm256_and_si256(raw, m0f), shuf), perm);
        const __m256i hi = _mm256_permutevar8x32_epi32(
            _mm256_shuffle_epi8(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m0f), shuf), perm);
        const int64_t o = (p * W->ng + g) * 16;
        const __m256i z0 = _mm256_load_si256((const __m256i *)(W->zeros + o));
        const __m256i z1 = _mm256_load_si256((const __m256i *)(W->zeros + o + 8));
        const __m256 sc0 = _mm256_load_ps(W->scales + o), sc1 = _mm256_load_ps(W->scales + o + 8);
        const __m128i lo_h[2] = {_mm256_castsi256_si128(lo), _mm256_extracti128_si256(lo, 1)};
        const __m128i hi_h[2] = {_mm256_castsi256_si128(hi), _mm256_extracti128_si256(hi, 1)};
        for (int64_t i = 0; i < v; i++) {
            __m128i l = lo_h[i >> 1], h = hi_h[i >> 1];
            if (i & 1) l = _mm_srli_si128(l, 8), h = _mm_srli_si128(h, 8);
            const __m256 w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(l), z0)), sc0);
            const __m256 w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(h), z1)), sc1);
            _mm256_store_ps(bt + 16 * (j + i), w0);
            _mm256_store_ps(bt + 16 * (j + i) + 8, w1);
        }
        j += v;
    }
    return j;
}

/* c[6][16] = (first ? 0 : c) + Σ_k a[r][k] · b[k][c], fma per k in order; rows a + r·lda */
static void micro_f32(int64_t kc, const float *const a[MRF], const float *b, float *c, int64_t ldc, int first)
{
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (first) {
        c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    } else {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    }
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(b + 16 * k), b1 = _mm256_load_ps(b + 16 * k + 8);
        __m256 x;
        x = _mm256_broadcast_ss(a0 + k), c00 = _mm256_fmadd_ps(x, b0, c00), c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + k), c10 = _mm256_fmadd_ps(x, b0, c10), c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + k), c20 = _mm256_fmadd_ps(x, b0, c20), c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + k), c30 = _mm256_fmadd_ps(x, b0, c30), c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + k), c40 = _mm256_fmadd_ps(x, b0, c40), c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + k), c50 = _mm256_fmadd_ps(x, b0, c50), c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

static void avx2_gemm_w4_f32(const float *A, int64_t lda, int64_t M, const qd_gemm_w4 *W, float *C, int64_t ldc)
{
    QD_ASSERT(M >= 0 && lda >= W->K && ldc >= W->N);
    if (M == 0) return;
    const int64_t nsteps = W->ng * (W->gp / 4);
    float *bt = qd_avx2_workspace((size_t)(NCP * KCS * 4 * 16) * sizeof(float));
    float tile[MRF * 16];
    for (int64_t p0 = 0; p0 < W->np; p0 += NCP) {
        const int64_t np = QD_MIN((int64_t)NCP, W->np - p0);
        int first = 1;
        for (int64_t s0 = 0; s0 < nsteps; s0 += KCS) {
            const int64_t s1 = QD_MIN(nsteps, s0 + KCS);
            /* first real k of the block */
            int64_t k0 = -1;
            for (int64_t s = s0; s < s1 && k0 < 0; s++) {
                const int64_t g = s / (W->gp / 4), kk = 4 * (s - g * (W->gp / 4));
                if (kk < QD_MIN(W->G, W->K - g * W->G)) k0 = g * W->G + kk;
            }
            if (k0 < 0) continue; /* only padding */
            int64_t kc = 0;
            for (int64_t q = 0; q < np; q++) kc = dequant_block(W, p0 + q, s0, s1, bt + q * KCS * 4 * 16);
            for (int64_t m0 = 0; m0 < M; m0 += MCF) {
                const int64_t mb = QD_MIN((int64_t)MCF, M - m0);
                for (int64_t q = 0; q < np; q++) {
                    const int64_t n0 = 16 * (p0 + q), nv = QD_MIN((int64_t)16, W->N - n0);
                    const float *b = bt + q * KCS * 4 * 16;
                    for (int64_t i = 0; i < mb; i += MRF) {
                        const int64_t mr = QD_MIN((int64_t)MRF, mb - i);
                        const float *a[MRF];
                        for (int r = 0; r < MRF; r++) a[r] = A + (m0 + i + QD_MIN((int64_t)r, mr - 1)) * lda + k0;
                        float *c = C + (m0 + i) * ldc + n0;
                        if (mr == MRF && nv == 16) {
                            micro_f32(kc, a, b, c, ldc, first);
                        } else {
                            if (!first)
                                for (int64_t r = 0; r < mr; r++) memcpy(tile + 16 * r, c + r * ldc, (size_t)nv * 4);
                            micro_f32(kc, a, b, tile, 16, first);
                            for (int64_t r = 0; r < mr; r++) memcpy(c + r * ldc, tile + 16 * r, (size_t)nv * 4);
                        }
                    }
                }
            }
            first = 0;
        }
        if (W->bias) /* acc + bias after the whole chain, as the reference */
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 16 * p0; n < QD_MIN(16 * (p0 + np), W->N); n += 8) {
                    const __m256i mk = qd_avx2_tail_mask(QD_MIN((int64_t)8, W->N - n));
                    float *c = C + m * ldc + n;
                    _mm256_maskstore_ps(c, mk, _mm256_add_ps(_mm256_maskload_ps(c, mk), _mm256_load_ps(W->bias + n)));
                }
    }
    free(bt);
}

void qd_kernels_avx2_gemm_w4(struct qd_kernel_table *t)
{
    t->gemm_w4_s8 = avx2_gemm_w4_s8;
    t->gemm_w4_f32 = avx2_gemm_w4_f32;
}

#endif /* x86 */
