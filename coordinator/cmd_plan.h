/* coordinator/cmd_plan.h — the time part of `qdist plan` (shard/cost.h's model): the work of a
 * calibrated job from its checkpoint and options, the predicted phases and wall time for 1..64
 * ranks on N nodes, a measured run as a record (--record LOG), and the fit of records (--fit). */
#ifndef QD_CMD_PLAN_H
#define QD_CMD_PLAN_H

#include <mpi.h>

#include "shard/plan.h"
#include "worker/job_spec.h"

/* Takes the time model's options out of argv (in place; *argc shrinks). Returns -1 when the
 * plan goes on (the rest is 'qdist plan' as before), else the exit code of what it did (--fit
 * runs alone; a bad option is a usage error). */
int qd_plan_time_args(int *argc, char **argv, MPI_Comm comm);
/* --record LOG: the ranks of the logged run (0 without --record, -1 if the log has none). */
int qd_plan_time_record_ranks(void);
/* After the plan's memory lines (rank 0): with --record, prints the run's record and returns 1
 * (nothing else is printed); for a calibrated job prints the predicted phases and wall time for
 * 1..64 ranks and returns 0; otherwise returns -1 (the cost-based estimate stays). A failure to
 * read the model is printed and returns 2. */
int qd_plan_time_report(const qd_job_config *c, qd_checkpoint *ck, const qd_job_tensor *jt, const qd_plan_item *pi,
                        int n, int ranks);

#endif
