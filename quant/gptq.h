/* quant/gptq.h — GPTQ (Frantar et al., ICLR 2023, Algorithm 1): quantize a Linear column by
 * column, spreading each column's rounding error over the columns not yet quantized through the
 * upper Cholesky factor of the inverse Hessian of the layer's inputs, with lazy block updates.
 * Follows the reference implementation's choices (see ../shared/models/reference/README.txt):
 * dead inputs (H_jj = 0) get H_jj = 1 and W[:, j] = 0; damping lambda = damp * mean(diag H);
 * per-channel parameters come from the original W, group parameters from W after dead-column
 * zeroing (static groups: all up front; dynamic groups: from the block-start snapshot of W when a
 * group begins); act-order sorts columns by descending diag H. Pure function: no MPI, no files. */
#ifndef QD_GPTQ_H
#define QD_GPTQ_H

#include <stdint.h>

#include "quant/quant.h"

typedef struct {
    int bits; /* 2..8 */
    int sym;
    int64_t group_size; /* -1: one group per row (per channel) */
    int act_order;
    int static_groups;
    float damp;        /* default 0.01 */
    int block_size;    /* default 128 */
    qd_clip_opts clip; /* scale search (default min-max, as the reference) */
} qd_gptq_opts;

void qd_gptq_default_opts(qd_gptq_opts *o);

typedef struct {
    double damp_used; /* the damping factor finally used (raised if Cholesky failed) */
    int damp_raises;  /* how many times it was raised */
    int64_t dead_columns;
    double error; /* the reference's "error": sum over columns of (w - q)^2 / d^2 / 2 */
    double seconds;
} qd_gptq_stats;

/* W [rows][cols] is replaced by the dequantized result. H [cols][cols] (2/N sum x x^T) is not
 * modified. Outputs: codes [rows][cols] in the original column order; scales/zeros
 * [rows][ngroups] with ngroups = 1 (per channel) or ceil(cols / group_size); g_idx [cols] (the
 * group of each original column; may be NULL). QD_OK, or QD_ENONFINITE / QD_ENUMERIC with
 * qd_errmsg() set. */
int qd_gptq_quantize(float *W, int64_t rows, int64_t cols, const float *H, const qd_gptq_opts *o, uint8_t *codes,
                     float *scales, int32_t *zeros, int32_t *g_idx, qd_gptq_stats *st);

/* The same in two steps, for many row ranges of one layer (or several layers reading the same
 * input): qd_gptq_prepare does what depends on H only (dead columns, act-order permutation,
 * damped Cholesky factor of H^-1: O(cols^3)); qd_gptq_quantize_prepared quantizes R rows with it
 * (O(R cols^2)). Rows are independent given H: quantizing rows [a, b) alone gives what the whole
 * matrix gives them up to the rounding of the blocked update products (BLAS picks kernels by
 * shape), and a fixed row range gives the same bits on every rank. */
typedef struct qd_gptq_prep qd_gptq_prep;
int qd_gptq_prepare(const float *H, int64_t cols, const qd_gptq_opts *o, qd_gptq_prep **out);
int qd_gptq_quantize_prepared(const qd_gptq_prep *p, float *W, int64_t rows, uint8_t *codes, float *scales,
                              int32_t *zeros, int32_t *g_idx, qd_gptq_stats *st);
void qd_gptq_prep_free(qd_gptq_prep *p);
/* g_idx [cols] as qd_gptq_quantize* records it, from diag H and the options alone (for ranks that
 * quantized no row of the layer). */
void qd_gptq_g_idx(const float *H, int64_t cols, const qd_gptq_opts *o, int32_t *g_idx);
/* What a prepared layer holds, for methods that share GPTQ's inverse-Hessian factor (SparseGPT):
 * the upper Cholesky factor U [cols][cols] of the damped H^-1 in the prepared column order (the
 * identity order without act-order), the dead-input flags [cols], and the damping used. */
const float *qd_gptq_prep_hinv(const qd_gptq_prep *p);
const uint8_t *qd_gptq_prep_dead(const qd_gptq_prep *p, int64_t *ndead, double *damp_used, int *damp_raises);
/* The prepared state as byte ranges, so that one process prepares a layer and hands the same
 * bits to others: part 0 the fixed-size head (qd_gptq_prep_head() bytes), then the dead flags, the
 * order and the factor. Returns the number of parts (4). qd_gptq_prep_from_head allocates a state
 * whose arrays are sized as a received head says, for its other parts to be received into. */
#define QD_GPTQ_PREP_PARTS 4
size_t qd_gptq_prep_head(void);
int qd_gptq_prep_parts(qd_gptq_prep *p, void *part[QD_GPTQ_PREP_PARTS], size_t bytes[QD_GPTQ_PREP_PARTS]);
qd_gptq_prep *qd_gptq_prep_from_head(const void *head);

#endif
