/* kernels/infer_isa.h — what the ISA files of the inference kernels share among themselves (not
 * for other modules): the exp_sum implementations the attention kernels call directly, the
 * per-thread scratch of the GEMM drivers, and the AVX-512 VNNI pieces the AMX driver runs its
 * tail rows with. */
#ifndef QD_KERNELS_INFER_ISA_H
#define QD_KERNELS_INFER_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/gemm_pack.h"

/* kernels.h exp_sum of the reference and of the AVX2 table (the same bits) */
float qd_ref_exp_sum(float *x, int64_t n, float m);
float qd_avx2_exp_sum(float *x, int64_t n, float m);
float qd_avx512_exp_sum(float *x, int64_t n, float m); /* kernels/avx512/infer.c */

/* A buffer of at least `bytes` (64-byte aligned) owned by the calling thread, one per slot, kept
 * between calls and grown when asked for more: the GEMMs allocate only on a thread's first
 * calls. Freed when the thread exits. Aborts when memory runs out (sizes are the program's). */
enum { QD_SCRATCH_A = 0, QD_SCRATCH_PACK, QD_SCRATCH_TILE, QD_SCRATCH_AUX, QD_SCRATCH_SLOTS };
void *qd_kernels_scratch(int slot, size_t bytes);

/* u8-coded activation rows as int8 codes (u ^ 0x80) in the thread's QD_SCRATCH_A, rows of K bytes
 * (kernels/avx2/gemm_s8.c; for the AVX2 kernels, which read int8 activations) */
const int8_t *qd_avx2_u8_to_s8(const uint8_t *A, int64_t lda, int64_t M, int64_t K);

/* c[6][16] = (first ? 0 : c) + Σ_k a[r][k] · b[16 k + c], one fma per k in order: the AVX2 float
 * microkernel (kernels/avx2/gemm_w4.c), rows at a[0..5] (repeat one for fewer), c rows at ldc */
void qd_avx2_micro_f32(int64_t kc, const float *const a[6], const float *b, float *c, int64_t ldc, int first);

/* AVX-512 VNNI u8 x int8 rows [m0, m1) of columns [n0, n1) (kernels/avx512vnni/gemm_u8.c); the
 * AMX driver hands it the rows that do not fill a tile. */
void qd_vnni512_gemm_u8_rows(const uint8_t *A, int64_t lda, const float *a_scales, int64_t M,
                             const struct qd_gemm_w8 *W, int64_t n0, int64_t n1, float *C, int64_t ldc);

#endif
