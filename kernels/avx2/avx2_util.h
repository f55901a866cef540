/* kernels/avx2/avx2_util.h — small helpers of the AVX2 kernels (one copy for every file in
 * kernels/avx2/; include only from files compiled with -mavx2). */
#ifndef QD_KERNELS_AVX2_UTIL_H
#define QD_KERNELS_AVX2_UTIL_H

#include <immintrin.h>
#include <stdlib.h>

#include "common/qd_common.h"

/* int32 lanes [0, rem) set, for masked loads and stores; rem in [0, 8] */
static inline __m256i qd_avx2_tail_mask(int64_t rem)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* A 64-byte-aligned workspace of a GEMM call (not zeroed; free() it). Sizes come from the call's
 * shapes, so failure is a broken invariant. */
static inline void *qd_avx2_workspace(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    QD_ASSERT(p != NULL);
    return p;
}

#endif /* QD_KERNELS_AVX2_UTIL_H */
