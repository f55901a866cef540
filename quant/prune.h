/* quant/prune.h — weight pruning: sparsity patterns, keep-masks, and the two one-shot criteria
 * that need no weight update (magnitude, Wanda); SparseGPT, which updates the kept weights, is in
 * quant/sparsegpt.h; the importance scores of structured pruning (attention heads, FFN neurons)
 * are here too. Pure functions on arrays: no MPI, no files.
 *
 * Conventions (part of the file format, docs/FORMAT.md "Sparsity"):
 *   - a mask is uint8 [rows][cols] (rows = out features), 1 = weight kept, 0 = pruned (exact 0);
 *   - "N:M" means at most N nonzeros in every M consecutive input columns of a row, groups
 *     starting at column 0 (2:4 = NVIDIA's semi-structured pattern; cols % M == 0 required);
 *   - an unstructured fraction s prunes exactly floor(s * n) of the n weights compared together
 *     (a row, or the whole layer), the lowest scores first; equal scores prune the lower index
 *     first, so every mask is a pure function of its inputs.
 */
#ifndef QD_PRUNE_H
#define QD_PRUNE_H

#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

typedef struct {
    double sparsity; /* unstructured: fraction of zeros in [0, 1); ignored when n > 0 */
    int n, m;        /* N:M (n < m, m <= 64); n == 0: unstructured */
} qd_sparsity;

/* How a job chooses the mask: SparseGPT (OBS with weight updates), magnitude, or Wanda. */
typedef enum { QD_PRUNE_SPARSEGPT = 0, QD_PRUNE_MAGNITUDE = 1, QD_PRUNE_WANDA = 2 } qd_prune_method;
const char *qd_prune_method_name(int m);
/* "sparsegpt", "magnitude", "wanda" -> the method, or -1. */
int qd_prune_method_parse(const char *s);

/* Whether s asks for any pruning. */
static inline int qd_sparsity_active(const qd_sparsity *s) { return s->n > 0 || s->sparsity > 0; }
/* Fraction of zeros the pattern gives (N:M: 1 - N/M). */
double qd_sparsity_fraction(const qd_sparsity *s);

/* Parses "0.5", "50%", "2:4", "4:8" (N:M with 0 < N < M <= 64). QD_OK or QD_EINVAL with a message. */
int qd_sparsity_parse(const char *text, qd_sparsity *out);
/* The canonical text ("2:4", "0.5"; "dense" when inactive) into buf. */
void qd_sparsity_format(const qd_sparsity *s, char *buf, size_t cap);

/* Whether a layer with `cols` inputs can take the pattern (N:M needs cols % M == 0). QD_OK or
 * QD_ESHAPE naming `what`. */
int qd_sparsity_check_cols(const qd_sparsity *s, int64_t cols, const char *what);

/* Where unstructured comparisons are made: each row prunes its own fraction, or the whole layer
 * one threshold (magnitude's classic form). N:M is per group of M in a row either way. */
typedef enum { QD_PRUNE_ROW = 0, QD_PRUNE_LAYER = 1 } qd_prune_scope;

/* mask[r][c] = 1 for the weights kept by score (higher = more important) under pattern s.
 * score and mask are [rows][cols]. Rows may be processed alone for QD_PRUNE_ROW and N:M. */
int qd_prune_select(const float *score, int64_t rows, int64_t cols, const qd_sparsity *s, qd_prune_scope scope,
                    uint8_t *mask);

/* Magnitude pruning: score |W|. */
int qd_prune_magnitude(const float *W, int64_t rows, int64_t cols, const qd_sparsity *s, qd_prune_scope scope,
                       uint8_t *mask);

/* Wanda (Sun et al. 2023): score |W_ij| * ||X_j||_2, compared per output row (N:M per group).
 * The input norms come from the layer's Hessian H = 2/N sum x x^T as sqrt(H_jj) (proportional to
 * ||X_j||, which is all a per-row comparison needs); H is [cols][cols] (only the diagonal is read). */
int qd_prune_wanda(const float *W, int64_t rows, int64_t cols, const float *H, const qd_sparsity *s, uint8_t *mask);

/* W[i] = 0 where mask[i] == 0. */
void qd_prune_apply(float *W, const uint8_t *mask, int64_t n);
/* Number of kept weights. */
int64_t qd_mask_count(const uint8_t *mask, int64_t n);
/* QD_OK when every group of M columns of every row keeps at most N; else QD_EFORMAT naming
 * `what`, the row and the group. */
int qd_mask_check_nm(const uint8_t *mask, int64_t rows, int64_t cols, int n, int m, const char *what);

/* Mask bit packing (the file's `mask` record): bit c of a row is byte c / 8, bit c % 8 (low bit
 * first), each row ceil(cols / 8) bytes, unused high bits zero. */
#define QD_MASK_ROW_BYTES(cols) (((int64_t)(cols) + 7) / 8)
void qd_mask_pack(const uint8_t *mask, int64_t rows, int64_t cols, uint8_t *packed);
void qd_mask_unpack(const uint8_t *packed, int64_t rows, int64_t cols, uint8_t *mask);

/* ---- packed storage of pruned rows (docs/FORMAT.md "Sparsity") ------------------------------ */
/* Every pruned row is stored as `slots` values: the kept ones in column order. N:M rows have
 * exactly cols / M * N slots, N per group, with the group-local position of each (a group that
 * keeps fewer stores pruned positions, which hold exact zeros, in its spare slots, positions
 * ascending); unstructured rows are located by the bitmask, and their spare slots (rows that keep
 * fewer than `slots`) are zero bytes nobody reads. */

/* Slots per row: N:M cols / M * N; unstructured the most weights a row can keep when its
 * fraction is pruned per block of `block` columns (block <= 0: the whole row):
 * cols - sum over blocks of floor(s * block columns). */
int64_t qd_sparse_row_slots(const qd_sparsity *s, int64_t cols, int64_t block);
/* Bits of one N:M position (ceil(log2 M)), and bytes of one row's positions. */
int qd_nm_index_bits(int m);
int64_t qd_nm_index_row_bytes(int64_t cols, int n, int m);
/* Rows of elements of esz bytes, dense [rows][cols] with mask [rows][cols] (1 = kept) into
 * vals [rows][slots] and, N:M (s->n > 0), the positions nm_pos [rows][cols / M * N] (unpacked).
 * QD_OK, or QD_EFORMAT naming the row when it keeps more than the pattern allows. */
int qd_sparse_gather(const void *dense, size_t esz, const uint8_t *mask, int64_t rows, int64_t cols,
                     const qd_sparsity *s, int64_t slots, void *vals, uint8_t *nm_pos);
/* The inverse: the stored values into dense (whose other elements the caller has set: zeros,
 * or the zero point's code) and the kept positions into mask [rows][cols] (N:M: every slot,
 * unstructured: the bitmask's, given unpacked in mask already). QD_OK or QD_EFORMAT (a position
 * beyond its group, positions not ascending, a row keeping more than slots). */
int qd_sparse_scatter(const void *vals, size_t esz, const uint8_t *nm_pos, int64_t rows, int64_t cols,
                      const qd_sparsity *s, int64_t slots, void *dense, uint8_t *mask);

/* ---- structured pruning ------------------------------------------------------------------- */
/* Importance of groups of weights for removing whole units, from the output error their removal
 * causes through the next layer's input Hessian (the OBS-style first-order criterion used by
 * structured pruning of transformers, ignoring cross terms): for a unit u owning input columns
 * J_u of the consuming Linear W_out [rows][cols] with Hessian H [cols][cols],
 *     importance(u) = sum_r sum_{j,k in J_u} W[r][j] H[j][k] W[r][k]
 * = the increase of ||W X^T||^2 (times 2/N) if those inputs were zeroed. An attention head owns
 * `unit` consecutive columns of attention.output.dense; an FFN neuron one column of the FFN
 * output Linear. imp[u] for u < cols / unit. */
void qd_prune_unit_importance(const float *W, int64_t rows, int64_t cols, const float *H, int64_t unit, double *imp);

/* The `remove` least important of n units, as keep[u] = 0/1 (ties: the lower index goes first). */
void qd_prune_choose_units(const double *imp, int64_t n, int64_t remove, uint8_t *keep);

#endif
