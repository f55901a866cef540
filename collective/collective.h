/* collective/ — everything that crosses ranks: agreement on errors, broadcasts, reductions,
 * and (parallel HDF5) the model writer and reader. Callers pass a communicator; nothing here
 * assumes MPI_COMM_WORLD except the abort hook. */
#ifndef QD_COLLECTIVE_H
#define QD_COLLECTIVE_H

#include <mpi.h>

#include "common/qd_common.h"

/* Make QD_ASSERT call MPI_Abort(MPI_COMM_WORLD) (after MPI_Init). */
void qd_coll_install_abort_hook(void);

/* All ranks agree on an outcome: every rank passes its local status (QD_OK or a negative code);
 * every rank gets back the status of the lowest failing rank (QD_OK if none failed), and
 * *failed_rank (may be NULL) is that rank or -1. Collective over comm. */
int qd_coll_agree(MPI_Comm comm, int local_status, int *failed_rank);
/* Same, and the failing rank's qd_errmsg() is copied into msg on every rank (and recorded as
 * this rank's qd_errmsg() too), so rank 0 can print what went wrong where. */
int qd_coll_agree_msg(MPI_Comm comm, int local_status, char *msg, size_t msgcap, int *failed_rank);

#endif
