/* kernels/gemm_bf16.h — Y = alpha A B with bfloat16 operands and float accumulation in AMX tiles,
 * for AdaRound's gradient product (quant/adaround.c), where B is a layer's Hessian that stays
 * fixed over 10,000 steps and A the current error of a unit of rows.
 *
 * Both operands are split into two bfloat16 parts, x = hi + lo with hi = bf16(x) (nearest even)
 * and lo = bf16(x - hi), so each keeps about 16 significant bits; B once at creation, A at every
 * call. Y = alpha (Ahi Bhi + Alo Bhi + Ahi Blo): every product exact, the sums in float tiles;
 * the error is within about 2^-15 of the sum of |terms| (tests/kernels/test_kernels_ada_gemm.c).
 * The result depends only on the inputs (a fixed tile order), not on how rows are split across
 * calls; it is not bit-identical to an sgemm.
 *
 * Available only where the CPU has AMX-BF16 and the OS grants the tile state
 * (qd_gemm_bf16_available(); QD_KERNELS=ref or avx2 turns it off). */
#ifndef QD_GEMM_BF16_H
#define QD_GEMM_BF16_H

#include <stdint.h>

typedef struct qd_gemm_bf16 qd_gemm_bf16;

/* 1 when AMX-BF16 is usable in this process (asks the OS for the tile state once). */
int qd_gemm_bf16_available(void);

/* B packed for qd_gemm_bf16_run (K, N >= 1), or NULL when unavailable or out of memory. The
 * object holds the workspace of the calls: one call at a time per object. */
qd_gemm_bf16 *qd_gemm_bf16_create(const float *B, int64_t K, int64_t N);
void qd_gemm_bf16_free(qd_gemm_bf16 *b);

/* Y[M][N] (row stride ldy) = alpha (A B~) for A [M][K] (row stride lda). 0, or QD_ENOMEM. */
int qd_gemm_bf16_run(qd_gemm_bf16 *b, const float *A, int64_t M, int64_t lda, float alpha, float *Y, int64_t ldy);

#endif
