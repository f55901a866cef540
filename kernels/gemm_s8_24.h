/* kernels/gemm_s8_24.h — int8 GEMM with 2:4 semi-structured sparse weights: Y = X · Wᵀ where every
 * group of 4 consecutive input columns of a weight row holds at most 2 nonzeros (the pattern
 * `qdist quantize --sparsity 2:4` writes). Only the nonzeros are stored (2 int8 values and 2 2-bit
 * positions per group), so the kernel does half the multiplies of the dense int8 GEMM.
 *
 * Results are exactly those of the dense int8 GEMM (kernels/gemm.h) on the same weights with the
 * pruned ones as 0: acc[m][n] = Σ_k A[m][k] · W[n][k] in exact int32, then the f32 epilogue
 * ((float)acc · a_scale[m]) · w_scale[n] (+ bias[n]). The scalar reference (kernels/ref/gemm_s8_24.c)
 * defines the results; the AVX2 version (kernels/avx2/gemm_s8_24.c) gives the same bits.
 *
 * Single-threaded and reentrant, like the dense GEMMs. The version is chosen by the selected ISA
 * of the kernel table (qd_kernels_isa(): "avx2" and "avx512" run the AVX2 version).
 */
#ifndef QD_KERNELS_GEMM_S8_24_H
#define QD_KERNELS_GEMM_S8_24_H

#include <stddef.h>
#include <stdint.h>

typedef struct qd_gemm_w24 qd_gemm_w24;

/* w[n * ldw + k] int8 codes of a 2:4 sparse matrix (K need not be a multiple of 4: the last group
 * is padded with zeros), scales[N] per output channel, bias[N] or NULL (copied). Returns 0, or
 * QD_EINVAL (message naming the row and group that keep more than 2) / QD_ENOMEM. */
int qd_gemm_w24_create(const int8_t *w, int64_t N, int64_t K, int64_t ldw, const float *scales, const float *bias,
                       qd_gemm_w24 **out);
void qd_gemm_w24_free(qd_gemm_w24 *w);
int64_t qd_gemm_w24_n(const qd_gemm_w24 *w);
int64_t qd_gemm_w24_k(const qd_gemm_w24 *w);
size_t qd_gemm_w24_bytes(const qd_gemm_w24 *w);

typedef struct {
    const char *isa;
    void (*f32)(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, float *C,
                int64_t ldc);
    void (*s32)(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w24 *W, int32_t *C, int64_t ldc);
} qd_gemm24_fns;

/* The versions for an ISA name ("ref", "avx2"; "avx512" gives avx2's), NULL when unavailable here
 * (tests and benches compare them). */
const qd_gemm24_fns *qd_gemm24_table(const char *isa);

/* Through the version of the selected ISA. A[m * lda + k] (lda >= K), C[m * ldc + n]. */
void qd_gemm_s8_24_f32(const int8_t *A, int64_t lda, const float *a_scales, int64_t M, const qd_gemm_w24 *W, float *C,
                       int64_t ldc);
void qd_gemm_s8_24_s32(const int8_t *A, int64_t lda, int64_t M, const qd_gemm_w24 *W, int32_t *C, int64_t ldc);

/* ---- layout (for kernels/ only) --------------------------------------------------------------
 * Panels of 16 output channels; per panel the groups of 4 k, their count rounded up to even (ngp),
 * each group 64 bytes of values and 64 bytes of selectors:
 *   val[((p * ngp) + g) * 32 + 2 * c + j]  (int16) the j-th kept value of channel 16p + c in group g
 *   sel[((p * ngp) + g) * 64 + 4 * c + b]  (uint8) byte b of the vpshufb selector of that channel:
 *       o + 2 i0, o + 2 i0 + 1, o + 2 i1, o + 2 i1 + 1, with i0, i1 the positions (0..3) of the two
 *       kept values in the group and o = 8 (g odd) or 0 (g even): the selector picks the two int16
 *       activations of the channel out of 16 bytes holding the int16 activations of groups g & ~1
 *       and g | 1. A group with fewer than 2 nonzeros stores value 0 at an unused position.
 * Channels past N have value 0, scale 0 and bias 0. */
struct qd_gemm_w24 {
    int64_t N, K;
    int64_t np, ngp;
    int16_t *val;
    uint8_t *sel;
    float *scales; /* [np * 16] */
    float *bias;   /* [np * 16] or NULL */
};

void qd_gemm24_fill_avx2(qd_gemm24_fns *t); /* kernels/avx2/gemm_s8_24.c */
void qd_gemm24_fill_ref(qd_gemm24_fns *t);  /* kernels/ref/gemm_s8_24.c */

#endif
