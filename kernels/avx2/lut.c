/* AVX2 codebook lookup (kernels.h lut_row): eight codes widened to 32-bit indices, offset by
 * their group's first level, and gathered (vpgatherdd) from the codebook; a copy, so the bits
 * equal the reference's. Runs of columns that share a group are gathered with one base pointer;
 * the tail of a run goes through the scalar loop.
 *
 * This file is compiled with -mavx2 -mfma -mf16c and is reached only through the dispatch table
 * after the CPUID check. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#include "kernels/kernels.h"

static void lut_row(const uint8_t *codes, int64_t n, int64_t G, int L, const float *cb, float *out)
{
    for (int64_t c0 = 0; c0 < n; c0 += G) {
        const int64_t end = c0 + G < n ? c0 + G : n;
        const float *lv = cb + (c0 / G) * L;
        int64_t c = c0;
        for (; c + 8 <= end; c += 8) {
            const __m128i b = _mm_loadl_epi64((const __m128i *)(codes + c));
            _mm256_storeu_ps(out + c, _mm256_i32gather_ps(lv, _mm256_cvtepu8_epi32(b), 4));
        }
        for (; c < end; c++) out[c] = lv[codes[c]];
    }
}

void qd_kernels_fill_avx2_lut(qd_kernel_table *t) { t->lut_row = lut_row; }

#endif /* x86 */
