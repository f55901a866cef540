/* AVX2 version of the engine's 2:4 sparse int8 GEMM (kernels/gemm_u8_24.h), bit-identical to
 * kernels/ref/gemm_u8_24.c; the body is kernels/avx2/gemm_u8_24_ymm.h.
 *
 * Without vpdpbusd, four u8 x s8 products go into an int32 lane exactly by splitting each
 * activation byte u into its low 7 bits l and its top bit h (u = l + h, h in {0, 128}):
 * vpmaddubsw adds two products into an int16 lane, |l·w + l'·w'| <= 2·127·128 = 32512 and
 * h·w + h'·w' in [-32768, 32512], so neither saturates; vpmaddwd with ones adds the pairs into
 * int32. The split commutes with vpshufb, so it is done once per row and step.
 *
 * Compiled with -mavx2 -mfma -mf16c; reached only through qd_gemm_u24_table after the CPUID check. */
#include "kernels/gemm_u8_24.h"

#if defined(__AVX2__)
#include <immintrin.h>

/* acc += Σ of four u8 x s8 products per lane; x = the kept activations, split below */
#define QD_U24_DOT(acc, x, w)                                                                                \
    do {                                                                                                     \
        const __m256i x_ = (x), lo_ = _mm256_and_si256(x_, _mm256_set1_epi8(0x7F)),                          \
                      hi_ = _mm256_and_si256(x_, _mm256_set1_epi8((char)0x80)), one_ = _mm256_set1_epi16(1); \
        (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16(lo_, (w)), one_));            \
        (acc) = _mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_maddubs_epi16(hi_, (w)), one_));            \
    } while (0)
#define QD_U24_FN avx2_u8w24_f32
#include "kernels/avx2/gemm_u8_24_ymm.h"

int qd_gemm_u24_fill_avx2(qd_gemm_u24_fns *t)
{
    t->isa = "avx2";
    t->f32 = avx2_u8w24_f32;
    return 1;
}

#else

int qd_gemm_u24_fill_avx2(qd_gemm_u24_fns *t)
{
    (void)t;
    return 0;
}

#endif
