/* worker/calib_run.h — calibration statistics over the ranks of a communicator.
 *
 * Two modes (DESIGN.md):
 *   data parallel  every rank holds the whole model and the statistics of every selected input
 *                  group; the samples are cut into global micro-batches of `microbatch` items and
 *                  rank r takes micro-batches r, r + p, r + 2p, ... (text is sorted by length). Per-channel
 *                  absmax is merged with MPI_MAX, the integer sums of model/calib.h with MPI_SUM
 *                  (MPI_INT64_T): the result is the 1-rank result bit for bit.
 *   pipeline       rank r owns the contiguous blocks [r*L/p, (r+1)*L/p) and only their statistics;
 *                  rank 0 embeds, every rank runs its blocks and sends the residual stream of each
 *                  micro-batch to the next rank with MPI_Isend (two buffers in flight) while it
 *                  receives the next one with MPI_Irecv, so stages overlap. Each group's statistics
 *                  live on the one rank that owns its block, equal bit for bit to the 1-rank ones.
 * Both run the two passes of model/calib.h (absmax, then accumulate). After every pass the ranks
 * agree on errors (qd_coll_agree_msg): an error on one rank is returned on all, with its message.
 */
#ifndef QD_CALIB_RUN_H
#define QD_CALIB_RUN_H

#include <mpi.h>

#include "model/calib.h"
#include "model/calib_data.h"
#include "model/model.h"

typedef enum { QD_CALIB_DATA_PARALLEL = 0, QD_CALIB_PIPELINE = 1 } qd_calib_mode;

typedef struct {
    qd_calib_mode mode;
    int microbatch; /* items per micro-batch (default 8) */
    int quiet;      /* no progress lines on rank 0 */
    /* Optional: also sees every Linear input of the accumulation pass, after the statistics,
     * micro-batch by micro-batch in increasing order on each rank (in pipeline mode a rank runs
     * every micro-batch through its blocks, so it sees all samples in sample order) — e.g. to
     * keep the calibration rows. Its linear_apply is not used. */
    const qd_model_hooks *tap;
} qd_calib_opts;

/* The blocks rank r owns in pipeline mode: [*k0, *k1). */
void qd_calib_pipeline_blocks(int layers, int rank, int size, int *k0, int *k1);

/* Which input groups a rank accumulates: all selected (data parallel), or those of its blocks
 * (pipeline). sel_in may be NULL (all); sel_out has qd_model_num_groups(m) entries. */
void qd_calib_rank_groups(const qd_model *m, const uint8_t *sel_in, qd_calib_mode mode, int rank, int size,
                          uint8_t *sel_out);

/* Combines the ranks' statistics of the pass in hand (collective): the absmax pass with max, the
 * accumulation pass with exact integer sums, so every rank holds the 1-rank result bit for bit. */
void qd_calib_allreduce(MPI_Comm comm, qd_calib *stats);

/* Run both passes over `data` into `stats` (created with qd_calib_rank_groups' selection).
 * Collective over comm; every rank returns the same status. */
int qd_calib_run(MPI_Comm comm, const qd_model *m, qd_calib_data *data, const qd_calib_opts *opts, qd_calib *stats);

#endif
