/* worker/rtn_rows.h — the job's fused round-to-nearest path over a range of rows: parameters,
 * codes, packing and error sums in one pass per row, without the [rows, cols] code and
 * dequantized buffers of the reference pipeline.
 *
 * The reference (quant/quant.h: qd_quant_params + qd_rtn_quantize + qd_pack_matrix) defines the
 * file contents; this path produces the same scales, zeros and packed codes bit for bit
 * (tests/job/test_rtn_rows.c checks it on real and adversarial data). The MSE clipping search
 * is delegated to the reference finder (qd_find_params_rows). The inner loops (range, codes and
 * error sums of a group) are kernels/ (kernels.h range_f32, rtn_group), reached through the
 * dispatch table: QD_KERNELS=ref runs their scalar reference, with the same bits.
 *
 * Error sums are accumulated per block of `blk_rows` rows in a fixed order, so that the metrics
 * of a tensor split into row ranges over any number of ranks are the same bits as those of the
 * whole tensor on one rank. */
#ifndef QD_RTN_ROWS_H
#define QD_RTN_ROWS_H

#include <stdint.h>

#include "quant/quant.h"

/* Partial error sums of one block of rows: sum (w - w')^2, sum w^2 (double), max |w - w'|. */
typedef struct {
    double err2, w2, max_abs;
} qd_errsum;

/* Quantizes rows [0, nrows) of x (row-major, `cols` per row) with scheme s.
 *   packed  [nrows][qd_packed_row_bytes(cols, bits)]
 *   scales, zeros  [nrows][ngroups] (zeros written for symmetric schemes too: 2^(bits-1))
 *   blk     one entry per block of blk_rows rows (the last may be shorter), accumulated into
 *           (callers zero it)
 * Tensor granularity takes the range of all nrows rows (callers pass whole tensors).
 * `what` and row0 name the tensor and the first row in error messages.
 * QD_OK, QD_ENONFINITE (message: what, [row, col] of the first NaN/Inf) or QD_EINVAL. */
int qd_rtn_rows(const float *x, int64_t nrows, int64_t cols, const qd_qscheme *s, const qd_clip_opts *clip,
                uint8_t *packed, float *scales, int32_t *zeros, int64_t blk_rows, qd_errsum *blk, const char *what,
                int64_t row0);

/* 1 when every value is finite (fast; use qd_check_finite for the message). */
int qd_all_finite(const float *x, int64_t n);

/* Groups per row for a scheme and a row length. */
int64_t qd_rtn_ngroups(const qd_qscheme *s, int64_t cols);

#endif
