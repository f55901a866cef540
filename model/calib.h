/* model/calib.h — calibration statistics of the Linear inputs: per-input-channel absmax and
 * H = 2/N sum_x x x^T (N = real tokens seen), the Hessian GPTQ needs.
 *
 * Exact, order-free accumulation. Results must not depend on how samples are split over ranks or
 * micro-batches, so sums cannot be plain floating point. Two passes over the same data:
 *   1. absmax: per input channel max|x| (a max is exact in any order); the caller merges ranks
 *      with a MAX reduction, then qd_calib_begin_accumulate() fixes a power-of-two grid per
 *      channel, 2^(e_i - QD_CALIB_BITS) with 2^e_i >= absmax_i.
 *   2. accumulate: every x_i is put on its grid (q_i = rint(x_i 2^(QD_CALIB_BITS - e_i)), an
 *      integer with |q_i| <= 2^QD_CALIB_BITS, relative error <= 2^-(QD_CALIB_BITS+1) of the
 *      channel's range), products q_i q_j are summed by dgemm in double over chunks of at most
 *      QD_CALIB_CHUNK rows — every partial sum is an integer below 2^53, so the chunk result is
 *      exact whatever order the BLAS uses — and chunk results are added to int64 accumulators.
 *      Integer sums are associative: a SUM reduction over ranks (MPI_INT64_T) gives the same bits
 *      for any number of ranks, micro-batch size or pipeline layout.
 * H_ij = 2/N * acc_ij * 2^(e_i + e_j - 2 QD_CALIB_BITS) is formed once, in double, at the end.
 * Up to 2^(62 - 2 QD_CALIB_BITS) = 2^20 chunks, i.e. about 10^9 tokens, fit the int64 sums.
 *
 * Memory per group: in (in + 1) / 2 int64 (the upper triangle, packed) + in floats; one panel of
 * QD_CALIB_PANEL x in doubles and one chunk buffer are shared by all groups. Nothing grows with
 * the number of samples.
 */
#ifndef QD_CALIB_H
#define QD_CALIB_H

#include <stdint.h>

#include "model/model.h"

#define QD_CALIB_BITS  21
#define QD_CALIB_CHUNK 1024 /* rows per product: 2^(2*21) * 2^10 = 2^52 < 2^53 */
#define QD_CALIB_PANEL 256  /* rows of the products formed at once (the scratch: PANEL x in doubles) */

typedef enum { QD_CALIB_ABSMAX = 1, QD_CALIB_ACCUMULATE = 2 } qd_calib_phase;

typedef struct {
    int group;        /* model input group */
    int first_linear; /* its first linear (the one hooks report) */
    int in;           /* input channels */
    float *absmax;    /* [in] */
    int32_t *exp;     /* [in] grid exponents e_i (after qd_calib_begin_accumulate) */
    int64_t *acc;     /* the upper triangle (j >= i), packed by rows: qd_calib_acc_index; NULL once
                       * released (a rank that does not quantize the group's tensors) */
    int64_t rows;     /* real tokens seen in the current phase */
} qd_calib_group;

typedef struct qd_calib qd_calib;

/* Where acc_ij (j >= i) is in the packed upper triangle of an in x in matrix, and its length. */
static inline int64_t qd_calib_acc_index(int64_t in, int64_t i, int64_t j) { return i * in - i * (i + 1) / 2 + j; }
static inline int64_t qd_calib_acc_len(int64_t in) { return in * (in + 1) / 2; }

/* Statistics for the input groups with selected[g] != 0 (NULL: all groups of the model). */
int qd_calib_new(const qd_model *m, const uint8_t *selected, qd_calib **out);
void qd_calib_free(qd_calib *c);

/* Hooks to pass to the forward pass; they feed the current phase. Start: QD_CALIB_ABSMAX. */
qd_model_hooks qd_calib_hooks(qd_calib *c);
qd_calib_phase qd_calib_get_phase(const qd_calib *c);

int qd_calib_num_groups(const qd_calib *c);
qd_calib_group *qd_calib_group_at(qd_calib *c, int i);
/* The statistics of a model group, or NULL when it is not selected. */
qd_calib_group *qd_calib_find(qd_calib *c, int model_group);

/* After the absmax pass (and the caller's MAX reduction of every absmax and SUM of rows): fix
 * the grids and switch to accumulation. */
void qd_calib_begin_accumulate(qd_calib *c);

/* After the accumulation pass (and the caller's SUM reduction of acc and rows): H [in, in]
 * (full, symmetric) of one group. QD_EINVAL when no token was seen. */
int qd_calib_hessian(const qd_calib_group *g, double *H);
/* The same in float (GPTQ works in float32): every entry formed in double and rounded once, the
 * bits of qd_calib_hessian's, without an in x in double copy. */
int qd_calib_hessian_f32(const qd_calib_group *g, float *H);
/* Frees a group's sums (a rank that does not quantize the group's tensors after a reduction to
 * their owners); the group stays selected, with acc NULL. */
void qd_calib_release(qd_calib_group *g);

/* Bytes held by the statistics (for reports). */
uint64_t qd_calib_bytes(const qd_calib *c);

#endif /* QD_CALIB_H */
