/* quant/sparsegpt.h — SparseGPT (Frantar & Alistarh, ICML 2023): one-shot pruning of a Linear
 * with the Optimal-Brain-Surgeon update of the weights still to be visited, column by column
 * through the upper Cholesky factor of the damped inverse Hessian (the same factor as GPTQ), and
 * optionally quantization in the same pass (the paper's joint SparseGPT + GPTQ: each kept weight
 * is rounded as GPTQ does and its rounding error is spread together with the pruning error).
 *
 * Follows the IST-DASLab reference (sparsegpt.py, fasterprune): dead inputs (H_jj = 0) get
 * H_jj = 1 and W[:, j] = 0; damping damp * mean(diag H); column blocks of block_size, with the
 * block's errors applied to the later columns by one product at the block's end. Masks:
 *   - unstructured, scope QD_PRUNE_LAYER (the reference): at the start of each column block the
 *     score w^2 / U_jj^2 of the block's (already updated) weights is compared over all rows of the
 *     block and floor(s * rows * cnt) are pruned. The reference prunes the weights at or below the
 *     sorted score at index int(s * n), i.e. one more; the count here is exact;
 *   - unstructured, scope QD_PRUNE_ROW: the same per row of the block (rows then independent);
 *   - N:M: when the sweep reaches the first column of each group of M, the M - N lowest scores of
 *     the group (weights updated by the columns before them) are pruned, per row. block_size is
 *     rounded up to a multiple of M so groups never straddle blocks.
 * Quantization: per-channel parameters from the original W (as the reference's quantizer), or
 * groups of group_size columns whose parameters come from the block-start weights when the sweep
 * reaches the group (GPTQ's dynamic groups). A pruned weight quantizes to exactly 0 (its code is
 * the zero point: 0 lies in every range). No act-order (a permutation would break N:M groups).
 * Pure function: no MPI, no files. */
#ifndef QD_SPARSEGPT_H
#define QD_SPARSEGPT_H

#include <stdint.h>

#include "quant/gptq.h"
#include "quant/prune.h"

typedef struct {
    qd_sparsity sp;
    qd_prune_scope scope; /* unstructured only; default QD_PRUNE_LAYER (the reference) */
    float damp;           /* default 0.01 */
    int block_size;       /* default 128 */
    int quantize;         /* 1: joint pruning and quantization */
    int bits, sym;        /* quantize: 2..8 */
    int64_t group_size;   /* quantize: -1 per channel, else columns per group */
    qd_clip_opts clip;    /* quantize: scale search (default min-max, as the reference) */
    int mask_given;       /* 1: `mask` is an input (e.g. magnitude's or Wanda's): the sweep only updates the
                           * kept weights (GPTQ with a fixed mask); sp then only checks N:M shapes */
} qd_sparsegpt_opts;

void qd_sparsegpt_default_opts(qd_sparsegpt_opts *o);

typedef struct {
    double error; /* the reference's "error": sum over weights of (w - q)^2 / U_jj^2 / 2 */
    double damp_used;
    int damp_raises;
    int64_t dead_columns;
    int64_t kept; /* nonzeros kept in the mask */
    double seconds;
} qd_sparsegpt_stats;

/* Prepares the factor (qd_gptq_prepare without act-order); free with qd_gptq_prep_free. */
int qd_sparsegpt_prepare(const float *H, int64_t cols, const qd_sparsegpt_opts *o, qd_gptq_prep **out);

/* W [rows][cols] is replaced by the pruned (and, with quantize, dequantized) result; mask [rows][cols]
 * receives 1 for the weights kept. With quantize: codes [rows][cols], scales/zeros [rows][ngroups]
 * (ngroups = 1 or ceil(cols / group_size)); otherwise they may be NULL. Scope QD_PRUNE_LAYER with
 * an unstructured fraction couples the rows of a call: callers that split a layer into row units
 * must use QD_PRUNE_ROW or N:M (or give the whole layer to one call). QD_OK, or an error with
 * qd_errmsg() set (non-finite input, bad pattern, Cholesky failure). */
int qd_sparsegpt_prune_prepared(const qd_gptq_prep *p, const qd_sparsegpt_opts *o, float *W, int64_t rows, int64_t cols,
                                uint8_t *mask, uint8_t *codes, float *scales, int32_t *zeros, qd_sparsegpt_stats *st);

/* Both steps in one call. H [cols][cols] = 2/N sum x x^T is not modified. */
int qd_sparsegpt_prune(float *W, int64_t rows, int64_t cols, const float *H, const qd_sparsegpt_opts *o, uint8_t *mask,
                       uint8_t *codes, float *scales, int32_t *zeros, qd_sparsegpt_stats *st);

#endif
