/* collective/ — everything that crosses ranks: start-up, agreement on errors, broadcasts,
 * reductions, gathers, the pipeline hand-off between stages, and (collective/h5model.h) the model
 * file through parallel HDF5. Callers pass a communicator; nothing here assumes MPI_COMM_WORLD
 * except start-up and the abort hook. Every MPI call is checked (QD_MPI_CHECK): a failure is
 * reported with MPI_Error_string and the job aborted on all ranks.
 *
 * Determinism: results of a job are the same bits for any number of ranks, so what is reduced
 * over ranks is either exact in any order (integer sums, max, bitwise or), or values that exactly
 * one rank holds (qd_coll_merge_*: the others contribute zeros). Floating-point sums over ranks
 * (qd_coll_allreduce_doubles with QD_COLL_SUM) are for reports only. */
#ifndef QD_COLLECTIVE_H
#define QD_COLLECTIVE_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "common/qd_common.h"

/* ---- start-up ------------------------------------------------------------------------------- */
/* MPI_Init_thread (funneled), errors returned to the caller's checks, and QD_ASSERT made to call
 * MPI_Abort. Returns MPI_COMM_WORLD. */
MPI_Comm qd_coll_init(int *argc, char ***argv);
void qd_coll_finalize(void);
/* Make QD_ASSERT call MPI_Abort(MPI_COMM_WORLD) (after MPI_Init). */
void qd_coll_install_abort_hook(void);

int qd_coll_rank(MPI_Comm comm);
int qd_coll_size(MPI_Comm comm);
/* How many ranks of comm share this rank's host (its memory). */
int qd_coll_node_size(MPI_Comm comm);
void qd_coll_barrier(MPI_Comm comm);

/* ---- agreement -------------------------------------------------------------------------------- */
/* All ranks agree on an outcome: every rank passes its local status (QD_OK or a negative code);
 * every rank gets back the status of the lowest failing rank (QD_OK if none failed), and
 * *failed_rank (may be NULL) is that rank or -1. Collective over comm. */
int qd_coll_agree(MPI_Comm comm, int local_status, int *failed_rank);
/* Same, and the failing rank's qd_errmsg() is copied into msg on every rank (and recorded as
 * this rank's qd_errmsg() too), so rank 0 can print what went wrong where. */
int qd_coll_agree_msg(MPI_Comm comm, int local_status, char *msg, size_t msgcap, int *failed_rank);
/* qd_coll_agree_msg without the copy. */
int qd_coll_agree_status(MPI_Comm comm, int local_status);

/* ---- broadcasts and gathers (bytes) -------------------------------------------------------- */
void qd_coll_bcast(MPI_Comm comm, void *buf, size_t bytes, int root);
/* root's text (NULL there: "") on every rank, malloc'd. */
char *qd_coll_bcast_text(MPI_Comm comm, const char *text, int root);
/* Every rank's `bytes` bytes, in rank order, into all [size][bytes] on every rank. */
void qd_coll_allgather(MPI_Comm comm, const void *mine, size_t bytes, void *all);
/* The same, into all on root only (all may be NULL elsewhere). */
void qd_coll_gather(MPI_Comm comm, const void *mine, size_t bytes, void *all, int root);

/* ---- reductions (in place, result on every rank) ------------------------------------------ */
typedef enum { QD_COLL_MIN = 0, QD_COLL_MAX, QD_COLL_SUM } qd_coll_op;
void qd_coll_allreduce_ints(MPI_Comm comm, int *v, int n, qd_coll_op op);
void qd_coll_allreduce_doubles(MPI_Comm comm, double *v, int n, qd_coll_op op);
/* Element-wise max (per-channel absmax of calibration inputs). */
void qd_coll_max_floats(MPI_Comm comm, float *v, int64_t n);
/* Elements of int64 sums per reduction call (32 MB): bounds what MPI holds beside the sums. */
#define QD_COLL_I64_STEP ((int64_t)1 << 22)
/* Exact sums of integers, any length (the calibration statistics are integer sums, which is what
 * makes the Hessians the same bits for any number of ranks). */
void qd_coll_sum_i64(MPI_Comm comm, int64_t *v, int64_t n);
/* Arrays whose every element is held by one rank (its owner) and zero on the others: afterwards
 * every rank has the owners' values (gathers of row units quantized on different ranks). */
void qd_coll_merge_u8(MPI_Comm comm, uint8_t *v, int64_t n);
void qd_coll_merge_floats(MPI_Comm comm, float *v, int64_t n);
void qd_coll_merge_i32(MPI_Comm comm, int32_t *v, int64_t n);

/* ---- pipeline hand-off ---------------------------------------------------------------------- */
/* A stream of float blocks (activations of micro-batches) from rank 0 through rank 1, 2, ... to
 * the last rank, double-buffered: while a rank works on micro-batch i, micro-batch i+1 arrives
 * and micro-batch i-1 leaves. A block sent after an error is marked poisoned, so the ranks
 * downstream skip their work but keep the stream moving (no rank waits forever). */
typedef struct qd_coll_pipe qd_coll_pipe;
/* cap: floats per block; n: blocks in the stream. Collective over comm. */
qd_coll_pipe *qd_coll_pipe_open(MPI_Comm comm, int64_t cap, int n);
/* The buffer of block i (in order 0, 1, ...): rank 0 gets a free buffer to fill, the others the
 * block received from the previous rank (*poisoned set when it was sent after an error). */
float *qd_coll_pipe_take(qd_coll_pipe *p, int i, int *poisoned);
/* Passes block i's buffer (count floats) on to the next rank (nothing on the last). */
void qd_coll_pipe_pass(qd_coll_pipe *p, int i, int64_t count, int poisoned);
/* Waits for the blocks in flight and frees p. */
void qd_coll_pipe_close(qd_coll_pipe *p);

#endif
