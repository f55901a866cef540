/* AVX2 row quantizers (kernels.h), bit-identical to kernels/ref/quant_rows.c: the same operations
 * in the same order, lane by lane. vdivps (not a reciprocal), vroundps to nearest even, the zero
 * point added as float, vmaxps(q, 0) then vminps(q, maxq) (a NaN gives 0 as in the reference),
 * truncating conversion of a value already integral. Dequantization: (float)(q - z) * s, the
 * reference's s * (float)(q - z) (one rounding, commutative).
 *
 * A row is walked in chunks of CHUNK columns (even, so 4-bit chunks start on a byte); inside a
 * chunk each run of columns sharing a group is one segment with broadcast scale and zero; codes
 * go through a small buffer on the stack and are packed after. Segment tails use masked loads and
 * stores, so any group size and row length work.
 *
 * This file is compiled with -mavx2 -mfma -mf16c and is reached only through the dispatch table
 * after the CPUID check. ISO C mode keeps FP contraction off (no FMA is formed). */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#include "kernels/avx2/avx2_util.h"
#include "kernels/kernels.h"

#define CHUNK 1024

static inline __m256i quant8(__m256 x, __m256 vs, __m256 vz, __m256 vm)
{
    __m256 q = _mm256_div_ps(x, vs);
    q = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_add_ps(q, vz);
    q = _mm256_max_ps(q, _mm256_setzero_ps());
    q = _mm256_min_ps(q, vm);
    return _mm256_cvttps_epi32(q);
}

/* 8 int32 codes in [0, 255] -> 8 bytes in the low half of an xmm */
static inline __m128i narrow8(__m256i v)
{
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    return _mm_packus_epi16(w, w);
}

/* codes of one segment x[0, len) with one (s, z) */
static void quant_seg(const float *x, int64_t len, float s, int32_t z, float mf, uint8_t *codes)
{
    const __m256 vs = _mm256_set1_ps(s), vz = _mm256_set1_ps((float)z), vm = _mm256_set1_ps(mf);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i a = quant8(_mm256_loadu_ps(x + i), vs, vz, vm);
        __m256i b = quant8(_mm256_loadu_ps(x + i + 8), vs, vz, vm);
        __m256i c = quant8(_mm256_loadu_ps(x + i + 16), vs, vz, vm);
        __m256i d = quant8(_mm256_loadu_ps(x + i + 24), vs, vz, vm);
        /* packs/packus work per 128-bit lane: bytes come out as dwords a0 b0 c0 d0 | a1 b1 c1 d1
         * (4 codes each); the permutation restores a0 a1 b0 b1 ... */
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i v = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), perm);
        _mm256_storeu_si256((__m256i *)(codes + i), v);
    }
    for (; i + 8 <= len; i += 8)
        _mm_storel_epi64((__m128i *)(codes + i), narrow8(quant8(_mm256_loadu_ps(x + i), vs, vz, vm)));
    if (i < len) {
        const int64_t rem = len - i;
        __m256 xv = _mm256_maskload_ps(x + i, qd_avx2_tail_mask(rem));
        uint8_t tmp[16];
        _mm_storeu_si128((__m128i *)tmp, narrow8(quant8(xv, vs, vz, vm)));
        memcpy(codes + i, tmp, (size_t)rem);
    }
}

/* codes of columns [c0, c0 + len) of a row (x points at column c0) */
static void quant_span(const float *x, int64_t c0, int64_t len, int64_t G, const float *scales, const int32_t *zeros,
                       float mf, uint8_t *codes)
{
    const int64_t end = c0 + len;
    for (int64_t c = c0; c < end;) {
        const int64_t g = c / G, c1 = QD_MIN((g + 1) * G, end);
        quant_seg(x + (c - c0), c1 - c, scales[g], zeros[g], mf, codes + (c - c0));
        c = c1;
    }
}

/* byte k = codes[2k] | codes[2k+1] << 4 for n codes (n even, or the high nibble of the last is 0) */
static void pack4(const uint8_t *codes, int64_t n, uint8_t *out)
{
    const __m256i w = _mm256_set1_epi16(0x1001); /* byte weights 1 (even code), 16 (odd code) */
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i p = _mm256_maddubs_epi16(_mm256_loadu_si256((const __m256i *)(codes + i)), w);
        p = _mm256_permute4x64_epi64(_mm256_packus_epi16(p, p), 0x08);
        _mm_storeu_si128((__m128i *)(out + i / 2), _mm256_castsi256_si128(p));
    }
    for (; i + 1 < n; i += 2) out[i / 2] = (uint8_t)(codes[i] | codes[i + 1] << 4);
    if (i < n) out[i / 2] = codes[i];
}

static void unpack4(const uint8_t *in, int64_t n, uint8_t *codes)
{
    const __m128i lo4 = _mm_set1_epi8(0x0f);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m128i b = _mm_loadu_si128((const __m128i *)(in + i / 2));
        __m128i lo = _mm_and_si128(b, lo4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), lo4);
        _mm_storeu_si128((__m128i *)(codes + i), _mm_unpacklo_epi8(lo, hi));
        _mm_storeu_si128((__m128i *)(codes + i + 16), _mm_unpackhi_epi8(lo, hi));
    }
    for (; i < n; i++) codes[i] = (i & 1) ? in[i / 2] >> 4 : in[i / 2] & 15;
}

static inline __m256 deq8(__m128i bytes, __m256i vz, __m256 vs)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), vz)), vs);
}

static void dequant_seg(const uint8_t *codes, int64_t len, float s, int32_t z, float *out)
{
    const __m256 vs = _mm256_set1_ps(s);
    const __m256i vz = _mm256_set1_epi32(z);
    int64_t i = 0;
    for (; i + 32 <= len; i += 32) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(codes + i));
        __m128i b0 = _mm256_castsi256_si128(b), b1 = _mm256_extracti128_si256(b, 1);
        _mm256_storeu_ps(out + i, deq8(b0, vz, vs));
        _mm256_storeu_ps(out + i + 8, deq8(_mm_srli_si128(b0, 8), vz, vs));
        _mm256_storeu_ps(out + i + 16, deq8(b1, vz, vs));
        _mm256_storeu_ps(out + i + 24, deq8(_mm_srli_si128(b1, 8), vz, vs));
    }
    for (; i + 8 <= len; i += 8) _mm256_storeu_ps(out + i, deq8(_mm_loadl_epi64((const __m128i *)(codes + i)), vz, vs));
    if (i < len) {
        const int64_t rem = len - i;
        uint8_t tmp[16] = {0};
        memcpy(tmp, codes + i, (size_t)rem);
        _mm256_maskstore_ps(out + i, qd_avx2_tail_mask(rem), deq8(_mm_loadu_si128((const __m128i *)tmp), vz, vs));
    }
}

static void dequant_span(const uint8_t *codes, int64_t c0, int64_t len, int64_t G, const float *scales,
                         const int32_t *zeros, float *out)
{
    const int64_t end = c0 + len;
    for (int64_t c = c0; c < end;) {
        const int64_t g = c / G, c1 = QD_MIN((g + 1) * G, end);
        dequant_seg(codes + (c - c0), c1 - c, scales[g], zeros[g], out + (c - c0));
        c = c1;
    }
}

static void avx2_quantize_codes(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                                int maxq, uint8_t *codes)
{
    QD_ASSERT(G >= 1 && maxq >= 1 && maxq <= 255);
    quant_span(x, 0, n, G, scales, zeros, (float)maxq, codes);
}

static void avx2_quantize_q4(const float *x, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                             uint8_t *out)
{
    QD_ASSERT(G >= 1);
    uint8_t buf[CHUNK];
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        const int64_t len = QD_MIN((int64_t)CHUNK, n - c0);
        quant_span(x + c0, c0, len, G, scales, zeros, 15.0f, buf);
        pack4(buf, len, out + c0 / 2);
    }
}

static void avx2_dequantize_codes(const uint8_t *codes, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                                  float *out)
{
    QD_ASSERT(G >= 1);
    dequant_span(codes, 0, n, G, scales, zeros, out);
}

static void avx2_dequantize_q4(const uint8_t *in, int64_t n, int64_t G, const float *scales, const int32_t *zeros,
                               float *out)
{
    QD_ASSERT(G >= 1);
    uint8_t buf[CHUNK];
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        const int64_t len = QD_MIN((int64_t)CHUNK, n - c0);
        unpack4(in + c0 / 2, len, buf);
        dequant_span(buf, c0, len, G, scales, zeros, out + c0);
    }
}

void qd_kernels_fill_avx2(qd_kernel_table *t)
{
    t->isa = "avx2";
    t->quantize_codes = avx2_quantize_codes;
    t->quantize_q4 = avx2_quantize_q4;
    t->dequantize_codes = avx2_dequantize_codes;
    t->dequantize_q4 = avx2_dequantize_q4;
}

#endif /* x86 */
