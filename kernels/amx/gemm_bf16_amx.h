/* kernels/amx/gemm_bf16_amx.h — the entry points of kernels/amx/gemm_bf16.c (compiled with AMX
 * flags, or as a stub without them), called only by kernels/dispatch.c behind its CPU and OS
 * checks; everyone else uses kernels/gemm_bf16.h. */
#ifndef QD_GEMM_BF16_AMX_H
#define QD_GEMM_BF16_AMX_H

#include "kernels/gemm_bf16.h"

qd_gemm_bf16 *qd_gemm_bf16_amx_create(const float *B, int64_t K, int64_t N);
void qd_gemm_bf16_amx_free(qd_gemm_bf16 *g);
int qd_gemm_bf16_amx_run(qd_gemm_bf16 *g, const float *A, int64_t M, int64_t lda, float alpha, float *Y, int64_t ldy);
int qd_gemm_bf16_amx_built(void); /* 1 when the compiler had the AMX flags */

#endif
