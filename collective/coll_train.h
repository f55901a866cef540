/* collective/coll_train.h — what data-parallel training exchanges between ranks.
 *
 * Gradient sums that give the same bits for any number of ranks. A batch is cut into G grains
 * (a fixed number of items each, independent of the rank count); rank r computes the gradients
 * of grains [G r / P, G (r + 1) / P). The batch gradient is defined as one fixed binary tree over
 * the grains: grains are pushed left to right onto a stack and the two top entries are added
 * (left + right) while they are siblings of the same size; what is left is added from the top
 * down. A rank adds only whole subtrees of that tree (the aligned blocks inside its range) and
 * rank 0 continues the same process with the blocks of ranks 1 .. P-1 in order, so every
 * addition of the 1-rank run happens with the same operands in the same order.
 *
 * Also: per-grain statistics gathered in grain order, exact integer sums, a stop flag any rank
 * may raise, broadcasts of the model state. */
#ifndef QD_COLL_TRAIN_H
#define QD_COLL_TRAIN_H

#include <mpi.h>
#include <stdint.h>

#include "collective/collective.h"
#include "common/qd_common.h"

typedef struct qd_coll_treesum qd_coll_treesum;

/* Buffers for sums of n floats over comm (reused across steps). */
int qd_coll_treesum_create(MPI_Comm comm, int64_t n, qd_coll_treesum **out);
void qd_coll_treesum_free(qd_coll_treesum *t);
/* Start a sum over `grains` grains; *g0, *g1: this rank's grains [g0, g1). */
void qd_coll_treesum_begin(qd_coll_treesum *t, int grains, int *g0, int *g1);
/* The buffer to fill with the next grain's values (n floats), then qd_coll_treesum_push. */
float *qd_coll_treesum_slot(qd_coll_treesum *t);
void qd_coll_treesum_push(qd_coll_treesum *t);
/* Collective: out (n floats) = the tree sum, on every rank. */
int qd_coll_treesum_finish(qd_coll_treesum *t, float *out);

/* Per-grain statistics: every rank passes the `per` doubles of each of its grains [g0, g1);
 * all[grains * per] receives every grain's in grain order on every rank. */
int qd_coll_grain_stats(MPI_Comm comm, int grains, int per, const double *mine, double *all);
/* (Exact sums of int64 counters: qd_coll_sum_i64, collective/collective.h.) */
/* 1 on every rank when any rank passes a non-zero flag. */
int qd_coll_any(MPI_Comm comm, int flag);
/* The largest value over ranks. */
double qd_coll_max_f64(MPI_Comm comm, double v);
/* Broadcast n floats from rank 0. */
int qd_coll_bcast_f32(MPI_Comm comm, float *v, int64_t n);

#endif
