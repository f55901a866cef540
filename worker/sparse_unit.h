/* worker/sparse_unit.h — pruning inside a quantization job: the checks of a job's sparsity options,
 * one calibrated unit of rows (SparseGPT jointly with GPTQ, or a magnitude / Wanda mask kept by
 * GPTQ, or pruning alone), and the rows of a round-to-nearest tensor (magnitude per row, then RTN).
 * Every choice is per row (N:M groups, or each row's own fraction), so units and row pieces give
 * the same bits on any number of ranks. */
#ifndef QD_SPARSE_UNIT_H
#define QD_SPARSE_UNIT_H

#include "quant/gptq.h"
#include "quant/sparsegpt.h"
#include "worker/job_spec.h"

/* QD_OK, or QD_ECONFIG naming the conflicting options (act-order, AdaRound, Wanda/SparseGPT
 * without calibration, prune-only without it). */
int qd_sparse_config_validate(const qd_job_config *c);

/* The prune method of a tensor quantized with method m (cfg->prune, or its default for m). */
int qd_sparse_prune_method(const qd_job_config *c, qd_method m);

/* Rows W [n][C] of a tensor pruned to pattern sp by method prune (qd_prune_method), with the
 * prepared factor of its input (qd_gptq_prepare with o, no act-order) and H (Wanda's norms).
 * prune_only: W becomes the pruned float rows and codes/scales/zeros are untouched; else
 * codes/scales/zeros receive the quantized rows (pruned weights at the zero point). mask [n][C]
 * receives the kept weights. */
int qd_sparse_unit(const qd_sparsity *sp, int prune, const qd_gptq_opts *o, const qd_gptq_prep *prep, const float *H,
                   int prune_only, float *W, int64_t n, int64_t C, uint8_t *codes, float *scales, int32_t *zeros,
                   uint8_t *mask);

/* Magnitude pruning of rows x [n][C] into out [n][C] (pattern sp, per row) with the packed mask
 * rows [n][QD_MASK_ROW_BYTES(C)]. QD_OK or QD_ESHAPE (N:M and C). */
int qd_sparse_rtn_rows(const qd_sparsity *sp, const float *x, int64_t n, int64_t C, float *out, uint8_t *packed_mask);

#endif
